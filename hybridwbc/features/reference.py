"""Straightforward reference implementation of the handcrafted features.

Same definitions as :mod:`hybridwbc.features.handcrafted`, written the plain
way on the full image: scikit-image ``regionprops`` for geometry,
``graycomatrix``/``graycoprops`` for the GLCM, ``scipy.stats`` for moments,
and a direct transcription of CellProfiler's MeasureGranularity
(``skimage.morphology`` erosion, dilation and ``reconstruction`` on float
images in [0, 1]). It exists to check the fast implementation (values must
agree to 1e-6) and to benchmark it (``bench/features.py``); it is not used in
runs.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy import stats

from hybridwbc.features.handcrafted import (
    GLCM_ANGLES,
    HandcraftedFeaturizer,
    colour_planes,
    inverted_channel,
    tighten,
)
from hybridwbc.segment import CellMasks

__all__ = ["reference_features"]


def _shape(mask: np.ndarray) -> list[float]:
    from skimage.measure import regionprops

    if not mask.any():
        return [0.0] * 7
    rp = regionprops(mask.astype(np.uint8))[0]
    area = float(rp.area)
    p = float(rp.perimeter)
    circ = 4 * np.pi * area / p ** 2 if p > 0 else 0.0
    return [area, p, circ, float(rp.eccentricity), float(rp.solidity),
            float(rp.axis_major_length), float(rp.axis_minor_length)]


def _lobes(nucleus: np.ndarray, prominence: float) -> float:
    from skimage.measure import label
    from skimage.morphology import reconstruction

    if not nucleus.any():
        return 0.0
    d = ndi.distance_transform_edt(np.pad(nucleus, 1))
    q = np.floor(d * (250.0 / d.max()))
    h = int(round(250 * prominence))
    rec = reconstruction(np.maximum(q - h, 0), q, footprint=np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]]))
    return float(label((q - rec) >= h, connectivity=2).max())


def _moments(x: np.ndarray) -> np.ndarray:
    if x.shape[0] == 0:
        return np.zeros((x.shape[1], 4))
    out = []
    for col in x.T:
        var = np.var(col)
        if var > 1e-12:
            out.append([np.mean(col), np.std(col), stats.skew(col), stats.kurtosis(col)])
        else:
            out.append([np.mean(col), np.sqrt(var), 0.0, 0.0])
    return np.array(out, np.float64)


def _texture(gray, cell, levels, distances, lbp_points, lbp_radii, window):
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

    q = (gray.astype(np.int64) * levels) // 256
    img = np.where(cell, q + 1, 0).astype(np.uint16)
    glcm = graycomatrix(img, list(distances), list(GLCM_ANGLES), levels=levels + 1, symmetric=True)
    glcm = glcm[1:, 1:]
    out = []
    for di in range(len(distances)):
        vals = []
        for prop in ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation"):
            per_angle = []
            for ai in range(len(GLCM_ANGLES)):
                m = glcm[:, :, di: di + 1, ai: ai + 1]
                per_angle.append(float(graycoprops(m, prop)[0, 0]) if m.sum() else 0.0)
            vals.append(np.mean(per_angle))
        out.append(vals)
    out = [np.array(v) for v in out]
    for p, r in zip(lbp_points, lbp_radii):
        n = p + 2
        # evaluated on the cell's crop window: scikit-image's bilinear sampling depends on the
        # absolute pixel position at the 1e-16 level, which flips ties in flat regions
        codes = local_binary_pattern(gray[window], p, r, method="uniform")
        if cell.any():
            hist, _ = np.histogram(codes[cell[window]], bins=np.arange(n + 1))
            out.append(hist / hist.sum())
        else:
            out.append(np.zeros(n))
    return np.concatenate(out)


def _cp_granularity(pixels: np.ndarray, mask: np.ndarray, objects, ng: int, element: int, k: int):
    """CellProfiler MeasureGranularity, transcribed; ``pixels`` float in [0, 1]."""
    from skimage.morphology import dilation, disk, erosion, reconstruction

    # subsample (CellProfiler's map_coordinates at integer positions = every k-th pixel)
    pixels = pixels[::k, ::k].copy()
    mask = mask[::k, ::k]
    objects = [o[::k, ::k] for o in objects]
    # background removal: grey opening of the masked image
    footprint = disk(element)
    back = np.zeros_like(pixels)
    back[mask] = pixels[mask]
    back = erosion(back, footprint=footprint, mode="ignore")
    back_m = np.zeros_like(back)
    back_m[mask] = back[mask]
    back = dilation(back_m, footprint=footprint, mode="ignore")
    pixels = pixels - back
    pixels[pixels < 0] = 0
    cross = disk(1)
    out = np.zeros((len(objects), ng))
    start = [pixels[o].mean() if o.any() else 0.0 for o in objects]
    current = list(start)
    ero = pixels.copy()
    ero[~mask] = 0
    for i in range(ng):
        ero_mask = np.zeros_like(ero)
        ero_mask[mask] = ero[mask]
        ero = erosion(ero_mask, footprint=cross, mode="ignore")
        rec = reconstruction(ero, pixels, footprint=cross)
        for j, o in enumerate(objects):
            if not o.any() or start[j] == 0:
                continue
            new = rec[o].mean()
            out[j, i] = (current[j] - new) * 100 / max(start[j], np.finfo(float).eps)
            current[j] = new
    return out


def reference_features(featurizer: HandcraftedFeaturizer, image: np.ndarray, cell: CellMasks) -> np.ndarray:
    """Features of one segmented cell, computed the straightforward way.

    Parameters
    ----------
    featurizer : HandcraftedFeaturizer
        Supplies the families and their parameters.
    image : ndarray of shape (H, W, 3), dtype uint8
        The full image.
    cell : CellMasks
        Full-size masks of the cell.

    Returns
    -------
    ndarray of shape (n_features,), float64
        Equal (to 1e-6) to ``featurizer.features_of(featurizer.view(image, cell))``.
    """
    import cv2

    f = featurizer
    nuc, cyt = cell.nucleus, cell.cytoplasm
    whole = nuc | cyt
    out = []
    for fam in f.families:
        if fam == "geometry":
            out.append(np.array(_shape(whole) + _shape(nuc) + [_lobes(nuc, float(f.lobe_prominence))]))
        elif fam == "colour":
            planes = colour_planes(image)
            out.append(np.concatenate([_moments(planes[m]).ravel() for m in (nuc, cyt, whole)]))
        elif fam == "texture":
            gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            v = tighten(f.view(image, cell), f.tight_margin())
            window = (slice(v.origin[0], v.origin[0] + v.rgb.shape[0]),
                      slice(v.origin[1], v.origin[1] + v.rgb.shape[1]))
            out.append(_texture(gray, whole, int(f.glcm_levels), tuple(f.glcm_distances),
                                tuple(f.lbp_points), tuple(f.lbp_radii), window))
        elif fam == "size_ratio":
            n, c = float(nuc.sum()), float(cyt.sum())
            out.append(np.array([n / max(c, 1.0), n / max(n + c, 1.0)]))
        else:
            for ch in f.gran_channels:
                inv = inverted_channel(image, ch).astype(np.float64) / 255.0
                inv[~whole] = 0.0
                out.append(_cp_granularity(inv, whole, [whole, cyt], int(f.gran_length),
                                           int(f.gran_element), int(f.gran_subsample)).ravel())
    return np.concatenate(out).astype(np.float64)
