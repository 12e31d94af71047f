"""Scan a data set on disk into a manifest table.

A manifest is a :class:`pandas.DataFrame` with one row per image file and the
columns

===========  ======  ==========================================================
column       dtype   meaning
===========  ======  ==========================================================
path         str     absolute path of the image file
label        str     class name (the data set's own folder name)
subject      str     subject / patient id, ``""`` where the data set has none
dataset      str     data set name
sha256       str     SHA-256 of the file's bytes (content hash)
fine_label   str     finer label where the file name carries one, else ``""``
annotation   str     path of an annotation file (BCCD VOC XML), else ``""``
===========  ======  ==========================================================

Layouts read (``layout`` argument of :func:`scan`):

``folders``  ``root/<class>/<image>`` (generic; PBC and ``all_pbs`` use it).
``pbc``      as ``folders``; the file-name prefix (``SNE``, ``MY`` ...) becomes ``fine_label``.
``all_pbs``  as ``folders``.
``cnmc``     ``root/{all,hem}/UID_<subject>_<image>_<cell>_{all,hem}.bmp``, also nested as in
             the official release (``C-NMC_training_data/fold_k/{all,hem}/``), and
             numbered test-phase files labelled by a CSV with ``new_names`` and ``labels``
             (1 = ALL, 0 = HEM) columns. Subject ids come from the file names.
``bccd``     ``root/JPEGImages/*.jpg`` with ``root/Annotations/*.xml`` (VOC); label ``field``.
``csv``      a CSV file with ``path`` and ``label`` columns, optional ``subject``;
             relative paths resolve against the CSV's folder. Rows whose path leaves
             the CSV's folder are rejected and reported.
===========  ======  ==========================================================
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from hybridwbc.data.io import IMAGE_SUFFIXES
from hybridwbc.errors import DataLayoutError

__all__ = ["scan", "LAYOUTS", "MANIFEST_COLUMNS", "Scan", "file_sha256", "manifest_hash", "walk_images"]

MANIFEST_COLUMNS = ["path", "label", "subject", "dataset", "sha256", "fine_label", "annotation"]

_CNMC_RE = re.compile(r"^UID_(?P<subject>H?\d+)_(?P<image>\d+)_(?P<cell>\d+)_(?P<label>all|hem)$", re.I)


@dataclass
class Scan:
    """What a scan found.

    Attributes
    ----------
    manifest : pandas.DataFrame
        One row per image file, columns :data:`MANIFEST_COLUMNS`.
    rejected : pandas.DataFrame
        Files or rows not taken, with columns ``path`` and ``reason``.
    """

    manifest: pd.DataFrame
    rejected: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes (``""`` if it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return ""
    return h.hexdigest()


def manifest_hash(manifest: pd.DataFrame) -> str:
    """A short hash of a manifest's content hashes and labels (order-independent)."""
    items = sorted(zip(manifest["sha256"], manifest["label"], manifest["subject"]))
    return hashlib.sha256(repr(items).encode()).hexdigest()[:16]


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES


