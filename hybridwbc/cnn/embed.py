"""Embedding extraction: a model run over image files in batches, through the on-disk cache.

:func:`extract_embeddings` runs a model over files through the ``tf.data`` pipeline
(:func:`~hybridwbc.cnn.images.image_dataset`) and caches each vector in a
:class:`~hybridwbc.features.cache.FeatureCache` keyed by the image's content
hash plus :func:`~hybridwbc.cnn.build.model_identity` (weights hash, input size, preprocessing).
Cached images never reach Keras.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from hybridwbc.cnn.images import image_dataset, unreadable_reason

if TYPE_CHECKING:
    import keras

__all__ = ["EmbeddingResult", "extract_embeddings"]

log = logging.getLogger(__name__)


@dataclass
class EmbeddingResult:
    """Embeddings of the images that could be read.

    Attributes
    ----------
    X : ndarray of shape (n_kept, n_embed), dtype float32
    index : ndarray of shape (n_kept,), dtype int64
        Positions in the input ``paths``.
    skipped : DataFrame
        ``path`` and ``reason`` of files that could not be decoded.
    n_cached : int
        Vectors read from the cache (these images never reached Keras).
    n_computed : int
    """

    X: np.ndarray
    index: np.ndarray
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))
    n_cached: int = 0
    n_computed: int = 0


def _run_model(model: keras.Model, paths: list[str], size: int, batch_size: int):
    """Embeddings of ``paths`` through the pipeline, batch by batch: yields (vectors, kept positions)."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def infer(x):
        return model(x, training=False)

    for x, i in image_dataset(paths, size, batch_size):
        yield infer(x).numpy(), i.numpy()


def extract_embeddings(model: keras.Model, paths: Sequence[str], input_size: int, shas: Sequence[str] | None = None,
                       cache_dir: str | os.PathLike | None = None, key: str | None = None, batch_size: int = 64,
                       progress: bool = False) -> EmbeddingResult:
    """Embed image files in batches, through the on-disk cache.

    Parameters
    ----------
    model : keras.Model
        Images ``(S, S, 3)`` float32 in ``[0, 255]`` -> ``(n_embed,)``; called with ``training=False``.
    paths : sequence of str
    input_size : int
    shas : sequence of str, optional
        Content hashes; computed from the files when absent (and a cache is used).
    cache_dir : path-like, optional
        Cache root; ``None`` disables caching.
    key : str, optional
        Cache key (default :func:`model_identity` of ``model``).
    batch_size : int, default 64

    Returns
    -------
    EmbeddingResult
        Files that cannot be decoded are listed in ``skipped`` (never fatal).
    """
    from hybridwbc.cnn.build import model_identity, preprocess_name
    from hybridwbc.data.manifest import file_sha256
    from hybridwbc.features.cache import FeatureCache

    paths = [os.fsdecode(p) for p in paths]
    n_embed = int(np.prod(model.output_shape[1:]))
    vectors: dict[int, np.ndarray] = {}
    todo = list(range(len(paths)))
    cache = None
    n_cached = 0
    if cache_dir is not None:
        if shas is None:
            shas = [file_sha256(p) for p in paths]
        key = key or model_identity(model, input_size, preprocess_name(model))
        cache = FeatureCache(Path(cache_dir), key)
        todo = []
        for i, s in enumerate(shas):
            hit = cache.get(s)
            if isinstance(hit, np.ndarray) and hit.shape == (n_embed,):
                vectors[i] = hit.astype(np.float32)
                n_cached += 1
            else:
                todo.append(i)
    skipped = []
    if todo:
        from concurrent.futures import ThreadPoolExecutor

        got = set()
        # cache files are written (and fsynced) by a thread while Keras computes the next batch
        with ThreadPoolExecutor(max_workers=1) as writer:
            pending = []
            for emb, kept in _run_model(model, [paths[i] for i in todo], int(input_size), batch_size):
                emb = emb.reshape(len(emb), n_embed)
                rows = []
                for row, k in zip(emb, kept):
                    i = todo[int(k)]
                    vectors[i] = row
                    got.add(int(k))
                    rows.append((shas[i], row) if cache is not None else None)
                if cache is not None:
                    pending.append(writer.submit(lambda rs: [cache.put(sh, r) for sh, r in rs], rows))
            for f in pending:
                f.result()
        for k in range(len(todo)):
            if k not in got:
                skipped.append({"path": paths[todo[k]], "reason": unreadable_reason(paths[todo[k]])})
    index = np.array(sorted(vectors), dtype=np.int64)
    X = np.vstack([vectors[i] for i in index]).astype(np.float32) if len(index) else np.empty((0, n_embed), np.float32)
    skipped_df = pd.DataFrame(skipped, columns=["path", "reason"])
    if len(skipped_df):
        log.warning("%d of %d images could not be decoded and were skipped; first: %s (%s)", len(skipped_df),
                    len(paths), skipped_df["path"].iloc[0], skipped_df["reason"].iloc[0])
    return EmbeddingResult(X=X, index=index, skipped=skipped_df, n_cached=n_cached,
                           n_computed=len(todo) - len(skipped))
