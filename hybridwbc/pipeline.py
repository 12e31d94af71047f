"""A fitted pipeline (featurizer + classifier) that is saved, verified, loaded and applied to image files.

A saved model is a folder holding ``pipeline.joblib`` and ``model.json``. The
JSON records the classes, the feature names, the library versions and the
SHA-256 of every file in the folder; :meth:`WBCPipeline.load` refuses a folder
whose files do not match those hashes, before unpickling anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from hybridwbc.errors import ModelLoadError

__all__ = ["WBCPipeline", "design_matrix", "MODEL_FILE", "META_FILE"]

MODEL_FILE = "pipeline.joblib"
META_FILE = "model.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def design_matrix(input_kind: str, paths: Sequence[str], features: np.ndarray) -> np.ndarray:
    """The ``X`` a classifier receives, by its ``classifier.input`` kind.

    Parameters
    ----------
    input_kind : {"features", "paths", "paths_features"}
    paths : sequence of str, length n
    features : ndarray of shape (n, n_features), dtype float64

    Returns
    -------
    X : ndarray
        ``features`` (float64); or paths as ``(n, 1) object``; or paths then
        features as ``(n, 1 + n_features) object``.
    """
    if input_kind == "features":
        return features
    col = np.asarray(list(paths), dtype=object).reshape(-1, 1)
    if input_kind == "paths":
        return col
    if input_kind == "paths_features":
        return np.hstack([col, np.asarray(features, dtype=object)])
    from hybridwbc.errors import ConfigError

    raise ConfigError(f"Unknown classifier.input {input_kind!r}. Expected features, paths or paths_features.")


class WBCPipeline:
    """Featurizer and fitted classifier, applied together to image files.

    Parameters
    ----------
    featurizer : ImageFeaturizer
    estimator : fitted scikit-learn classifier
    info : dict, optional
        Free-form provenance (experiment, MLflow run id, config) saved in ``model.json``.
    input_kind : {"features", "paths", "paths_features"}
        What the estimator takes as ``X`` (see :func:`design_matrix`).
    """

    def __init__(self, featurizer, estimator, info: dict | None = None, input_kind: str = "features"):
        self.featurizer = featurizer
        self.estimator = estimator
        self.info = dict(info or {})
        self.input_kind = input_kind

    @property
    def classes_(self) -> list[str]:
        return [str(c) for c in self.estimator.classes_]

    def predict_paths(self, paths: Sequence[str], n_jobs: int = 1, progress: bool = False) -> pd.DataFrame:
        """Predict image files; a file that cannot be read or holds no cell gets an error row.

        Returns
        -------
        DataFrame
            One row per input path, in input order, with columns ``path``,
            ``label``, ``confidence``, ``p_<class>`` per class, ``status``
            (``ok`` or ``error``) and ``error``.
        """
        from hybridwbc.features.table import featurize_paths

        paths = [os.fsdecode(p) for p in paths]
        table = featurize_paths(self.featurizer, paths, shas=[""] * len(paths), cache_dir=None, n_jobs=n_jobs,
                                progress=progress, desc="predict")
        classes = self.classes_
        proba = np.full((len(paths), len(classes)), np.nan)
        if len(table.index):
            kept = [paths[i] for i in table.index]
            proba[table.index] = self.estimator.predict_proba(design_matrix(self.input_kind, kept, table.X))
        out = pd.DataFrame({"path": paths})
        ok = np.zeros(len(paths), bool)
        ok[table.index] = True
        best = np.where(ok, np.nanargmax(np.where(ok[:, None], proba, 0.0), axis=1), 0)
        out["label"] = np.where(ok, np.asarray(classes, dtype=object)[best], "")
        out["confidence"] = np.where(ok, proba[np.arange(len(paths)), best], np.nan)
        for j, c in enumerate(classes):
            out[f"p_{c}"] = proba[:, j]
        errors = dict(zip(table.skipped["path"], table.skipped["reason"]))
        out["status"] = np.where(ok, "ok", "error")
        out["error"] = [errors.get(p, "") for p in paths]
        return out

    # persistence ------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``pipeline.joblib`` and ``model.json`` into ``folder`` (created)."""
        import joblib

        from hybridwbc.tracking import library_versions

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model_path = folder / MODEL_FILE
        tmp = folder / (MODEL_FILE + ".tmp")
        joblib.dump(self, tmp)
        os.replace(tmp, model_path)
        meta = {
            "format": "hybridwbc-pipeline/1",
            "classes": self.classes_,
            "feature_names": list(self.featurizer.feature_names()),
            "featurizer": type(self.featurizer).__name__,
            "featurizer_params": {k: repr(v) for k, v in self.featurizer.get_params().items()},
            "estimator": type(self.estimator).__name__,
            "input_kind": self.input_kind,
            "versions": library_versions(),
            "info": _jsonable(self.info),
            "files": {MODEL_FILE: _sha256(model_path)},
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "WBCPipeline":
        """Load a saved pipeline after checking its files against the recorded hashes.

        Raises
        ------
        ModelLoadError
            If the folder, ``model.json`` or a listed file is missing, or a hash differs.
        """
        import joblib

        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise ModelLoadError(
                f"No saved model in {str(folder)!r}: {META_FILE} is missing. Expected the model/ folder of a "
                "hybridwbc run (outputs/<date>/<time>/model). Fix: pass model=<that folder>."
            )
        try:
            meta = json.loads(meta_path.read_text())
            files = dict(meta["files"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{str(meta_path)!r} is not a valid hybridwbc model description ({exc}).") from exc
        for name, expected in files.items():
            p = folder / name
            if not p.is_file():
                raise ModelLoadError(f"Model file {str(p)!r} listed in {META_FILE} is missing. Re-save the model.")
            if _sha256(p) != expected:
                raise ModelLoadError(
                    f"Model file {str(p)!r} does not match the SHA-256 recorded when it was saved; refusing to "
                    "load it (it was modified or corrupted). Fix: use the original model folder."
                )
        obj = joblib.load(folder / MODEL_FILE)
        if not isinstance(obj, cls):
            raise ModelLoadError(f"{str(folder / MODEL_FILE)!r} holds a {type(obj).__name__}, not a WBCPipeline.")
        return obj


def _jsonable(v: Any):
    try:
        json.dumps(v)
        return v
    except TypeError:
        if isinstance(v, dict):
            return {str(k): _jsonable(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [_jsonable(x) for x in v]
        return repr(v)
