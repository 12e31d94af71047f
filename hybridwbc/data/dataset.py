"""Resolve where a configured data set lives and load its manifest.

The data root comes from ``data.root``; when that is ``null`` it is the
``HYBRIDWBC_DATA`` environment variable, else ``../shared/data`` beside the
project when that exists. When no real data root can be found at all, the
built-in synthetic data set stands in, and the run says so loudly. An
explicitly configured root that is missing is an error, never a silent fallback.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from hybridwbc.data.manifest import Scan, scan
from hybridwbc.data.synthetic import generate_dataset

__all__ = ["LoadedData", "resolve_data_root", "load_dataset"]

log = logging.getLogger(__name__)


@dataclass
class LoadedData:
    """A scanned data set and where it came from.

    Attributes
    ----------
    scan : Scan
    source : {"real", "synthetic"}
    root : pathlib.Path
        The folder that was scanned.
    """

    scan: Scan
    source: str
    root: Path

    @property
    def manifest(self) -> pd.DataFrame:
        return self.scan.manifest


def resolve_data_root(root: str | None, project_root: str | os.PathLike) -> tuple[Path | None, str]:
    """Find the data root and say how it was chosen.

    Parameters
    ----------
    root : str or None
        ``data.root`` from the config; relative paths resolve against ``project_root``.
    project_root : path-like

    Returns
    -------
    root : pathlib.Path or None
        ``None`` when no real data can be found (synthetic fallback).
    how : str
        ``"config"``, ``"env"``, ``"default"`` or ``"none"``.
    """
    project_root = Path(project_root)
    if root:
        p = Path(os.path.expanduser(str(root)))
        return (p if p.is_absolute() else project_root / p), "config"
    env = os.environ.get("HYBRIDWBC_DATA")
    if env:
        return Path(env).expanduser(), "env"
    default = (project_root / ".." / "shared" / "data").resolve()
    if default.is_dir():
        return default, "default"
    return None, "none"


def load_dataset(data_cfg: Mapping[str, Any], project_root: str | os.PathLike,
                 cache_dir: str | os.PathLike, seed: int = 0) -> LoadedData:
    """Scan the configured data set, or generate the synthetic stand-in.

    Parameters
    ----------
    data_cfg : mapping
        The ``data`` config node (see :class:`hybridwbc.config.DataConfig`).
    project_root : path-like
        Folder that relative paths (and the ``../shared/data`` default) hang off.
    cache_dir : path-like
        Where the synthetic data set is written.
    seed : int

    Returns
    -------
    LoadedData

    Raises
    ------
    DataLayoutError
        Missing or empty data folder, or fewer than two classes.
    """
    layout = getattr(data_cfg["layout"], "value", data_cfg["layout"])
    root, how = resolve_data_root(data_cfg.get("root"), project_root)
    if layout == "synthetic" or root is None:
        synth = data_cfg["synthetic"]
        background = getattr(synth["background"], "value", synth["background"])
        settings = repr((list(synth["classes"]), synth["n_per_class"], synth["size"], synth["n_subjects"],
                         background, seed))
        folder = Path(cache_dir) / "synthetic" / hashlib.sha256(settings.encode()).hexdigest()[:12]
        manifest = generate_dataset(folder, list(synth["classes"]), n_per_class=synth["n_per_class"],
                                    size=synth["size"], n_subjects=synth["n_subjects"],
                                    background=background, seed=seed)
        if layout != "synthetic":
            log.warning(
                "No real data found (data.root is unset, HYBRIDWBC_DATA is unset and ../shared/data does not "
                "exist): running %r on the BUILT-IN SYNTHETIC data set at %s. Set HYBRIDWBC_DATA to use real "
                "images.", data_cfg["name"], folder)
        s = scan(manifest, "csv", dataset=f"synthetic-{data_cfg['name']}")
        return LoadedData(_select(s, data_cfg, seed), "synthetic", folder)
    folder = root / data_cfg["subdir"] if data_cfg.get("subdir") else root
    log.info("Data set %r: %s layout at %s (root from %s)", data_cfg["name"], layout, folder, how)
    s = scan(folder, layout, dataset=data_cfg["name"], min_classes=int(data_cfg.get("min_classes", 2)))
    return LoadedData(_select(s, data_cfg, seed), "real", folder)


def _select(s: Scan, data_cfg: Mapping[str, Any], seed: int) -> Scan:
    """Keep the configured classes, map labels by ``relabel``, and keep at most ``max_per_class``
    images of each (resulting) class, by a seeded sample."""
    from hybridwbc.errors import DataLayoutError

    m = s.manifest
    classes = data_cfg.get("classes")
    if classes:
        unknown = sorted(set(classes) - set(m["label"]))
        if unknown:
            raise DataLayoutError(
                f"data.classes names {unknown}, which the data set does not have; it has "
                f"{sorted(m['label'].unique())}. Fix data.classes."
            )
        m = m[m["label"].isin(list(classes))]
    relabel = data_cfg.get("relabel")
    if relabel:
        relabel = {str(k): str(v) for k, v in dict(relabel).items()}
        unknown = sorted(set(relabel) - set(m["label"]))
        if unknown:
            raise DataLayoutError(
                f"data.relabel maps {unknown}, which the data set does not have; it has "
                f"{sorted(m['label'].unique())}. Fix data.relabel."
            )
        m = m.assign(fine_label=m["label"].where(m["fine_label"] == "", m["fine_label"]),
                     label=m["label"].map(lambda c: relabel.get(c, c)))
    cap = data_cfg.get("max_per_class")
    if cap:
        m = m.sample(frac=1.0, random_state=seed).groupby("label", sort=True).head(int(cap))
        m = m.sort_values(["label", "path"], kind="stable")
    return Scan(manifest=m.reset_index(drop=True), rejected=s.rejected)
