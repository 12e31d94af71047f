"""Atomic file writes: a file the framework writes appears whole or not at all.

:func:`atomic_path` yields a fresh temporary path beside the target (same folder, so the same file system,
and the same suffixes, so writers that choose the format by the name keep working: ``.png``,
``.weights.h5``). The caller writes the file (or folder) there; on success it is moved onto the target with
:func:`os.replace`, which is atomic on POSIX; on any error, ``KeyboardInterrupt`` and signals included, the
temporary is removed and the target is left as it was. An interrupted run therefore never leaves a
truncated cache entry, table or model, and two processes writing the same target never share a temporary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "write_text_atomic", "TMP_PREFIX"]

#: How every temporary file starts: hidden, and recognisable by sweeps and listings.
TMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """A temporary path to write ``target`` to; moved onto ``target`` when the block ends without error.

    Parameters
    ----------
    target : path-like
        The file (or folder) to create or replace. Its parent folder is created.
    fsync : bool
        Flush the written file to disk before the move (caches that must survive a power cut).

    Yields
    ------
    pathlib.Path
        ``<folder>/.tmp-<pid>-<random>-<name>``; nothing exists there yet. The writer's process id lets a
        later run remove what a killed writer left (:meth:`hybridwbc.features.cache.FeatureCache.sweep`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{target.name}")
    try:
        yield tmp
        if fsync and tmp.is_file():
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(target: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``target`` atomically; returns the target's path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(target)
