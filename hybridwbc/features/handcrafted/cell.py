"""One segmented cell cut out of its image, with a margin: what every feature family reads.

:func:`crop_cell` cuts a cell's bounding box (grown by a margin, so every family equals its
full-image value) out of the image and its masks; :func:`tighten` narrows a view to the tight
crop that geometry, colour and texture use.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hybridwbc.segment import CellMasks

__all__ = ["CellView", "crop_cell", "tighten"]


@dataclass
class CellView:
    """One cell cut out of its image: everything the families need.

    Attributes
    ----------
    rgb : ndarray of shape (h, w, 3), dtype uint8
    nucleus, cytoplasm : ndarray of shape (h, w), dtype bool
    origin : tuple of 2 int
        Row and column of ``rgb[0, 0]`` in the full image.
    """

    rgb: np.ndarray
    nucleus: np.ndarray
    cytoplasm: np.ndarray
    origin: tuple = (0, 0)

    @property
    def cell(self) -> np.ndarray:
        """``nucleus | cytoplasm``; (h, w) bool."""
        return self.nucleus | self.cytoplasm

    @property
    def gray(self) -> np.ndarray:
        """OpenCV grey level, (h, w) uint8."""
        g = getattr(self, "_gray", None)
        if g is None:
            g = cv2.cvtColor(self.rgb, cv2.COLOR_RGB2GRAY)
            self._gray = g
        return g


def crop_cell(image: np.ndarray, cell: CellMasks, margin: int = 8, align: int = 1) -> CellView:
    """Cut a cell's bounding box, grown by ``margin``, out of the image.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), dtype uint8
    cell : CellMasks
    margin : int, default 8
        Pixels kept around the bounding box (clipped at the image border).
    align : int, default 1
        The crop's origin is rounded down to a multiple of ``align`` (so that
        subsampling by ``align`` samples the same pixels as on the full image).

    Returns
    -------
    CellView
    """
    h, w = cell.nucleus.shape
    r0, c0, r1, c1 = cell.bbox
    r0 = max(0, r0 - margin) // align * align
    c0 = max(0, c0 - margin) // align * align
    r1 = min(h, r1 + margin)
    c1 = min(w, c1 + margin)
    return CellView(
        rgb=np.ascontiguousarray(image[r0:r1, c0:c1]),
        nucleus=np.ascontiguousarray(cell.nucleus[r0:r1, c0:c1]),
        cytoplasm=np.ascontiguousarray(cell.cytoplasm[r0:r1, c0:c1]),
        origin=(r0, c0),
    )


def tighten(view: CellView, margin: int) -> CellView:
    """Sub-view of ``view`` around the cell's bounding box grown by ``margin`` pixels."""
    cell = view.cell
    rows = np.flatnonzero(cell.any(1))
    cols = np.flatnonzero(cell.any(0))
    if rows.size == 0:
        return view
    h, w = cell.shape
    r0, r1 = max(0, rows[0] - margin), min(h, rows[-1] + 1 + margin)
    c0, c1 = max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin)
    return CellView(rgb=np.ascontiguousarray(view.rgb[r0:r1, c0:c1]),
                    nucleus=np.ascontiguousarray(view.nucleus[r0:r1, c0:c1]),
                    cytoplasm=np.ascontiguousarray(view.cytoplasm[r0:r1, c0:c1]),
                    origin=(view.origin[0] + r0, view.origin[1] + c0))
