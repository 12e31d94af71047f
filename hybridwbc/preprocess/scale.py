"""Scale normalisation: every cell reaches the model at the same size in pixels; pure functions of ndarrays.

* :func:`normalise_cell_scale`: measure the cell (or its nucleus) by segmentation and crop a square
  window centred on it whose side is ``diameter / fraction``, resized to ``side``: the cell's
  equivalent diameter becomes ``fraction * side`` pixels whatever the camera (the crop of
  :func:`hybridwbc.segment.locate.crop_cell`, which ``analyze`` uses for fields).
* :func:`rescale_mpp`: resize by ``um_per_px / target_um_per_px``, for a known magnification.
"""

from __future__ import annotations

import cv2
import numpy as np

from hybridwbc.errors import ConfigError
from hybridwbc.segment.locate import LocatedCell, crop_cell

__all__ = ["measure_cell", "normalise_cell_scale", "rescale_mpp", "MEASURES"]

#: What the scale is measured on.
MEASURES = ("cell", "nucleus")


def measure_cell(image: np.ndarray, segmenter, measure: str = "cell") -> tuple[float, tuple[float, float]]:
    """Equivalent diameter ``2 sqrt(area / pi)`` (pixels) of the primary cell or its nucleus, and the cell's
    centroid ``(row, col)``.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), dtype uint8
    segmenter : hybridwbc.segment.Segmenter
    measure : {"cell", "nucleus"}

    Raises
    ------
    NoCellFoundError
        From the segmenter: no plausible cell.
    ConfigError
        If ``measure`` is neither ``cell`` nor ``nucleus``.
    """
    if measure not in MEASURES:
        raise ConfigError(f"preprocess.scale.measure must be one of {MEASURES}; received {measure!r}.")
    primary = segmenter.segment(image).primary
    mask = primary.cell if measure == "cell" else primary.nucleus
    rows, cols = np.nonzero(primary.cell)
    return float(2.0 * np.sqrt(mask.sum() / np.pi)), (float(rows.mean()), float(cols.mean()))


def normalise_cell_scale(image: np.ndarray, diameter: float, centroid: tuple[float, float], side: int,
                         fraction: float) -> np.ndarray:
    """A ``side``-pixel square crop centred on ``centroid`` in which ``diameter`` spans ``fraction * side``.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), dtype uint8
    diameter : float
        Measured diameter in ``image`` pixels (:func:`measure_cell`).
    centroid : (float, float)
    side : int
        Output side.
    fraction : float in (0, 1]

    Returns
    -------
    ndarray of shape (side, side, 3), dtype uint8
        Beyond the image, the slide's background colour.
    """
    area = int(round(np.pi * (diameter / 2.0) ** 2))
    cell = LocatedCell(bbox=(0, 0, 0, 0), centroid=tuple(centroid), area=max(area, 1), nucleus_area=0,
                       border=False, overlap=False, polygon=[], nucleus_polygon=[])
    return crop_cell(image, cell, int(side), window="cell", cell_fraction=float(fraction))


def rescale_mpp(image: np.ndarray, um_per_px: float, target_um_per_px: float) -> np.ndarray:
    """``image`` ((H, W, 3) uint8) resized by ``um_per_px / target_um_per_px``: (H', W', 3) uint8 at the target
    micrometres per pixel."""
    f = float(um_per_px) / float(target_um_per_px)
    h, w = image.shape[:2]
    size = (max(1, int(round(w * f))), max(1, int(round(h * f))))
    if size == (w, h):
        return np.asarray(image)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
