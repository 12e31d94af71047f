"""Featurize a manifest into a feature table, in parallel, through the cache.

Images are streamed from disk one at a time inside worker processes; only the
feature vectors come back, so memory does not grow with the number of images
beyond the table itself. Images that cannot be read, or hold no cell, are
skipped, counted and listed, never fatal. A vector with NaN or infinite values
(a featurizer bug: featurizers define their degenerate cases) is skipped too,
never cached, and its reason names the offending features.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from hybridwbc.data.io import read_image
from hybridwbc.errors import ConfigError, HybridWBCError, NoCellFoundError
from hybridwbc.features.base import ImageFeaturizer
from hybridwbc.features.cache import FeatureCache

__all__ = ["FeatureTable", "featurize_manifest", "featurize_paths", "full_table", "design_matrix", "design_names",
           "INPUT_KINDS"]

log = logging.getLogger(__name__)


@dataclass
class FeatureTable:
    """Features of the images that could be featurized.

    Attributes
    ----------
    X : ndarray of shape (n_kept, n_features), dtype float64
    names : list of str, length n_features
    index : ndarray of shape (n_kept,), dtype int64
        Row positions in the manifest of the rows of ``X``.
    skipped : DataFrame
        Columns ``path`` and ``reason``: images left out.
    n_cached : int
        Vectors read from the cache rather than computed.
    """

    X: np.ndarray
    names: list
    index: np.ndarray
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))
    n_cached: int = 0


#: Prefix of the skip reason of a vector with NaN or infinite values.
NONFINITE = "non-finite feature values"


def _nonfinite_reason(featurizer: ImageFeaturizer, vec: np.ndarray, shown: int = 10) -> str:
    """The skip reason of a vector with non-finite values: how many, and which features (the first ``shown``)."""
    bad = np.flatnonzero(~np.isfinite(vec))
    names = list(featurizer.feature_names())
    if len(names) != len(vec):
        names = [f"feature {i}" for i in range(len(vec))]
    listed = ", ".join(f"{names[i]}={vec[i]}" for i in bad[:shown]) + (", ..." if len(bad) > shown else "")
    return (f"{NONFINITE}: {len(bad)} of {len(vec)} ({listed}); a featurizer bug (every degenerate case is "
            f"defined at its source): report it with this image")


def _one(featurizer: ImageFeaturizer, path: str, sha: str, cache_root: str | None, key: str):
    """Featurize one file in a worker: returns (vector or None, reason or None)."""
    cache = FeatureCache(cache_root, key) if cache_root else None
    try:
        vec = np.asarray(featurizer.featurize(read_image(path)), dtype=np.float64)
    except HybridWBCError as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if cache is not None and isinstance(exc, NoCellFoundError):
            cache.put_skip(sha, reason)
        return None, reason
    if not np.all(np.isfinite(vec)):
        return None, _nonfinite_reason(featurizer, vec)
    if cache is not None:
        cache.put(sha, vec)
    return vec, None


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _work(featurizer, batch, cache_root, key):
    return [(i, *_one(featurizer, p, s, cache_root, key)) for i, p, s in batch]


def featurize_paths(featurizer: ImageFeaturizer, paths, shas=None, cache_dir: str | os.PathLike | None = None,
                    n_jobs: int = 1, progress: bool = True, desc: str = "features") -> FeatureTable:
    """Featurize image files.

    Parameters
    ----------
    featurizer : ImageFeaturizer
    paths : sequence of str
    shas : sequence of str, optional
        Content hashes (cache keys); computed when absent.
    cache_dir : path-like, optional
        Cache root; ``None`` disables caching.
    n_jobs : int, default 1
        Worker processes (joblib/loky). Images are read inside the workers.
    progress : bool, default True
        Show a tqdm progress bar.

    Returns
    -------
    FeatureTable
        ``index`` refers to positions in ``paths``.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    from hybridwbc.data.manifest import file_sha256

    paths = [str(p) for p in paths]
    shas = list(shas) if shas is not None else [file_sha256(p) for p in paths]
    featurizer.fit()
    names = list(featurizer.feature_names())
    key = featurizer.cache_key()
    cache = FeatureCache(cache_dir, key) if cache_dir else None
    if cache is not None:
        cache.sweep()
    vectors: dict[int, np.ndarray] = {}
    skipped: list[dict] = []
    todo = []
    n_cached = 0
    for i, (p, s) in enumerate(zip(paths, shas)):
        hit = cache.get(s) if cache is not None else None
        if isinstance(hit, np.ndarray) and hit.shape == (len(names),):
            vectors[i] = hit
            n_cached += 1
        elif isinstance(hit, str):
            skipped.append({"path": p, "reason": hit})
            n_cached += 1
        else:
            todo.append((i, p, s))
    if todo:
        bar = tqdm(total=len(todo), desc=desc, unit="img", disable=not progress, mininterval=1.0)
        cache_root = str(cache_dir) if cache_dir else None
        batch = max(1, min(64, len(todo) // max(1, 4 * n_jobs)))
        if n_jobs == 1:
            results = (_work(featurizer, b, cache_root, key) for b in _chunks(todo, batch))
        else:
            results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
                delayed(_work)(featurizer, b, cache_root, key) for b in _chunks(todo, batch))
        for out in results:
            for i, vec, reason in out:
                if vec is None:
                    skipped.append({"path": paths[i], "reason": reason})
                else:
                    vectors[i] = vec
            bar.update(len(out))
        bar.close()
    index = np.array(sorted(vectors), dtype=np.int64)
    X = np.vstack([vectors[i] for i in index]) if len(index) else np.empty((0, len(names)))
    skipped_df = pd.DataFrame(skipped, columns=["path", "reason"])
    n_nonfinite = int(skipped_df["reason"].str.startswith(NONFINITE).sum()) if len(skipped_df) else 0
    if n_nonfinite:
        log.error("%d of %d images had %s (a featurizer bug; listed in skipped.csv with the features)",
                  n_nonfinite, len(paths), NONFINITE)
    if len(skipped_df):
        log.warning("%d of %d images skipped (listed in skipped.csv); first: %s — %s", len(skipped_df),
                    len(paths), skipped_df["path"].iloc[0], skipped_df["reason"].iloc[0])
    return FeatureTable(X=X, names=names, index=index, skipped=skipped_df, n_cached=n_cached)


def featurize_manifest(featurizer: ImageFeaturizer, manifest: pd.DataFrame, cache_dir=None,
                       n_jobs: int = 1, progress: bool = True) -> FeatureTable:
    """Featurize every row of a manifest (see :func:`featurize_paths`)."""
    return featurize_paths(featurizer, manifest["path"].tolist(), manifest["sha256"].tolist(),
                           cache_dir=cache_dir, n_jobs=n_jobs, progress=progress)


def full_table(table: FeatureTable, paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The feature table spread over all input rows (``paths``, as featurized): skipped rows are NaN, with
    their reason.

    Returns
    -------
    X : ndarray of shape (n_rows, n_features), dtype float64
        ``table.X`` at ``table.index``; NaN elsewhere.
    reasons : ndarray of shape (n_rows,), dtype object
        ``""`` for featurized rows, else why the row was skipped (``skipped.csv``'s reason).
    """
    paths = [str(p) for p in paths]
    n_rows = len(paths)
    X = np.full((n_rows, len(table.names)), np.nan)
    X[table.index] = table.X
    reasons = np.full(n_rows, "", dtype=object)
    featurized = np.zeros(n_rows, dtype=bool)
    featurized[table.index] = True
    by_path = dict(zip(table.skipped["path"].astype(str), table.skipped["reason"].astype(str)))
    for i in np.flatnonzero(~featurized):
        reasons[i] = by_path.get(paths[i]) or "skipped"
    return X, reasons


#: What a classifier's ``X`` can be (``classifier.input``; :class:`hybridwbc.config.InputKind`).
INPUT_KINDS = ("features", "paths", "paths_features")


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

    Raises
    ------
    ConfigError
        If ``input_kind`` is none of those.
    """
    if input_kind == "features":
        return features
    col = np.asarray(list(paths), dtype=object).reshape(-1, 1)
    if input_kind == "paths":
        return col
    if input_kind == "paths_features":
        return np.hstack([col, np.asarray(features, dtype=object)])
    raise ConfigError(f"Unknown classifier.input {input_kind!r}. Expected features, paths or paths_features.")


def design_names(input_kind: str, feature_names: Sequence[str]) -> list[str]:
    """Names of the columns of :func:`design_matrix`'s ``X``: ``path`` for the path column, then the features."""
    return (["path"] if input_kind != "features" else []) + (list(feature_names) if input_kind != "paths" else [])
