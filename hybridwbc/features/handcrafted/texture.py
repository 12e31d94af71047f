"""Texture of the whole cell ``W``: grey-level co-occurrence (Haralick) and uniform LBP.

``texture`` (:func:`texture_features`), over ``W``:
    * GLCM: ``g`` is quantised to ``q = floor(g * levels / 256)``; for each
      distance ``d`` and angle ``a`` in (0, 45, 90, 135) degrees the offset is
      ``(round(d sin a), round(d cos a))`` (as scikit-image), only pairs with
      both pixels in ``W`` count, the matrix is made symmetric and normalised
      to ``P``. Properties (scikit-image ``graycoprops``): ``contrast = sum P
      (i-j)^2``, ``dissimilarity = sum P |i-j|``, ``homogeneity = sum P / (1 +
      (i-j)^2)``, ``ASM = sum P^2``, ``energy = sqrt(ASM)``, ``correlation =
      sum P (i - mu_i)(j - mu_j) / (s_i s_j)`` (1 when ``s_i`` or ``s_j`` <
      1e-15). Each is averaged over the four angles, per distance. A cell
      with no pair gives 0 for all.
    * LBP: scikit-image ``local_binary_pattern(g, P, R, "uniform")``; the
      normalised histogram of its ``P + 2`` codes over ``W``, for each
      ``(P, R)`` in ``zip(lbp_points, lbp_radii)``.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from hybridwbc.features.handcrafted.cell import CellView

__all__ = ["GLCM_PROPS", "GLCM_ANGLES", "texture_names", "glcm_offset", "glcm_masked", "glcm_stack", "glcm_props",
           "glcm_features", "lbp_histogram", "texture_features"]

GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation")
GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)


def texture_names(glcm_distances=(1, 2, 4), lbp_points=(8, 16), lbp_radii=(1, 2)) -> list[str]:
    """Names of :func:`texture_features`."""
    names = [f"glcm_{p}_d{d}" for d in glcm_distances for p in GLCM_PROPS]
    for p, r in zip(lbp_points, lbp_radii):
        names += [f"lbp_P{p}_R{r:g}_{k}" for k in range(p + 2)]
    return names


def glcm_offset(distance: int, angle: float) -> tuple[int, int]:
    """``(round(d sin a), round(d cos a))``, scikit-image's pixel-pair offset."""
    return int(round(np.sin(angle) * distance)), int(round(np.cos(angle) * distance))


def glcm_masked(q: np.ndarray, mask: np.ndarray, levels: int, distance: int, angle: float) -> np.ndarray:
    """Symmetric co-occurrence counts of pairs with both pixels in ``mask``.

    Parameters
    ----------
    q : ndarray of shape (h, w), integer in [0, levels)
    mask : ndarray of shape (h, w), bool
    levels, distance : int
    angle : float (radians)

    Returns
    -------
    ndarray of shape (levels, levels), int64
    """
    dr, dc = glcm_offset(distance, angle)
    h, w = q.shape
    r0, r1 = max(0, -dr), min(h, h - dr)
    c0, c1 = max(0, -dc), min(w, w - dc)
    if r1 <= r0 or c1 <= c0:
        return np.zeros((levels, levels), np.int64)
    a = q[r0:r1, c0:c1]
    b = q[r0 + dr:r1 + dr, c0 + dc:c1 + dc]
    ok = mask[r0:r1, c0:c1] & mask[r0 + dr:r1 + dr, c0 + dc:c1 + dc]
    codes = a[ok].astype(np.int64) * levels + b[ok]
    m = np.bincount(codes, minlength=levels * levels).reshape(levels, levels)
    return m + m.T


