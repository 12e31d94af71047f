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

import numpy as np

from hybridwbc.features.handcrafted.cell import CellView

__all__ = ["GLCM_PROPS", "GLCM_ANGLES", "texture_names", "glcm_offset", "glcm_masked", "glcm_props", "lbp_histogram",
           "texture_features"]

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
    counts : ndarray of shape (L, L)

    Returns
    -------
    ndarray of shape (6,), float64; zeros when ``counts`` is all 0.
    """
    total = counts.sum()
    if total == 0:
        return np.zeros(len(GLCM_PROPS))
    p = counts.astype(np.float64) / total
    lv = p.shape[0]
    i = np.arange(lv, dtype=np.float64)[:, None]
    j = np.arange(lv, dtype=np.float64)[None, :]
    d = i - j
    contrast = float((p * d * d).sum())
    dissim = float((p * np.abs(d)).sum())
    homog = float((p / (1.0 + d * d)).sum())
    asm = float((p * p).sum())
    mu_i = (i * p).sum()
    mu_j = (j * p).sum()
    di, dj = i - mu_i, j - mu_j
    s_i = np.sqrt((p * di * di).sum())
    s_j = np.sqrt((p * dj * dj).sum())
    corr = 1.0 if (s_i < 1e-15 or s_j < 1e-15) else float((p * di * dj).sum() / (s_i * s_j))
    return np.array([contrast, dissim, homog, asm, np.sqrt(asm), corr])


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
    q = (gray.astype(np.int64) * glcm_levels) >> 8
    out = []
    for d in glcm_distances:
        props = np.mean([glcm_props(glcm_masked(q, cell, glcm_levels, d, a)) for a in GLCM_ANGLES], 0)
        out.append(props)
    for p, r in zip(lbp_points, lbp_radii):
        out.append(lbp_histogram(gray, cell, p, r))
    return np.concatenate(out) if out else np.zeros(0)