def walk_images(folder: Path, rejected: list, check_names: bool = True, report_other: bool = True) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted), not following symlink loops.

    Nothing is dropped silently: a folder already visited (a symlink loop), a folder that cannot
    be listed, and a broken or looping file link go to ``rejected`` (dicts with ``path`` and
    ``reason``). With ``check_names`` (training data), files whose names are not UTF-8 are
    rejected too; without it (prediction) they are returned. With ``report_other``, files that
    are not images (other than CSV/XML/text/JSON side files) are rejected as well.
    """
    out = []
    seen = set()

    def unreadable(err: OSError) -> None:
        rejected.append({"path": os.fsdecode(err.filename or folder),
                         "reason": f"unreadable folder ({type(err).__name__}: {err.strerror or err}); "
                                   "its images were not read. Fix its permissions"})

    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=unreadable):
        real = os.path.realpath(dirpath)
        if real in seen:
            rejected.append({"path": dirpath, "reason": "symlink loop: folder already visited"})
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith("."):
                continue
            if check_names and not _utf8(name):
                shown = os.fsencode(p).decode("utf-8", "backslashreplace")
                rejected.append({"path": shown, "reason": "file name is not valid UTF-8; rename the file"})
                continue
            if p.is_symlink() and not p.exists():
                rejected.append({"path": os.fsencode(p).decode("utf-8", "backslashreplace"),
                                 "reason": "a broken symbolic link or a symlink loop; point it at an image file"})
                continue
            if _is_image(p):
                out.append(p)
            elif report_other and p.suffix.lower() not in (".csv", ".xml", ".txt", ".md", ".json") \
                    and name != "LICENSE":
                rejected.append({"path": str(p), "reason": f"not an image file (suffix {p.suffix!r})"})
    return out


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _row(path: Path, label: str, dataset: str, subject: str = "", fine: str = "", annotation: str = "") -> dict:
    return {"path": str(path.resolve()), "label": label, "subject": subject, "dataset": dataset,
            "sha256": "", "fine_label": fine, "annotation": annotation}


def _need_dir(root: Path, layout: str, expected: str) -> None:
    if not root.exists():
        raise DataLayoutError(
            f"Data folder {str(root)!r} does not exist. Expected the {layout!r} layout: {expected}. "
            "Fix: set data.root (or the HYBRIDWBC_DATA environment variable) to the folder that holds it."
        )
    if not root.is_dir():
        raise DataLayoutError(
            f"Data path {str(root)!r} is a file, not a folder. Expected the {layout!r} layout: {expected}. "
            "Fix: point data.root at the data set's folder."
        )


def _scan_folders(root: Path, dataset: str, rejected: list, fine: Callable[[Path], str] | None = None) -> list[dict]:
    expected = "one sub-folder per class holding that class's images (root/<class>/<image>)"
    _need_dir(root, "folders", expected)
    rows = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for p in walk_images(class_dir, rejected):
            rows.append(_row(p, class_dir.name, dataset, fine=fine(p) if fine else ""))
    return rows


def _pbc_fine(p: Path) -> str:
    stem = p.stem
    return stem.split("_", 1)[0].upper() if "_" in stem else ""


def _scan_pbc(root, dataset, rejected):
    return _scan_folders(root, dataset, rejected, fine=_pbc_fine)


def _scan_all_pbs(root, dataset, rejected):
    return _scan_folders(root, dataset, rejected)


def _scan_cnmc(root: Path, dataset: str, rejected: list) -> list[dict]:
    expected = ("folders named 'all' and 'hem' (flat, or nested as C-NMC_training_data/fold_k/{all,hem}) "
                "holding UID_<subject>_<image>_<cell>_{all,hem}.bmp, and/or numbered test images with a "
                "labels CSV (columns new_names, labels)")
    _need_dir(root, "cnmc", expected)
    rows: list[dict] = []
    labelled_by_csv: dict[str, tuple[str, str]] = {}
    for csv_path in sorted(root.rglob("*.csv")):
        try:
            df = pd.read_csv(csv_path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            rejected.append({"path": str(csv_path), "reason": f"unreadable CSV: {exc}"})
            continue
        cols = {c.lower(): c for c in df.columns}
        if "new_names" in cols and "labels" in cols:
            for _, r in df.iterrows():
                label = "all" if int(r[cols["labels"]]) == 1 else "hem"
                subject = ""
                if "patient_id" in cols:
                    m = _CNMC_RE.match(Path(str(r[cols["patient_id"]])).stem)
                    subject = m.group("subject") if m else str(r[cols["patient_id"]])
                labelled_by_csv[str(r[cols["new_names"]])] = (label, subject)
    for p in walk_images(root, rejected):
        m = _CNMC_RE.match(p.stem)
        if m:
            label = m.group("label").lower()
            parent = p.parent.name.lower()
            if parent in ("all", "hem") and parent != label:
                rejected.append({"path": str(p), "reason": f"file name says {label!r} but folder says {parent!r}"})
                continue
            rows.append(_row(p, label, dataset, subject=m.group("subject").upper()))
        elif p.name in labelled_by_csv:
            label, subject = labelled_by_csv[p.name]
            rows.append(_row(p, label, dataset, subject=subject))
        elif p.parent.name.lower() in ("all", "hem"):
            rejected.append({"path": str(p), "reason": "C-NMC file name without a subject id "
                             "(expected UID_<subject>_<image>_<cell>_<all|hem>.bmp)"})
        else:
            rejected.append({"path": str(p), "reason": "no label: not in an all/hem folder nor a labels CSV"})
    return rows


def _scan_bccd(root: Path, dataset: str, rejected: list) -> list[dict]:
    expected = "JPEGImages/*.jpg with matching Annotations/*.xml (Pascal VOC)"
    _need_dir(root, "bccd", expected)
    images = root / "JPEGImages"
    if not images.is_dir():
        raise DataLayoutError(
            f"No JPEGImages folder in {str(root)!r}. Expected the 'bccd' layout: {expected}. "
            "Fix: point data.root at the BCCD folder that holds JPEGImages/ and Annotations/."
        )
    rows = []
    for p in walk_images(images, rejected):
        ann = root / "Annotations" / (p.stem + ".xml")
        rows.append(_row(p, "field", dataset, annotation=str(ann.resolve()) if ann.is_file() else ""))
    return rows


def _scan_csv(root: Path, dataset: str, rejected: list) -> list[dict]:
    csv_path = root / "manifest.csv" if root.is_dir() else root
    expected = "a CSV file with columns path,label[,subject] (paths relative to the CSV's folder)"
    if not csv_path.is_file():
        raise DataLayoutError(
            f"No CSV manifest at {str(csv_path)!r}. Expected the 'csv' layout: {expected}. "
            "Fix: point data.root at the CSV file, or at a folder holding manifest.csv."
        )
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataLayoutError(
            f"Cannot read CSV manifest {str(csv_path)!r} ({exc}). Expected {expected}. Fix the file."
        ) from exc
    missing = {"path", "label"} - set(df.columns)
    if missing:
        raise DataLayoutError(
            f"CSV manifest {str(csv_path)!r} lacks column(s) {sorted(missing)}; has {list(df.columns)}. "
            f"Expected {expected}. Fix: add the columns."
        )
    base = csv_path.parent.resolve()
    rows = []
    for _, r in df.iterrows():
        p = Path(r["path"])
        full = (base / p) if not p.is_absolute() else p
        try:
            resolved = full.resolve(strict=False)
        except (OSError, RuntimeError) as exc:
            rejected.append({"path": str(full), "reason": f"unresolvable path ({exc})"})
            continue
        if not resolved.is_relative_to(base):
            rejected.append({"path": str(full), "reason": f"path outside the manifest's folder {str(base)!r}"})
            continue
        if not _is_image(resolved):
            rejected.append({"path": str(full), "reason": f"not an image file (suffix {resolved.suffix!r})"})
            continue
        rows.append(_row(resolved, str(r["label"]), dataset, subject=str(r.get("subject", "") or "")))
    return rows


LAYOUTS: dict[str, Callable[[Path, str, list], list[dict]]] = {
    "folders": _scan_folders,
    "pbc": _scan_pbc,
    "all_pbs": _scan_all_pbs,
    "cnmc": _scan_cnmc,
    "bccd": _scan_bccd,
    "csv": _scan_csv,
}


def scan(root: str | os.PathLike, layout: str = "folders", dataset: str | None = None,
         hash_files: bool = True, min_classes: int = 2) -> Scan:
    """Scan ``root`` with one of :data:`LAYOUTS` into a manifest.

    Parameters
    ----------
    root : path-like
        The data set's folder (or, for ``csv``, the CSV file).
    layout : str, default "folders"
        One of ``folders``, ``pbc``, ``all_pbs``, ``cnmc``, ``bccd``, ``csv``.
    dataset : str, optional
        Name recorded in the ``dataset`` column; defaults to the folder's name.
    hash_files : bool, default True
        Compute each file's SHA-256 (the cache key and duplicate detector).
    min_classes : int, default 2
        Fewest classes accepted; classification needs two. Use 1 for
        detection data sets such as BCCD.

    Returns
    -------
    Scan

    Raises
    ------
    DataLayoutError
        If the folder is missing, holds no images in the expected layout, or
        fewer than ``min_classes`` classes.
    ConfigError
        If ``layout`` is unknown.
    """
    from hybridwbc.errors import ConfigError

    if layout not in LAYOUTS:
        raise ConfigError(
            f"Unknown data layout {layout!r}. Expected one of {sorted(LAYOUTS)}; received data.layout={layout!r}."
        )
    root = Path(root).expanduser()
    name = dataset or root.name
    rejected: list[dict] = []
    rows = LAYOUTS[layout](root, name, rejected)
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    if manifest.empty:
        raise DataLayoutError(
            f"No images found in {str(root)!r} with the {layout!r} layout. "
            f"See hybridwbc.data.manifest for the expected layout; fix data.root or data.layout."
        )
    n_classes = manifest["label"].nunique()
    if n_classes < min_classes:
        raise DataLayoutError(
            f"Data set {str(root)!r} has {n_classes} class(es) {sorted(manifest['label'].unique())}; "
            f"classification needs at least {min_classes}. Expected the {layout!r} layout with one "
            "folder (or label) per class. Fix: add the missing classes or point data.root elsewhere."
        )
    if hash_files:
        manifest["sha256"] = [file_sha256(p) for p in manifest["path"]]
    manifest = manifest.sort_values(["label", "path"], kind="stable").reset_index(drop=True)
    return Scan(manifest=manifest, rejected=pd.DataFrame(rejected, columns=["path", "reason"]))