@lru_cache(maxsize=32)
def _weights(levels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(W, i)``: ``W`` of shape (5, levels**2) holds ``(i-j)^2``, ``|i-j|``, ``1/(1+(i-j)^2)``, ``i``
    and ``j`` of each flattened cell ``(i, j)``; ``i`` = ``arange(levels)`` as float64. Read-only."""
    i = np.arange(levels, dtype=np.float64)
    d = (i[:, None] - i[None, :]).ravel()
    w = np.stack([d * d, np.abs(d), 1.0 / (1.0 + d * d), np.repeat(i, levels), np.tile(i, levels)])
    w.flags.writeable = False
    i.flags.writeable = False
    return w, i


def glcm_props(counts: np.ndarray) -> np.ndarray:
    """The six :data:`GLCM_PROPS` of co-occurrence counts (graycoprops formulas).

    All matrices at once: contrast, dissimilarity, homogeneity and the means of ``i`` and ``j`` are
    one product with the precomputed weights of :func:`_weights` (a matrix-vector product per
    matrix, so that a matrix's values do not depend on how many are stacked with it), the
    centred moments of the correlation one ``einsum`` each.

    Parameters
    ----------
    counts : ndarray of shape (L, L) or (n, L, L)

    Returns
    -------
    ndarray of shape (6,) or (n, 6), float64; zeros for a matrix that is all 0.
    """
    c = np.asarray(counts)
    lv = c.shape[-1]
    flat = c.reshape(-1, lv * lv).astype(np.float64)
    total = flat.sum(1)
    p = flat / np.where(total > 0, total, 1.0)[:, None]
    w, i = _weights(lv)
    sums = (w @ p[:, :, None])[:, :, 0]  # (n, 5): contrast, dissimilarity, homogeneity, mu_i, mu_j
    out = np.empty((p.shape[0], len(GLCM_PROPS)))
    out[:, :3] = sums[:, :3]
    out[:, 3] = np.einsum("nk,nk->n", p, p)  # ASM
    np.sqrt(out[:, 3], out=out[:, 4])  # energy
    p3 = p.reshape(-1, lv, lv)
    di = i - sums[:, 3:4]
    dj = i - sums[:, 4:5]
    s_i = np.sqrt(np.einsum("nij,ni,ni->n", p3, di, di))
    s_j = np.sqrt(np.einsum("nij,nj,nj->n", p3, dj, dj))
    cov = np.einsum("ni,nij,nj->n", di, p3, dj)
    flat_ = (s_i < 1e-15) | (s_j < 1e-15)
    out[:, 5] = np.where(flat_, 1.0, cov / np.where(flat_, 1.0, s_i * s_j))
    out[total == 0] = 0.0
    return out.reshape(c.shape[:-2] + (len(GLCM_PROPS),))


@lru_cache(maxsize=32)
def _offsets(distances: tuple[int, ...]) -> tuple[tuple, np.ndarray]:
    """The distinct pixel-pair offsets ``(dr, dc)`` of ``distances`` x :data:`GLCM_ANGLES`.

    Returns ``(distinct, index)``: ``index[k]`` is the position in ``distinct`` of the ``k``-th
    (distance, angle). Rounding makes offsets coincide (45 and 135 degrees give ``(1, +-1)`` at
    distances 1 and 2), so each distinct one is counted once.
    """
    offsets = [glcm_offset(d, ang) for d in distances for ang in GLCM_ANGLES]
    distinct = tuple(dict.fromkeys(offsets))
    index = np.array([distinct.index(o) for o in offsets], np.intp)
    index.flags.writeable = False
    return distinct, index


def _counts_cv(first: np.ndarray, seconds: list, levels: int) -> np.ndarray:
    """Co-occurrence counts of ``first`` with each of ``seconds`` (uint8 arrays of one shape, outside
    the mask = ``levels``) by OpenCV: one three-dimensional histogram per two offsets, whose two
    marginals (exact float32 sums of integers below 2**24) are their two matrices. Shape
    (len(seconds), levels, levels), int64."""
    n = len(seconds)
    if n % 2:
        seconds = seconds + [first]  # a partner whose matrix is dropped
    l1 = levels + 1
    hists = np.stack([cv2.calcHist([first, b1, b2], [0, 1, 2], None, [l1] * 3, [0, l1] * 3)
                      for b1, b2 in zip(seconds[::2], seconds[1::2])])
    k = len(hists)
    ones = np.ones(l1, np.float32)
    m = np.empty((2 * k, l1, l1), np.float32)
    m[0::2] = (hists.reshape(k, l1 * l1, l1) @ ones).reshape(k, l1, l1)  # (first, b1): sum over b2
    m[1::2] = (ones[None] @ hists.reshape(k * l1, l1, l1)).reshape(k, l1, l1)  # (first, b2): sum over b1
    return m[:n, :levels, :levels].astype(np.int64)


def glcm_stack(q: np.ndarray, mask: np.ndarray, levels: int, distances) -> np.ndarray:
    """:func:`glcm_masked` for every distance and :data:`GLCM_ANGLES`, in one pass.

    Only the bounding box of ``mask`` is read (a pair needs both pixels in it), pixels outside
    ``mask`` become an extra level ``levels``, dropped from the counts, and the box is padded with
    it so that every offset's second pixels are one shifted view. Each distinct offset is counted
    once (:func:`_offsets`): with ``levels <= 32`` by OpenCV histograms, two offsets per pass
    (:func:`_counts_cv`), otherwise by one ``bincount`` of all offsets' codes ``k L1^2 + a L1 + b``.

    Parameters
    ----------
    q : ndarray of shape (h, w), integer in [0, levels)
    mask : ndarray of shape (h, w), bool
    levels : int
    distances : sequence of int

    Returns
    -------
    ndarray of shape (len(distances), 4, levels, levels), int64
    """
    distances = tuple(int(d) for d in distances)
    distinct, index = _offsets(distances)
    m8 = np.ascontiguousarray(mask.view(np.uint8) if mask.dtype == bool else (mask != 0).astype(np.uint8))
    x, y, w, h = cv2.boundingRect(m8)  # all 0 for an empty mask
    live = [k for k, (dr, dc) in enumerate(distinct) if abs(dr) < h and abs(dc) < w]  # others: no pair
    m = np.zeros((len(distinct), levels, levels), np.int64)
    if live:
        pad = max(max(abs(distinct[k][0]), abs(distinct[k][1])) for k in live)
        box = (slice(y, y + h), slice(x, x + w))
        if levels <= 32 and h * w < 2 ** 24:  # q < levels: the maximum puts ``levels`` outside the mask
            qq = np.maximum(q[box].astype(np.uint8), (m8[box] ^ 1) * np.uint8(levels))
            big = cv2.copyMakeBorder(qq, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=levels)
        else:
            big = np.pad(np.where(m8[box], q[box], levels).astype(np.int64), pad, constant_values=levels)
        first = big[pad:pad + h, pad:pad + w]
        seconds = [big[pad + dr:pad + dr + h, pad + dc:pad + dc + w] for dr, dc in (distinct[k] for k in live)]
        if big.dtype == np.uint8:
            m[live] = _counts_cv(first, seconds, levels)
        else:
            l1 = levels + 1
            codes = np.concatenate([(first * l1 + b + k * l1 * l1).ravel() for k, b in enumerate(seconds)])
            m[live] = np.bincount(codes, minlength=len(live) * l1 * l1).reshape(-1, l1, l1)[:, :levels, :levels]
    m = m[index]
    m = m + m.transpose(0, 2, 1)
    return m.reshape(len(distances), len(GLCM_ANGLES), levels, levels)


def glcm_features(gray: np.ndarray, mask: np.ndarray, levels: int = 16, distances=(1, 2, 4)) -> np.ndarray:
    """The GLCM part of :func:`texture_features`: ``gray`` quantised to ``floor(g * levels / 256)``, the
    six :data:`GLCM_PROPS` of each offset, averaged over the angles per distance.

    Parameters
    ----------
    gray : ndarray of shape (h, w), uint8
    mask : ndarray of shape (h, w), bool

    Returns
    -------
    ndarray of shape (6 * len(distances),), float64: the props of distance 1, then 2, ...
    """
    q = (gray.astype(np.uint16) * levels) >> 8  # exact: 255 * 256 < 2**16
    return glcm_props(glcm_stack(q, mask, levels, distances)).mean(1).ravel()


def lbp_histogram(gray: np.ndarray, mask: np.ndarray, points: int, radius: float) -> np.ndarray:
    """Normalised histogram of uniform LBP codes over ``mask``; shape (points + 2,)."""
    from skimage.feature import local_binary_pattern

    n = points + 2
    if not mask.any():
        return np.zeros(n)
    codes = local_binary_pattern(gray, points, radius, method="uniform")
    hist = np.bincount(codes[mask].astype(np.int64), minlength=n)[:n].astype(np.float64)
    return hist / hist.sum()


def texture_features(view: CellView, glcm_levels: int = 16, glcm_distances=(1, 2, 4),
                     lbp_points=(8, 16), lbp_radii=(1, 2)) -> np.ndarray:
    """GLCM (Haralick) and uniform-LBP texture of the whole cell (module docstring).

    Returns
    -------
    ndarray of shape (6 * len(glcm_distances) + sum(P + 2),), float64
    """
    gray = view.gray
    cell = view.cell
    out = [glcm_features(gray, cell, glcm_levels, glcm_distances)]
    for p, r in zip(lbp_points, lbp_radii):
        out.append(lbp_histogram(gray, cell, p, r))
    return np.concatenate(out) if out else np.zeros(0)
