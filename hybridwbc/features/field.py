"""Whole smear fields described by the cells segmented in them.

A field (``all_pbs``, ``bccd``) holds several white cells. :class:`FieldFeaturizer`
segments the field in ``field`` mode, computes the handcrafted features of each
cell (largest cells first, at most ``max_cells``), and aggregates them per
field: the mean and the standard deviation of every feature over the cells,
plus the number of cells found.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hybridwbc.features.handcrafted import HandcraftedFeaturizer, derived_init
from hybridwbc.segment import VERSION as SEGMENT_VERSION
from hybridwbc.segment import Segmentation

__all__ = ["FieldFeaturizer"]


class FieldFeaturizer(HandcraftedFeaturizer):
    """Per-field aggregate of the handcrafted features of its segmented cells.

    Features: ``mean__<f> = mean_c f(c)``, ``std__<f> = std_c f(c)`` over the
    cells ``c`` of the field, and ``field__n_cells``. Parameters are those of
    :class:`~hybridwbc.features.handcrafted.HandcraftedFeaturizer` plus
    ``max_cells``; the segmenter's mode is replaced by ``"field"``.

    Parameters
    ----------
    max_cells : int, default 20
        The largest ``max_cells`` cells of a field are described.
    """

    version = f"2/segment-{SEGMENT_VERSION}"

    __init__ = derived_init(HandcraftedFeaturizer, extra={"max_cells": 20})

    @property
    def mode(self) -> str:
        """Always ``"field"``: every cell of the field is segmented."""
        return "field"

    def segment(self, image) -> Segmentation:
        """Segment a field: this featurizer's segmenter in ``field`` mode."""
        return replace(self.segmenter, mode="field").segment(image)

    def feature_names(self) -> list[str]:
        base = super().feature_names()
        return [f"mean__{n}" for n in base] + [f"std__{n}" for n in base] + ["field__n_cells"]

    def featurize(self, image) -> np.ndarray:
        """Aggregated features of the cells of one field.

        Returns
        -------
        ndarray of shape (2 * n_cell_features + 1,), float64

        Raises
        ------
        NoCellFoundError
            When the field holds no plausible white cell.
        """
        seg = self.segment(image)
        cells = sorted(seg.cells, key=lambda c: -int(c.cell.sum()))[: int(self.max_cells)]
        feats = np.vstack([self.features_of(self.view(seg.image, c)) for c in cells])
        return np.concatenate([feats.mean(axis=0), feats.std(axis=0), [float(len(cells))]])
