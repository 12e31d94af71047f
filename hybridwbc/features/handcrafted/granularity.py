"""The granular spectrum of CellProfiler's MeasureGranularity, over the cell and its cytoplasm.

``granularity`` (:func:`granularity_features`), the granular spectrum of
CellProfiler's MeasureGranularity (Ravkin & Vincent), per channel in
``gran_channels`` (``gray``, ``r``, ``g``, ``b``: the *inverted* channel
``255 - v``, so dark granules are bright), measured over ``W`` (``cell_*``) and
over ``C`` (``cytoplasm_*``):
    1. ``I = (255 - v) * [W]`` (pixels outside the cell are 0, so the cell's
       neighbours never leak in), subsampled by keeping every
       ``gran_subsample``-th row and column (CellProfiler's bilinear
       subsampling at integer factors);
    2. background removal by a tophat: ``J = max(I - dilate(erode(I, D), D),
       0)``, with ``D`` a disk of radius ``gran_element`` (scikit-image
       ``disk``); outside the image is ignored;
    3. ``E_0 = J``; for ``k = 1..gran_length``: ``E_k = erode(E_{k-1}, X)`` with
       ``X`` the 3x3 cross, and ``R_k`` the reconstruction by dilation of
       ``E_k`` under ``J`` (cross connectivity): an opening by reconstruction
       of size ``k``;
    4. ``mean_k`` = mean of ``R_k`` (``R_0 = J``) over the subsampled mask,
       ``G_k = 100 (mean_{k-1} - mean_k) / max(mean_0, eps)``: the percentage
       of the signal removed at size ``k``. Structures of radius ``r``
       (subsampled pixels) vanish at ``k = r + 1``, so a granule of radius
       ``r`` full-resolution pixels peaks near ``k = r / gran_subsample + 1``.
       An empty mask gives 0.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from hybridwbc.features.handcrafted.cell import CellView
from hybridwbc.segment.morphology import CROSS, reconstruct_by_dilation

__all__ = ["GRAN_CHANNELS", "granularity_names", "granular_spectrum", "inverted_channel", "granularity_features"]

GRAN_CHANNELS = ("gray", "r", "g", "b")


def granularity_names(gran_length: int = 8, gran_channels=("gray", "g")) -> list[str]:
    """Names of :func:`granularity_features`."""
    return [f"{region}_{ch}_{k}" for ch in gran_channels for region in ("cell", "cytoplasm")
            for k in range(1, gran_length + 1)]


def _disk_fp(radius: int) -> np.ndarray:
    from skimage.morphology import disk

    return disk(radius).astype(np.uint8)


def granular_spectrum(channel: np.ndarray, masks: Sequence[np.ndarray], gran_length: int = 8,
                      gran_element: int = 10, gran_subsample: int = 1) -> np.ndarray:
    """Granular spectra of one inverted channel over several masks.

    Parameters
    ----------
    channel : ndarray of shape (h, w), dtype uint8
        Already inverted (granules bright) and zero outside the cell.
    masks : sequence of ndarray of shape (h, w), bool
        Regions to measure; the first is the cell (the image mask).
    gran_length, gran_element, gran_subsample : int

    Returns
    -------
    ndarray of shape (len(masks), gran_length), float64
    """
    k = gran_subsample
    img = np.ascontiguousarray(channel[::k, ::k])
    sub = [np.ascontiguousarray(m[::k, ::k]) for m in masks]
    out = np.zeros((len(masks), gran_length))
    if not sub[0].any():
        return out
    fp = _disk_fp(gran_element)
    back = cv2.dilate(cv2.erode(img, fp), fp)
    j = cv2.subtract(img, back)
    counts = [float(m.sum()) for m in sub]
    idx = [np.flatnonzero(m.ravel()) for m in sub]

    def means(a):
        flat = a.ravel()
        return np.array([flat[ix].sum(dtype=np.int64) / c if c else 0.0 for ix, c in zip(idx, counts)])

    start = means(j)
    denom = np.maximum(start / 255.0, np.finfo(float).eps)
    eros = []
    ero = j
    for _ in range(gran_length):
        ero = cv2.erode(ero, CROSS)
        eros.append(ero)
    # largest size first: R_{k+1} <= R_k and R_k = reconstruction of max(E_k, R_{k+1}),
    # so each reconstruction starts from the previous result (fewer propagation steps)
    recs = [None] * gran_length
    nxt = None
    for i in range(gran_length - 1, -1, -1):
        seed = eros[i] if nxt is None else cv2.max(eros[i], nxt)
        nxt = reconstruct_by_dilation(seed, j) if seed.any() else seed
        recs[i] = nxt
    prev = start
    for i in range(gran_length):
        cur = means(recs[i])
        out[:, i] = (prev - cur) / 255.0 * 100.0 / denom
        prev = cur
    for r, c in enumerate(counts):
        if c == 0 or start[r] == 0:
            out[r] = 0.0
    return out


def inverted_channel(rgb: np.ndarray, name: str) -> np.ndarray:
    """``255 - v`` for channel ``name`` in :data:`GRAN_CHANNELS`; (h, w) uint8."""
    if name == "gray":
        v = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    else:
        v = rgb[..., "rgb".index(name)]
    return 255 - v


def granularity_features(view: CellView, gran_length: int = 8, gran_element: int = 10,
                         gran_subsample: int = 1, gran_channels=("gray", "g")) -> np.ndarray:
    """Granular spectra over cell and cytoplasm (module docstring).

    Returns
    -------
    ndarray of shape (len(gran_channels) * 2 * gran_length,), float64
    """
    cell = view.cell
    out = []
    for ch in gran_channels:
        inv = inverted_channel(view.rgb, ch)
        inv = np.where(cell, inv, 0).astype(np.uint8)
        out.append(granular_spectrum(inv, [cell, view.cytoplasm], gran_length, gran_element,
                                     gran_subsample).ravel())
    return np.concatenate(out) if out else np.zeros(0)
