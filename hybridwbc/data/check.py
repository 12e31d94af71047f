"""``python -m hybridwbc.data check <root>``: what a data root holds, per data set and class, and what was skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from hybridwbc.data.manifest import scan
from hybridwbc.errors import DataLayoutError

__all__ = ["KNOWN", "check_root", "format_report"]

#: Sub-folders of a data root and the layout each is read with.
KNOWN = {"pbc": "pbc", "cnmc": "cnmc", "all_pbs": "all_pbs", "bccd": "bccd"}


def _guess_layout(folder: Path) -> str:
    if (folder / "JPEGImages").is_dir():
        return "bccd"
    if any(folder.rglob("UID_*")):
        return "cnmc"
    if folder.is_file() and folder.suffix.lower() == ".csv" or (folder / "manifest.csv").is_file():
        return "csv"
    return "folders"


def check_root(root: str | os.PathLike, read_images: bool = False) -> dict[str, dict]:
    """Scan every data set under ``root`` (or ``root`` itself when it is one data set).

    Parameters
    ----------
    root : path-like
    read_images : bool, default False
        Also decode every image, to find corrupt files (slower).

    Returns
    -------
    dict
        Per data set: ``layout``, ``counts`` (per class), ``subjects``,
        ``duplicates`` (files whose content hash repeats), ``skipped`` (DataFrame
        of path, reason), or ``error`` (str).

    Raises
    ------
    DataLayoutError
        If ``root`` does not exist.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataLayoutError(
            f"Data root {str(root)!r} does not exist. Expected a folder holding pbc/, cnmc/, all_pbs/ or bccd/, "
            "or one data set folder. Fix: pass the right path."
        )
    subs = {name: layout for name, layout in KNOWN.items() if (root / name).is_dir()}
    targets = {n: (root / n, lay) for n, lay in subs.items()} if subs else {root.name: (root, _guess_layout(root))}
    report: dict[str, dict] = {}
    for name, (folder, layout) in targets.items():
        try:
            s = scan(folder, layout, dataset=name, min_classes=1)
        except DataLayoutError as exc:
            report[name] = {"layout": layout, "error": str(exc)}
            continue
        m = s.manifest
        skipped = s.rejected
        if read_images:
            from hybridwbc.data.io import read_image
            from hybridwbc.errors import ImageReadError

            bad = []
            for p in m["path"]:
                try:
                    read_image(p)
                except ImageReadError as exc:
                    bad.append({"path": p, "reason": str(exc)})
            skipped = pd.concat([skipped, pd.DataFrame(bad, columns=["path", "reason"])], ignore_index=True)
        report[name] = {
            "layout": layout,
            "counts": m["label"].value_counts().sort_index().to_dict(),
            "subjects": int((m["subject"] != "").any() and m.loc[m["subject"] != "", "subject"].nunique()),
            "duplicates": int(m["sha256"].duplicated(keep="first").sum()),
            "skipped": skipped,
        }
    return report


def format_report(report: dict[str, dict]) -> str:
    """Human-readable text of :func:`check_root`'s result."""
    lines = []
    for name, r in report.items():
        if "error" in r:
            lines.append(f"{name} ({r['layout']}): ERROR {r['error']}")
            continue
        total = sum(r["counts"].values())
        lines.append(f"{name} ({r['layout']}): {total} images, {len(r['counts'])} classes"
                     + (f", {r['subjects']} subjects" if r["subjects"] else ", no subject ids")
                     + (f", {r['duplicates']} exact duplicate files" if r["duplicates"] else ""))
        for label, n in r["counts"].items():
            lines.append(f"    {label:<16} {n}")
        sk = r["skipped"]
        lines.append(f"    skipped: {len(sk)}")
        for _, row in sk.head(20).iterrows():
            lines.append(f"      {row['path']}: {row['reason']}")
        if len(sk) > 20:
            lines.append(f"      ... and {len(sk) - 20} more")
    return "\n".join(lines)
