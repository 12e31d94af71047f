"""On-disk cache of per-image feature vectors, keyed by content hash plus settings.

Layout: ``<root>/<settings key>/<hash[:2]>/<hash>.npy`` for a vector, or
``<hash>.skip`` (a one-line reason) for an image that yielded no features.
Every entry is written to a temporary file in the same folder and moved into
place (:func:`hybridwbc.data.atomic.atomic_path`), which is atomic on POSIX: an interrupted run
leaves either a whole entry or none, and a rerun resumes where it stopped.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hybridwbc.data.atomic import TMP_PREFIX, atomic_path

__all__ = ["FeatureCache"]


class FeatureCache:
    """Per-image cache of feature vectors for one featurizer setting.

    Parameters
    ----------
    root : path-like
        Cache folder (created on demand).
    key : str
        The featurizer's :meth:`~hybridwbc.features.base.ImageFeaturizer.cache_key`.
    """

    def __init__(self, root: str | os.PathLike, key: str):
        self.folder = Path(root) / key
        self.key = key

    def _path(self, sha: str, suffix: str) -> Path:
        return self.folder / sha[:2] / f"{sha}{suffix}"

    def get(self, sha: str) -> np.ndarray | str | None:
        """The cached vector, the cached skip reason (str), or ``None`` when absent.

        A corrupt entry (unreadable ``.npy``) is deleted and reported as absent.
        """
        if not sha:
            return None
        p = self._path(sha, ".npy")
        if p.is_file():
            try:
                return np.load(p, allow_pickle=False)
            except (OSError, ValueError, EOFError):
                p.unlink(missing_ok=True)
                return None
        s = self._path(sha, ".skip")
        if s.is_file():
            try:
                return s.read_text(encoding="utf-8") or "skipped"
            except OSError:
                return None
        return None

    def _atomic_write(self, target: Path, write) -> None:
        with atomic_path(target, fsync=True) as tmp, open(tmp, "wb") as fh:
            write(fh)

    def put(self, sha: str, vector: np.ndarray) -> None:
        """Store a vector atomically (``float64``, shape ``(n_features,)``)."""
        if sha:
            arr = np.asarray(vector, dtype=np.float64)
            self._atomic_write(self._path(sha, ".npy"), lambda fh: np.save(fh, arr, allow_pickle=False))

    def put_skip(self, sha: str, reason: str) -> None:
        """Record that an image yields no features (e.g. no cell found)."""
        if sha:
            self._atomic_write(self._path(sha, ".skip"), lambda fh: fh.write(reason.encode("utf-8")))

    def __len__(self) -> int:
        """Number of stored vectors (temporary files are not entries)."""
        if not self.folder.is_dir():
            return 0
        return sum(1 for p in self.folder.glob("*/*.npy") if not p.name.startswith(TMP_PREFIX))

    def sweep(self) -> int:
        """Remove temporary files left by writers that are no longer running (a killed run).

        Returns
        -------
        int
            Files removed.
        """
        removed = 0
        if not self.folder.is_dir():
            return 0
        for p in self.folder.glob(f"*/{TMP_PREFIX}*"):
            try:
                pid = int(p.name.split("-")[1])
            except (IndexError, ValueError):
                pid = -1
            if pid > 0 and _alive(pid):
                continue
            p.unlink(missing_ok=True)
            removed += 1
        return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
