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

import cv2
import numpy as np

from hybridwbc.features.handcrafted.cell import CellView

__all__ = ["GLCM_PROPS", "GLCM_ANGLES", "texture_names", "glcm_offset", "glcm_masked", "glcm_stack", "glcm_props",
           "lbp_histogram", "texture_features"]

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


def glcm_props(counts: np.ndarray) -> np.ndarray:
    """The six :data:`GLCM_PROPS` of co-occurrence counts (graycoprops formulas).

    Parameters
    ----------
    counts : ndarray of shape (L, L) or (n, L, L)

    Returns
    -------
    ndarray of shape (6,) or (n, 6), float64; zeros for a matrix that is all 0.
    """
    c = np.asarray(counts)
    stack = c.reshape((-1,) + c.shape[-2:]).astype(np.float64)
    total = stack.sum((1, 2))
    p = stack / np.where(total > 0, total, 1.0)[:, None, None]
    lv = p.shape[-1]
    i = np.arange(lv, dtype=np.float64)[:, None]
    j = np.arange(lv, dtype=np.float64)[None, :]
    d = i - j
    contrast = (p * (d * d)).sum((1, 2))
    dissim = (p * np.abs(d)).sum((1, 2))
    homog = (p * (1.0 / (1.0 + d * d))).sum((1, 2))
    asm = (p * p).sum((1, 2))
    pi, pj = p.sum(2), p.sum(1)  # marginals over rows i and columns j
    mu_i = pi @ i[:, 0]
    mu_j = pj @ j[0]
    di = i[:, 0][None, :] - mu_i[:, None]
    dj = j[0][None, :] - mu_j[:, None]
    s_i = np.sqrt((pi * di * di).sum(1))
    s_j = np.sqrt((pj * dj * dj).sum(1))
    cov = np.einsum("nij,ni,nj->n", p, di, dj)
    flat = (s_i < 1e-15) | (s_j < 1e-15)
    corr = np.where(flat, 1.0, cov / np.where(flat, 1.0, s_i * s_j))
    out = np.stack([contrast, dissim, homog, asm, np.sqrt(asm), corr], 1)
    out[total == 0] = 0.0
    return out.reshape(c.shape[:-2] + (len(GLCM_PROPS),))


def glcm_stack(q: np.ndarray, mask: np.ndarray, levels: int, distances) -> np.ndarray:
    """:func:`glcm_masked` for every distance and :data:`GLCM_ANGLES`, in one pass.

    With ``levels <= 16`` each pair is one byte ``16 a + b`` and OpenCV's masked histogram counts
    them (exact: a float32 count is exact below 2**24 pixels); otherwise, or for a larger image,
    one ``bincount`` of all offsets' codes, pixels outside ``mask`` given an extra level.

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
    h, w = q.shape
    offsets = [glcm_offset(d, a) for d in distances for a in GLCM_ANGLES]
    windows = []
    for dr, dc in offsets:
        r0, r1, c0, c1 = max(0, -dr), min(h, h - dr), max(0, -dc), min(w, w - dc)
        windows.append(((slice(r0, r1), slice(c0, c1)), (slice(r0 + dr, r1 + dr), slice(c0 + dc, c1 + dc)))
                       if r1 > r0 and c1 > c0 else None)
    if levels <= 16 and h * w < 2 ** 24:
        q8 = q.astype(np.uint8)
        hi = q8 << 4
        m8 = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8)
        m = np.zeros((len(offsets), 256), np.int64)
        for k, win in enumerate(windows):
            if win is not None:
                a, b = win
                hist = cv2.calcHist([hi[a] | q8[b]], [0], m8[a] & m8[b], [256], [0, 256])
                m[k] = np.rint(hist.ravel())
        m = m.reshape(len(offsets), 16, 16)[:, :levels, :levels]
    else:
        lv1 = levels + 1
        qq = np.where(mask, q, levels).astype(np.int64)  # outside the mask: an extra level, dropped below
        parts = [(qq[a] * lv1 + qq[b] + k * lv1 * lv1).ravel() for k, (a, b) in
                 ((k, win) for k, win in enumerate(windows) if win is not None)]
        flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        m = np.bincount(flat, minlength=len(offsets) * lv1 * lv1).reshape(len(offsets), lv1, lv1)[:, :levels, :levels]
    m = m + m.transpose(0, 2, 1)
    return m.reshape(len(distances), len(GLCM_ANGLES), levels, levels)


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
    q = (gray.astype(np.uint16) * glcm_levels) >> 8  # exact: 255 * 256 < 2**16
    out = [glcm_props(glcm_stack(q, cell, glcm_levels, glcm_distances)).mean(1).ravel()]
    for p, r in zip(lbp_points, lbp_radii):
        out.append(lbp_histogram(gray, cell, p, r))
    return np.concatenate(out) if out else np.zeros(0)
