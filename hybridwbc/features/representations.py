"""Representations of two image sets under one normalisation: handcrafted features and frozen embeddings.

:func:`representations` serves the domain-shift experiment (:mod:`hybridwbc.evaluate.shift`): for one
``preprocess`` node it fits the normaliser on the *source* images only, then computes, for the source
and the target rows alike,

* the handcrafted features of the normalised image (cached by content hash + featurizer and normaliser
  state, as every run's features are);
* the embeddings of each pretrained backbone (a weights file from ``make pretrain``, frozen), read from
  the normalised copies of the images (cached by content hash + the model's identity);
* both side by side (``hybrid``).

A row a representation cannot read is NaN there (a handcrafted row with no cell found, an image that
could not be decoded); the evaluation counts it as a skipped, wrong answer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from hybridwbc.errors import ConfigError, WeightsUnavailableError

__all__ = ["backbone_record", "backbone_from_file", "representations"]


def backbone_record(weights: str | os.PathLike) -> dict:
    """The checked ``make pretrain`` record of a weights file (architecture, classes, hash).

    Raises
    ------
    WeightsUnavailableError
        If the file or its ``.json`` description is missing, or the description is another file's.
    """
    from hybridwbc.cnn.pretrain import record, sidecar

    info = record(weights) if Path(os.fsdecode(weights)).is_file() else None
    if info is None:
        raise WeightsUnavailableError(
            f"Pretrained backbone {str(weights)!r} (or its description {sidecar(weights).name}) does not exist. "
            "Expected the files `make pretrain` writes (pretrained/<name>.weights.h5 and .json). Fix: run `make "
            "pretrain`, or point shift.backbones at them.")
    return info


def backbone_from_file(weights: str | os.PathLike):
    """``(model, input_size)``: the frozen embedding model of a weights file exported by ``make pretrain``
    (architecture read from the ``.json`` beside it).

    Raises
    ------
    WeightsUnavailableError
        If the file or its ``.json`` description is missing.
    """
    from hybridwbc.cnn.build import build_backbone

    info = backbone_record(weights)
    model = build_backbone(info["backbone"], int(info["input_size"]), info.get("pooling", "avg"), str(weights),
                           info.get("backbone_params") or {})
    return model, int(info["input_size"])


def _embeddings(weights, files, shas, cache_dir: str, progress: bool) -> np.ndarray:
    from hybridwbc.cnn.embed import extract_embeddings

    model, size = backbone_from_file(weights)
    res = extract_embeddings(model, list(files), size, shas=shas, cache_dir=Path(cache_dir) / "embeddings",
                             progress=progress)
    X = np.full((len(files), res.X.shape[1]), np.nan)
    X[res.index] = res.X
    return X


def representations(manifest: pd.DataFrame, n_source: int, preprocess_cfg, cfg, backbones: dict,
                    kinds=("handcrafted", "cnn", "hybrid"), progress: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, X)`` of every representation of ``manifest``'s rows under one normalisation.

    Parameters
    ----------
    manifest : DataFrame
        Source rows first (``n_source`` of them), then target rows; ``path`` and ``sha256`` columns.
    n_source : int
        The normaliser is fitted on ``manifest``'s first ``n_source`` images only.
    preprocess_cfg : DictConfig
        One ``preprocess`` node (``conf/preprocess/``).
    cfg : DictConfig
        The run's config (``features``, ``segment``, ``seed``, ``paths.cache_dir``).
    backbones : dict
        Variant name -> pretrained weights file.
    kinds : sequence of {"handcrafted", "cnn", "hybrid"}

    Yields
    ------
    name : str
        ``handcrafted``, ``cnn:<variant>`` or ``hybrid:<variant>``.
    X : ndarray of shape (len(manifest), d), dtype float64
        NaN rows: not readable by this representation.

    Raises
    ------
    ConfigError
        An unknown kind.
    """
    from hybridwbc.config import build_featurizer, build_normaliser
    from hybridwbc.features.preprocessed import PreprocessedFeaturizer
    from hybridwbc.features.table import featurize_manifest, full_table

    unknown = sorted(set(kinds) - {"handcrafted", "cnn", "hybrid"})
    if unknown:
        raise ConfigError(f"shift.representations names {unknown}; expected handcrafted, cnn or hybrid.")
    cache = str(cfg.paths.cache_dir)
    norm = build_normaliser(preprocess_cfg, cfg.segment, int(cfg.seed))
    featurizer = build_featurizer(cfg.features)
    if norm.active:
        norm.fit_files(manifest["path"].to_numpy()[:n_source])
        featurizer = PreprocessedFeaturizer(featurizer, norm)
    hand = None
    if {"handcrafted", "hybrid"} & set(kinds):
        table = featurize_manifest(featurizer, manifest, cache_dir=cache + "/features", n_jobs=cfg.features.n_jobs,
                                   progress=progress)
        hand, _ = full_table(table, manifest["path"].tolist())
        if "handcrafted" in kinds:
            yield "handcrafted", hand
    if not {"cnn", "hybrid"} & set(kinds):
        return
    files, shas = manifest["path"].to_numpy(dtype=object), manifest["sha256"].tolist()
    if norm.active:
        files, _ = featurizer.normalised_files(manifest["path"].tolist(), shas, cache + "/preprocessed",
                                               progress=progress)
        shas = None  # the normalised files' own hashes name their embeddings
    for variant, weights in backbones.items():
        emb = _embeddings(weights, files, shas, cache, progress)
        if "cnn" in kinds:
            yield f"cnn:{variant}", emb
        if "hybrid" in kinds:
            yield f"hybrid:{variant}", np.hstack([hand, emb])
