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
       An empty mask gives 0 (CellProfiler: NaN for a fully masked image, 0 or
       NaN for its objects).

Relation to CellProfiler. For the image as a whole (``masks[0]`` = the image
mask) the spectrum is CellProfiler's image measurement ``Granularity_k``
exactly; its unit tests pass unchanged (``tests/features/
test_granularity_cellprofiler.py``). For an *object* CellProfiler normalises by
the object's mean of the raw image ``m_raw`` (before background removal) and
its first step also counts the background the tophat removed, whereas we use
the mean after the tophat ``m_0`` for every region, so that the spectrum does
not depend on the background level. With ``m_k`` the region's mean of ``R_k``:
``G^CP_1 = 100 (m_raw - m_1) / m_raw`` and ``G^CP_k = 100 (m_{k-1} - m_k) /
m_raw`` (``k >= 2``), i.e. ``G^CP = (m_0 / m_raw) G + [100 (m_raw - m_0) /
m_raw, 0, ..., 0]`` (:func:`cellprofiler_object_spectrum`, exact; also what
``cp_measure``'s ``get_granularity`` returns). The relation is exact at
``gran_subsample=1`` (the default); with subsampling CellProfiler measures
objects on the full-resolution labels after a bilinear upsampling of ``R_k``,
we on the subsampled masks (its own test allows 0.5 percentage points there).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from hybridwbc.features.handcrafted.cell import CellView
from hybridwbc.segment.morphology import CROSS, reconstruct_by_dilation

__all__ = ["GRAN_CHANNELS", "granularity_names", "granular_tophat", "granular_spectrum", "cellprofiler_object_spectrum",
           "inverted_channel", "granularity_features"]

GRAN_CHANNELS = ("gray", "r", "g", "b")


def granularity_names(gran_length: int = 8, gran_channels=("gray", "g")) -> list[str]:
    """Names of :func:`granularity_features`."""
    return [f"{region}_{ch}_{k}" for ch in gran_channels for region in ("cell", "cytoplasm")
            for k in range(1, gran_length + 1)]


def _disk_fp(radius: int) -> np.ndarray:
    from skimage.morphology import disk

    return disk(radius).astype(np.uint8)


def granular_tophat(img: np.ndarray, gran_element: int = 10) -> np.ndarray:
    """Background removal of step 2: ``max(I - dilate(erode(I, D), D), 0)``, ``D = disk(gran_element)``.

    Parameters
    ----------
    img : ndarray of shape (h, w), dtype uint8
        Already subsampled; zero outside the image mask.
    gran_element : int

    Returns
    -------
    ndarray of shape (h, w), dtype uint8
    """
    fp = _disk_fp(gran_element)
    return cv2.subtract(img, cv2.dilate(cv2.erode(img, fp), fp))


def cellprofiler_object_spectrum(spectrum: np.ndarray, raw_mean: float, tophat_mean: float) -> np.ndarray:
    """CellProfiler's per-object spectrum from ours (module docstring, "Relation to CellProfiler").

    Parameters
    ----------
    spectrum : ndarray of shape (n,)
        Our spectrum of one region (:func:`granular_spectrum`).
    raw_mean : float
        ``m_raw``, the region's mean of the (subsampled) image before background removal.
    tophat_mean : float
        ``m_0``, the region's mean of :func:`granular_tophat` (same scale as ``raw_mean``).

    Returns
    -------
    ndarray of shape (n,), float64
        ``(m_0 / m_raw) G + [100 (m_raw - m_0) / m_raw, 0, ...]``; zeros when ``m_raw`` is 0.
    """
    out = np.zeros(len(spectrum))
    if raw_mean <= 0:
        return out
    out[:] = np.asarray(spectrum, np.float64) * (tophat_mean / raw_mean)
    out[0] += 100.0 * (raw_mean - tophat_mean) / raw_mean
    return out


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
    j = granular_tophat(img, gran_element)
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
