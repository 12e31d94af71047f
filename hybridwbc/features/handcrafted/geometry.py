"""Geometry and size-ratio features of a cell (masks ``N`` nucleus, ``C`` cytoplasm, ``W = N | C``).

``geometry`` (:func:`geometry_features`), for ``W`` (``cell_*``) and ``N`` (``nucleus_*``):
    * ``area = |M|``;
    * ``perimeter``: scikit-image's 4-neighbourhood perimeter (border pixels
      weighted 1, sqrt(2) or (1 + sqrt(2))/2 by their local configuration);
    * ``circularity = 4 pi area / perimeter^2`` (0 when perimeter is 0);
    * ``eccentricity = sqrt(1 - l2 / l1)`` with ``l1 >= l2`` the eigenvalues of
      the inertia tensor ``[[mu02, -mu11], [-mu11, mu20]] / mu00`` (central
      moments; 0 when ``l1 = 0``);
    * ``solidity = area / |convex hull|``: the pixels of scikit-image's
      ``convex_hull_image`` (the hull of every pixel's four edge midpoints,
      pixel centres inside or on it), counted exactly by :func:`hull_area`;
    * ``major_axis = 4 sqrt(l1)``, ``minor_axis = 4 sqrt(l2)``;
    * ``nucleus_lobes``: the number of regional maxima of the nucleus's
      distance transform ``d`` whose prominence (height above the saddle to a
      higher maximum) exceeds ``lobe_prominence * max d`` (h-maxima, see
      :func:`lobe_peaks`). Lobes joined by thin chromatin bridges or narrow
      necks are separate maxima; a round or kidney-shaped nucleus has one.

``size_ratio`` (:func:`size_ratio_features`):
    * ``nucleus_cytoplasm = |N| / max(|C|, 1)``; ``nucleus_cell = |N| / |W|``.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from hybridwbc.features.handcrafted.cell import CellView
from hybridwbc.segment.morphology import CROSS, reconstruct_by_dilation

__all__ = ["GEOM_PROPS", "geometry_names", "perimeter", "hull_area", "shape_props", "lobe_peaks", "count_lobes",
           "geometry_features", "size_ratio_names", "size_ratio_features"]

GEOM_PROPS = ("area", "perimeter", "circularity", "eccentricity", "solidity", "major_axis", "minor_axis")
_PERIM_KERNEL = np.array([[10, 2, 10], [2, 1, 2], [10, 2, 10]], np.float32)
_PERIM_WEIGHTS = np.zeros(50, np.float64)
_PERIM_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIM_WEIGHTS[[21, 33]] = np.sqrt(2.0)
_PERIM_WEIGHTS[[13, 23]] = (1.0 + np.sqrt(2.0)) / 2.0
_DIAMOND = np.array([[0, -1], [0, 1], [-1, 0], [1, 0]])  # a pixel's edge midpoints, doubled (x, y)


def geometry_names(lobe_prominence: float = 0.2) -> list[str]:
    """Names of :func:`geometry_features`."""
    return [f"{r}_{p}" for r in ("cell", "nucleus") for p in GEOM_PROPS] + ["nucleus_lobes"]


def perimeter(mask: np.ndarray) -> float:
    """scikit-image's 4-neighbourhood perimeter of a bool mask, via OpenCV.

    Parameters
    ----------
    mask : ndarray of shape (h, w), bool

    Returns
    -------
    float
    """
    m = np.pad(mask, 1).astype(np.uint8)
    eroded = cv2.erode(m, CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    border = m - eroded
    conv = cv2.filter2D(border.astype(np.float32), -1, _PERIM_KERNEL, borderType=cv2.BORDER_CONSTANT)
    hist = np.bincount(np.rint(conv).astype(np.int64).ravel(), minlength=50)[:50]
    return float(hist @ _PERIM_WEIGHTS)


def hull_area(mask: np.ndarray) -> int:
    """Pixel count of scikit-image's ``convex_hull_image(mask)``, in exact integer arithmetic.

    In doubled coordinates every pixel ``(r, c)`` contributes its edge midpoints ``(2r +- 1, 2c)``,
    ``(2r, 2c +- 1)`` (only the first and last pixel of each row and column can be hull vertices);
    OpenCV's hull of these integer points is exact, and each pixel row ``R = 2r`` counts the
    pixel centres ``C = 2c`` between the hull's left and right edges, boundary included.

    Parameters
    ----------
    mask : ndarray of shape (h, w), bool

    Returns
    -------
    int
        0 for an empty mask.
    """
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return 0
    sub = mask[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    h, w = sub.shape
    hr, hc = sub.any(1), sub.any(0)
    r, c = np.arange(h)[hr], np.arange(w)[hc]
    pr = np.concatenate([r, r, sub[:, hc].argmax(0), h - 1 - sub[::-1, hc].argmax(0)])
    pc = np.concatenate([sub[hr].argmax(1), w - 1 - sub[hr, ::-1].argmax(1), c, c])
    pts = (np.stack([2 * pc, 2 * pr], 1)[:, None, :] + _DIAMOND).reshape(-1, 2).astype(np.int32)
    hull = cv2.convexHull(pts).reshape(-1, 2).astype(np.int64)
    c1, r1 = hull[:, 0], hull[:, 1]
    c2, r2 = np.roll(c1, -1), np.roll(r1, -1)
    big = np.iinfo(np.int64).max
    R = np.arange(0, 2 * h - 1, 2)[:, None]
    den = r2 - r1
    sign = np.where(den < 0, -1, 1)
    den2 = 2 * np.where(den == 0, 1, den * sign)
    num = (c1 * den + (R - r1) * (c2 - c1)) * sign  # edge column at row R = num / (den2 / 2)
    crosses = (den != 0) & (R >= np.minimum(r1, r2)) & (R <= np.maximum(r1, r2))
    on_row = R == r1  # hull vertices on a pixel row (covers horizontal edges)
    lo = np.minimum(np.where(crosses, -((-num) // den2), big).min(1), np.where(on_row, -((-c1) // 2), big).min(1))
    hi = np.maximum(np.where(crosses, num // den2, -big).max(1), np.where(on_row, c1 // 2, -big).max(1))
    return int(np.clip(hi - lo + 1, 0, None).sum())


def shape_props(mask: np.ndarray) -> list[float]:
    """The :data:`GEOM_PROPS` of one region (module docstring); all 0 for an empty mask.

    Parameters
    ----------
    mask : ndarray of shape (h, w), bool

    Returns
    -------
    list of 7 float
    """
    area = float(mask.sum())
    if area == 0:
        return [0.0] * len(GEOM_PROPS)
    p = perimeter(mask)
    circ = 4.0 * np.pi * area / (p * p) if p > 0 else 0.0
    m = cv2.moments(mask.view(np.uint8), binaryImage=True)
    mu00 = m["m00"]
    a, b, c = m["mu02"] / mu00, -m["mu11"] / mu00, m["mu20"] / mu00  # rows/cols swapped: eigvals invariant
    ev = np.linalg.eigvalsh(np.array([[a, b], [b, c]]))
    ev = np.clip(ev, 0, None)
    l1, l2 = float(ev[1]), float(ev[0])
    ecc = float(np.sqrt(1.0 - l2 / l1)) if l1 != 0 else 0.0
    hull = float(hull_area(mask))
    solidity = area / hull if hull > 0 else 0.0
    return [area, p, circ, ecc, solidity, 4.0 * np.sqrt(l1), 4.0 * np.sqrt(l2)]


def lobe_peaks(nucleus: np.ndarray, lobe_prominence: float = 0.2) -> np.ndarray:
    """Lobe cores of a nucleus: h-maxima of its distance transform; (h+2, w+2) bool.

    ``d`` is the Euclidean distance of nucleus pixels to the nearest
    non-nucleus pixel (outside the image counts as non-nucleus), rescaled to
    ``q = floor(250 d / max d)`` (uint8); the cores are the pixels where
    ``q - R(q - h, q) >= h`` with ``h = round(250 * lobe_prominence)`` and ``R``
    the reconstruction by dilation: the regional maxima of ``d`` that rise
    more than ``lobe_prominence * max d`` above the saddle to any higher one.
    """
    d = ndi.distance_transform_edt(np.pad(nucleus, 1))
    q = np.floor(d * (250.0 / d.max())).astype(np.uint8)
    h = int(round(250 * lobe_prominence))
    rec = reconstruct_by_dilation(cv2.subtract(q, h), q)
    return (q.astype(np.int16) - rec) >= h


def count_lobes(nucleus: np.ndarray, lobe_prominence: float = 0.2) -> float:
    """Number of nucleus lobes: 8-connected components of :func:`lobe_peaks`; 0 for an empty mask."""
    if not nucleus.any():
        return 0.0
    core = lobe_peaks(nucleus, lobe_prominence).view(np.uint8)
    return float(cv2.connectedComponents(core, connectivity=8)[0] - 1)


def geometry_features(view: CellView, lobe_prominence: float = 0.2) -> np.ndarray:
    """Geometric features of a cell (formulas in the module docstring).

    Parameters
    ----------
    view : CellView
    lobe_prominence : float, default 0.2

    Returns
    -------
    ndarray of shape (15,), float64
    """
    return np.array(shape_props(view.cell) + shape_props(view.nucleus)
                    + [count_lobes(view.nucleus, lobe_prominence)], np.float64)


def size_ratio_names() -> list[str]:
    """Names of :func:`size_ratio_features`."""
    return ["nucleus_cytoplasm", "nucleus_cell"]


def size_ratio_features(view: CellView) -> np.ndarray:
    """``[|N| / max(|C|, 1), |N| / |W|]``; shape (2,), float64."""
    n = float(view.nucleus.sum())
    c = float(view.cytoplasm.sum())
    return np.array([n / max(c, 1.0), n / max(n + c, 1.0)])
