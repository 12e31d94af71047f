"""Morphology on masks and grey images (OpenCV): the public building blocks of segmentation and features.

Masks are ``(H, W) bool``. Erosion and dilation by a disk of radius ``r`` use the disk itself for
``r <= 2`` and a Euclidean distance transform above (the same disk, much faster); erosion counts
outside the image as foreground. :func:`reconstruct_by_dilation` is greyscale reconstruction
under a mask with cross connectivity, used by the lobe count and the granular spectrum.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["CROSS", "as_u8", "disk", "erode", "dilate", "opening", "closing", "fill_holes", "components", "hull",
           "dice", "reconstruct_by_dilation"]

#: The 3x3 cross (4-connectivity) structuring element, ``uint8``.
CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)


def disk(radius: int) -> np.ndarray:
    """Disk structuring element ``(2r+1, 2r+1) uint8`` (OpenCV ellipse)."""
    r = max(0, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def as_u8(mask: np.ndarray) -> np.ndarray:
    """A C-contiguous ``uint8`` copy (0/1) of a mask, as OpenCV wants it."""
    return np.ascontiguousarray(mask, dtype=np.uint8)


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Erosion by a disk of radius ``r``; outside the image counts as foreground."""
    if r <= 0:
        return mask
    if r <= 2:
        return cv2.erode(as_u8(mask), disk(r)).astype(bool)
    return cv2.distanceTransform(as_u8(mask), cv2.DIST_L2, 5) > r


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Dilation by a disk of radius ``r``."""
    if r <= 0:
        return mask
    if r <= 2:
        return cv2.dilate(as_u8(mask), disk(r)).astype(bool)
    if not mask.any():
        return mask.copy()
    return cv2.distanceTransform(as_u8(~mask), cv2.DIST_L2, 5) <= r


def opening(mask: np.ndarray, r: int) -> np.ndarray:
    """Opening (erosion, then dilation) by a disk of radius ``r``; (H, W) bool."""
    return dilate(erode(mask, r), r) if r > 0 else mask


def closing(mask: np.ndarray, r: int) -> np.ndarray:
    """Closing (dilation, then erosion) by a disk of radius ``r``, padded so the border does not close; (H, W) bool."""
    if r <= 0:
        return mask
    pad = r + 1
    m = np.pad(mask, pad)
    return erode(dilate(m, r), r)[pad:-pad, pad:-pad]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes (background regions not 4-connected to the border); (H, W) bool."""
    h, w = mask.shape
    m = np.zeros((h + 2, w + 2), np.uint8)
    m[1:-1, 1:-1] = mask
    cv2.floodFill(m, None, (0, 0), 2)
    return m[1:-1, 1:-1] != 2


def components(mask: np.ndarray):
    """8-connected components: ``(n, labels, stats, centroids)`` of ``cv2.connectedComponentsWithStats``."""
    n, lab, stats, cent = cv2.connectedComponentsWithStats(as_u8(mask), connectivity=8)
    return n, lab, stats, cent


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2 |a & b| / (|a| + |b|)`` of two bool masks (1.0 if both empty)."""
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2.0 * np.logical_and(a, b).sum() / s)


def hull(mask: np.ndarray) -> np.ndarray:
    """Filled convex hull of the foreground of ``mask`` (H, W) bool."""
    pts = cv2.findNonZero(as_u8(mask))
    out = np.zeros(mask.shape, np.uint8)
    if pts is not None:
        cv2.fillConvexPoly(out, cv2.convexHull(pts), 1)
    return out.astype(bool) | mask


def reconstruct_by_dilation(seed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Greyscale reconstruction by dilation of ``seed`` under ``mask`` (cross connectivity).

    Iterated geodesic dilations (OpenCV) until stable; equal to
    ``skimage.morphology.reconstruction(seed, mask, footprint=cross)``.

    Parameters
    ----------
    seed, mask : ndarray of shape (h, w), dtype uint8, ``seed <= mask``

    Returns
    -------
    ndarray of shape (h, w), dtype uint8
    """
    cur = cv2.min(seed, mask)
    while True:
        for _ in range(4):
            cur = cv2.min(cv2.dilate(cur, CROSS), mask)
        nxt = cv2.min(cv2.dilate(cur, CROSS), mask)
        if np.array_equal(nxt, cur):
            return cur
        cur = nxt
