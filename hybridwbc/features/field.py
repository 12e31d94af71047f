"""Whole smear fields described by the cells segmented in them.

A field (``all_pbs``, ``bccd``) holds several white cells. :class:`FieldFeaturizer`
segments the field in ``field`` mode, computes the handcrafted features of each
cell (largest cells first, at most ``max_cells``), and aggregates them per
field: the mean and the standard deviation of every feature over the cells,
plus the number of cells found.
"""

from __future__ import annotations

import numpy as np

from hybridwbc.features.handcrafted import FAMILIES, HandcraftedFeaturizer
from hybridwbc.segment import VERSION as SEGMENT_VERSION

__all__ = ["FieldFeaturizer"]


class FieldFeaturizer(HandcraftedFeaturizer):
    """Per-field aggregate of the handcrafted features of its segmented cells.

    Features: ``mean__<f> = mean_c f(c)``, ``std__<f> = std_c f(c)`` over the
    cells ``c`` of the field, and ``field__n_cells``. Parameters are those of
    :class:`~hybridwbc.features.handcrafted.HandcraftedFeaturizer` (``mode`` is
    fixed to ``"field"``) plus ``max_cells``.

    Parameters
    ----------
    max_cells : int, default 20
        The largest ``max_cells`` cells of a field are described.
    """

    version = f"1/segment-{SEGMENT_VERSION}"

    def __init__(self, families=FAMILIES, n_clusters=4, min_contrast=40.0, min_nucleus_frac=0.002,
                 max_cell_ratio=2.6, lobe_prominence=0.2, glcm_levels=16, glcm_distances=(1, 2, 4),
                 lbp_points=(8, 16), lbp_radii=(1, 2), gran_length=8, gran_element=10, gran_subsample=1,
                 gran_channels=("gray", "g"), max_cells=20):
        super().__init__(families=families, mode="field", n_clusters=n_clusters, min_contrast=min_contrast,
                         min_nucleus_frac=min_nucleus_frac, max_cell_ratio=max_cell_ratio,
                         lobe_prominence=lobe_prominence, glcm_levels=glcm_levels, glcm_distances=glcm_distances,
                         lbp_points=lbp_points, lbp_radii=lbp_radii, gran_length=gran_length,
                         gran_element=gran_element, gran_subsample=gran_subsample, gran_channels=gran_channels)
        self.max_cells = max_cells

    def get_params(self, deep=True):
        params = super().get_params(deep)
        params.pop("mode", None)
        return params

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
