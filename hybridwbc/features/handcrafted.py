"""Handcrafted white-cell features: geometry, colour, texture, size ratio, granularity.

Every family is a pure function of a :class:`CellView` (the cell's bounding
box, with a margin, cut from the image and its masks) and is wrapped as an
:class:`~hybridwbc.features.base.ImageFeaturizer` (a scikit-learn transformer
with ``get_feature_names_out``). :class:`HandcraftedFeaturizer` segments each
image **once** (:func:`hybridwbc.segment.segment`) and concatenates the
families it is asked for; feature names are ``<family>__<name>``.

Conventions
-----------
Masks: ``N`` nucleus, ``C`` cytoplasm (cell minus nucleus), ``W = N | C`` whole
cell. ``|M|`` is a pixel count. Grey level ``g`` is OpenCV's
``round(0.299 R + 0.587 G + 0.114 B)`` (uint8). Every value is finite: a
quantity undefined on an empty or constant region is 0 (stated per feature).

Families
--------
``geometry`` (:func:`geometry_features`), for ``W`` (``cell_*``) and ``N`` (``nucleus_*``):
    * ``area = |M|``;
    * ``perimeter``: scikit-image's 4-neighbourhood perimeter (border pixels
      weighted 1, sqrt(2) or (1 + sqrt(2))/2 by their local configuration);
    * ``circularity = 4 pi area / perimeter^2`` (0 when perimeter is 0);
    * ``eccentricity = sqrt(1 - l2 / l1)`` with ``l1 >= l2`` the eigenvalues of
      the inertia tensor ``[[mu02, -mu11], [-mu11, mu20]] / mu00`` (central
      moments; 0 when ``l1 = 0``);
    * ``solidity = area / |convex hull|`` (scikit-image ``convex_hull_image``);
    * ``major_axis = 4 sqrt(l1)``, ``minor_axis = 4 sqrt(l2)``;
    * ``nucleus_lobes``: the number of regional maxima of the nucleus's
      distance transform ``d`` whose prominence (height above the saddle to a
      higher maximum) exceeds ``lobe_prominence * max d`` (h-maxima, see
      :func:`lobe_peaks`). Lobes joined by thin chromatin bridges or narrow
      necks are separate maxima; a round or kidney-shaped nucleus has one.

``colour`` (:func:`colour_features`), for ``N``, ``C`` and ``W``, for each channel of
RGB (0-255), HSV (H in degrees rotated by 180, i.e. ``(H + 180) mod 360``, so
that the wrap-around lies at cyan, a hue these stains do not produce and
pink-red-orange is contiguous; S, V in [0, 1]) and CIE Lab (OpenCV float,
L in [0, 100]); with ``x`` the channel values over the region, ``n`` their
count, ``mu = sum x / n``, ``m_k = sum (x - mu)^k / n``:
    * ``mean = mu``; ``std = sqrt(m_2)``;
    * ``skew = m_3 / m_2^1.5``; ``kurt = m_4 / m_2^2 - 3`` (Fisher);
      skew and kurt are 0 when ``m_2 <= 1e-12``; all four are 0 on an empty region.

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

``size_ratio`` (:func:`size_ratio_features`):
    * ``nucleus_cytoplasm = |N| / max(|C|, 1)``; ``nucleus_cell = |N| / |W|``.

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

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from scipy import ndimage as ndi

from hybridwbc.errors import ConfigError
from hybridwbc.features.base import ImageFeaturizer
from hybridwbc.segment import VERSION as SEGMENT_VERSION
from hybridwbc.segment import CellMasks, segment

__all__ = [
    "FAMILIES",
    "CellView",
    "crop_cell",
    "geometry_features",
    "geometry_names",
    "colour_features",
    "colour_names",
    "texture_features",
    "texture_names",
    "size_ratio_features",
    "size_ratio_names",
    "granularity_features",
    "granularity_names",
    "granular_spectrum",
    "HandcraftedFeaturizer",
    "GeometryFeaturizer",
    "ColourFeaturizer",
    "TextureFeaturizer",
    "SizeRatioFeaturizer",
    "GranularityFeaturizer",
]

#: Feature families, in the order :class:`HandcraftedFeaturizer` concatenates them.
FAMILIES = ("geometry", "colour", "texture", "size_ratio", "granularity")

GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation")
GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
GEOM_PROPS = ("area", "perimeter", "circularity", "eccentricity", "solidity", "major_axis", "minor_axis")
COLOUR_CHANNELS = ("R", "G", "B", "H", "S", "V", "L", "a", "b")
COLOUR_STATS = ("mean", "std", "skew", "kurt")
REGIONS = ("nucleus", "cytoplasm", "cell")
GRAN_CHANNELS = ("gray", "r", "g", "b")

_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
_PERIM_KERNEL = np.array([[10, 2, 10], [2, 1, 2], [10, 2, 10]], np.float32)
_PERIM_WEIGHTS = np.zeros(50, np.float64)
_PERIM_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIM_WEIGHTS[[21, 33]] = np.sqrt(2.0)
_PERIM_WEIGHTS[[13, 23]] = (1.0 + np.sqrt(2.0)) / 2.0


# --------------------------------------------------------------------------- crop
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


# --------------------------------------------------------------------------- geometry
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
    eroded = cv2.erode(m, _CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    border = m - eroded
    conv = cv2.filter2D(border.astype(np.float32), -1, _PERIM_KERNEL, borderType=cv2.BORDER_CONSTANT)
    hist = np.bincount(np.rint(conv).astype(np.int64).ravel(), minlength=50)[:50]
    return float(hist @ _PERIM_WEIGHTS)


def _shape_props(mask: np.ndarray) -> list[float]:
    from skimage.morphology import convex_hull_image

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
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    sub = mask[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    hull = float(convex_hull_image(sub).sum()) if sub.size > 1 else area
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
    return np.array(_shape_props(view.cell) + _shape_props(view.nucleus)
                    + [count_lobes(view.nucleus, lobe_prominence)], np.float64)


# --------------------------------------------------------------------------- colour
def colour_names() -> list[str]:
    """Names of :func:`colour_features`."""
    return [f"{r}_{c}_{s}" for r in REGIONS for c in COLOUR_CHANNELS for s in COLOUR_STATS]


def colour_planes(rgb: np.ndarray) -> np.ndarray:
    """RGB, rotated-hue HSV and Lab planes of an image.

    Parameters
    ----------
    rgb : ndarray of shape (h, w, 3), dtype uint8

    Returns
    -------
    planes : ndarray of shape (h, w, 9), dtype float64
        R, G, B (0-255), H ((hue + 180) mod 360, degrees), S, V ([0, 1]), L, a, b.
    """
    f = rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    hsv = cv2.cvtColor(f, cv2.COLOR_RGB2HSV)
    lab = cv2.cvtColor(f, cv2.COLOR_RGB2Lab)
    out = np.empty(rgb.shape[:2] + (9,), np.float64)
    out[..., 0:3] = rgb
    out[..., 3] = np.mod(hsv[..., 0].astype(np.float64) + 180.0, 360.0)
    out[..., 4:6] = hsv[..., 1:3]
    out[..., 6:9] = lab
    return out


def moments4(x: np.ndarray) -> np.ndarray:
    """Mean, std, skewness, kurtosis (Fisher) of each column.

    Parameters
    ----------
    x : ndarray of shape (n, c), float64

    Returns
    -------
    ndarray of shape (c, 4)
        Zeros when ``n = 0``; skew and kurt 0 where the variance <= 1e-12.
    """
    c = x.shape[1]
    if x.shape[0] == 0:
        return np.zeros((c, 4))
    mu = x.mean(0)
    d = x - mu
    d2 = d * d
    m2 = d2.mean(0)
    m3 = (d2 * d).mean(0)
    m4 = (d2 * d2).mean(0)
    ok = m2 > 1e-12
    safe = np.where(ok, m2, 1.0)
    skew = np.where(ok, m3 / safe ** 1.5, 0.0)
    kurt = np.where(ok, m4 / (safe * safe) - 3.0, 0.0)
    return np.stack([mu, np.sqrt(m2), skew, kurt], 1)


def colour_features(view: CellView) -> np.ndarray:
    """Colour statistics of nucleus, cytoplasm and cell (module docstring).

    Returns
    -------
    ndarray of shape (108,), float64
    """
    planes = colour_planes(view.rgb)
    out = [moments4(planes[m]).ravel() for m in (view.nucleus, view.cytoplasm, view.cell)]
    return np.concatenate(out)


# --------------------------------------------------------------------------- texture
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


# --------------------------------------------------------------------------- size ratio
def size_ratio_names() -> list[str]:
    """Names of :func:`size_ratio_features`."""
    return ["nucleus_cytoplasm", "nucleus_cell"]


def size_ratio_features(view: CellView) -> np.ndarray:
    """``[|N| / max(|C|, 1), |N| / |W|]``; shape (2,), float64."""
    n = float(view.nucleus.sum())
    c = float(view.cytoplasm.sum())
    return np.array([n / max(c, 1.0), n / max(n + c, 1.0)])


# --------------------------------------------------------------------------- granularity
def granularity_names(gran_length: int = 8, gran_channels=("gray", "g")) -> list[str]:
    """Names of :func:`granularity_features`."""
    return [f"{region}_{ch}_{k}" for ch in gran_channels for region in ("cell", "cytoplasm")
            for k in range(1, gran_length + 1)]


def _disk_fp(radius: int) -> np.ndarray:
    from skimage.morphology import disk

    return disk(radius).astype(np.uint8)


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
            cur = cv2.min(cv2.dilate(cur, _CROSS), mask)
        nxt = cv2.min(cv2.dilate(cur, _CROSS), mask)
        if np.array_equal(nxt, cur):
            return cur
        cur = nxt


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
    for i in range(gran_length):
        ero = cv2.erode(ero, _CROSS)
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


# --------------------------------------------------------------------------- featurizers
def _check_params(est) -> None:
    fam = tuple(est.families)
    bad = [f for f in fam if f not in FAMILIES]
    if bad or not fam or len(set(fam)) != len(fam):
        raise ConfigError(
            f"families must be a non-empty tuple of distinct names from {FAMILIES}; received {est.families!r}."
        )
    if not (2 <= int(est.glcm_levels) <= 256):
        raise ConfigError(f"glcm_levels must be in [2, 256]; received {est.glcm_levels!r}.")
    if len(tuple(est.lbp_points)) != len(tuple(est.lbp_radii)):
        raise ConfigError(
            f"lbp_points and lbp_radii must have equal lengths; received {est.lbp_points!r} and {est.lbp_radii!r}."
        )
    if any(int(d) < 1 for d in est.glcm_distances):
        raise ConfigError(f"glcm_distances must be positive integers; received {est.glcm_distances!r}.")
    if int(est.gran_length) < 1 or int(est.gran_element) < 1 or int(est.gran_subsample) < 1:
        raise ConfigError(
            "gran_length, gran_element and gran_subsample must be integers >= 1; received "
            f"{est.gran_length!r}, {est.gran_element!r}, {est.gran_subsample!r}."
        )
    badc = [c for c in est.gran_channels if c not in GRAN_CHANNELS]
    if badc:
        raise ConfigError(f"gran_channels must be drawn from {GRAN_CHANNELS}; received {est.gran_channels!r}.")
    if not (0.0 < float(est.lobe_prominence) < 1.0):
        raise ConfigError(f"lobe_prominence must be in (0, 1); received {est.lobe_prominence!r}.")


class HandcraftedFeaturizer(ImageFeaturizer):
    """Segment once, then concatenate handcrafted feature families.

    Parameters
    ----------
    families : tuple of str, default all of :data:`FAMILIES`
        Families to compute, in this order; names are ``<family>__<feature>``.
    mode : {"auto", "crop", "cutout", "field"}, default "auto"
        Segmentation mode (:func:`hybridwbc.segment.segment`); in ``field``
        mode the cell nearest the centre is described.
    n_clusters : int, default 4
    min_contrast : float, default 40.0
    min_nucleus_frac : float, default 0.002
    max_cell_ratio : float, default 2.6
        Segmentation parameters (see :func:`~hybridwbc.segment.segment`).
    lobe_prominence : float, default 0.2
        Least prominence of a distance-transform maximum, as a fraction of the
        nucleus's largest inscribed radius, for it to count as a lobe.
    glcm_levels : int, default 16
    glcm_distances : tuple of int, default (1, 2, 4)
    lbp_points : tuple of int, default (8, 16)
    lbp_radii : tuple of float, default (1, 2)
    gran_length : int, default 8
        Granular spectrum length (CellProfiler's ``granular_spectrum_length``).
    gran_element : int, default 10
        Radius of the background-removal disk, in subsampled pixels
        (CellProfiler's ``element_size``).
    gran_subsample : int, default 1
        Keep every n-th row and column (CellProfiler's ``subsample_size`` =
        1/n). At PBC's resolution eosinophil granules have a radius of 2-4 px
        and basophil granules slightly more, so the default keeps full
        resolution and spectrum steps 1-8 cover them.
    gran_channels : tuple of str, default ("gray", "g")
        Inverted channels the spectrum is measured on; ``g`` (green absorbance)
        shows the orange-red eosinophil granules, ``gray`` all granules.

    Raises
    ------
    ConfigError
        From ``fit``/``featurize`` when a parameter is invalid.
    NoCellFoundError
        From ``featurize`` when no plausible cell is found.
    """

    version = f"1/segment-{SEGMENT_VERSION}"

    def __init__(self, families=FAMILIES, mode="auto", n_clusters=4, min_contrast=40.0,
                 min_nucleus_frac=0.002, max_cell_ratio=2.6, lobe_prominence=0.2, glcm_levels=16,
                 glcm_distances=(1, 2, 4), lbp_points=(8, 16), lbp_radii=(1, 2), gran_length=8,
                 gran_element=10, gran_subsample=1, gran_channels=("gray", "g")):
        self.families = families
        self.mode = mode
        self.n_clusters = n_clusters
        self.min_contrast = min_contrast
        self.min_nucleus_frac = min_nucleus_frac
        self.max_cell_ratio = max_cell_ratio
        self.lobe_prominence = lobe_prominence
        self.glcm_levels = glcm_levels
        self.glcm_distances = glcm_distances
        self.lbp_points = lbp_points
        self.lbp_radii = lbp_radii
        self.gran_length = gran_length
        self.gran_element = gran_element
        self.gran_subsample = gran_subsample
        self.gran_channels = gran_channels

    # -- names
    def _family_names(self, family: str) -> list[str]:
        if family == "geometry":
            return geometry_names(self.lobe_prominence)
        if family == "colour":
            return colour_names()
        if family == "texture":
            return texture_names(tuple(self.glcm_distances), tuple(self.lbp_points), tuple(self.lbp_radii))
        if family == "size_ratio":
            return size_ratio_names()
        return granularity_names(int(self.gran_length), tuple(self.gran_channels))

    def feature_names(self) -> list[str]:
        """``<family>__<feature>`` for each family in ``families``."""
        _check_params(self)
        return [f"{fam}__{n}" for fam in self.families for n in self._family_names(fam)]

    # -- values
    def segment(self, image):
        """Segment an image with this featurizer's settings; see :func:`hybridwbc.segment.segment`."""
        return segment(image, self.mode, n_clusters=int(self.n_clusters), min_contrast=float(self.min_contrast),
                       min_nucleus_frac=float(self.min_nucleus_frac), max_cell_ratio=float(self.max_cell_ratio))

    def margin(self) -> int:
        """Crop margin that makes every family equal to its full-image value."""
        m = self.tight_margin()
        if "granularity" in self.families:
            m = max(m, (2 * int(self.gran_element) + 2) * int(self.gran_subsample))
        return m

    def view(self, image, cell: CellMasks) -> CellView:
        """The :class:`CellView` of one segmented cell, cropped with :meth:`margin`."""
        align = int(self.gran_subsample) if "granularity" in self.families else 1
        return crop_cell(image, cell, self.margin(), align)

    def tight_margin(self) -> int:
        """Margin of the tight crop used by geometry, colour and texture (LBP needs ``R + 2``)."""
        return max([int(np.ceil(r)) + 2 for r in self.lbp_radii] + [2])

    def features_of(self, view: CellView) -> np.ndarray:
        """Concatenated family features of one :class:`CellView`; shape (n_features,), float64."""
        out = []
        full = view
        view = tighten(full, self.tight_margin())
        for fam in self.families:
            if fam == "geometry":
                out.append(geometry_features(view, float(self.lobe_prominence)))
            elif fam == "colour":
                out.append(colour_features(view))
            elif fam == "texture":
                out.append(texture_features(view, int(self.glcm_levels), tuple(int(d) for d in self.glcm_distances),
                                            tuple(int(p) for p in self.lbp_points), tuple(self.lbp_radii)))
            elif fam == "size_ratio":
                out.append(size_ratio_features(view))
            else:
                out.append(granularity_features(full, int(self.gran_length), int(self.gran_element),
                                                int(self.gran_subsample), tuple(self.gran_channels)))
        vec = np.concatenate(out).astype(np.float64)
        return np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0)

    def featurize(self, image) -> np.ndarray:
        """Features of the primary cell of one image.

        Parameters
        ----------
        image : ndarray of shape (H, W[, C])
            RGB uint8 (other layouts are normalised by
            :func:`hybridwbc.segment.as_rgb_uint8`).

        Returns
        -------
        ndarray of shape (n_features,), float64, finite

        Raises
        ------
        NoCellFoundError
            When segmentation finds no plausible cell.
        """
        _check_params(self)
        seg = self.segment(image)
        return self.features_of(self.view(seg.image, seg.primary))


def _family_class(name: str, family: str, doc: str):
    def __init__(self, mode="auto", n_clusters=4, min_contrast=40.0, min_nucleus_frac=0.002,
                 max_cell_ratio=2.6, lobe_prominence=0.2, glcm_levels=16, glcm_distances=(1, 2, 4),
                 lbp_points=(8, 16), lbp_radii=(1, 2), gran_length=8, gran_element=10,
                 gran_subsample=1, gran_channels=("gray", "g")):
        HandcraftedFeaturizer.__init__(
            self, (family,), mode, n_clusters, min_contrast, min_nucleus_frac, max_cell_ratio,
            lobe_prominence, glcm_levels, glcm_distances, lbp_points, lbp_radii, gran_length,
            gran_element, gran_subsample, gran_channels)

    cls = type(name, (HandcraftedFeaturizer,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})
    return cls


GeometryFeaturizer = _family_class(
    "GeometryFeaturizer", "geometry",
    "Geometric features only (``families=('geometry',)``); parameters as :class:`HandcraftedFeaturizer`.")
ColourFeaturizer = _family_class(
    "ColourFeaturizer", "colour",
    "Colour statistics only (``families=('colour',)``); parameters as :class:`HandcraftedFeaturizer`.")
TextureFeaturizer = _family_class(
    "TextureFeaturizer", "texture",
    "GLCM and LBP texture only (``families=('texture',)``); parameters as :class:`HandcraftedFeaturizer`.")
SizeRatioFeaturizer = _family_class(
    "SizeRatioFeaturizer", "size_ratio",
    "Nucleus/cytoplasm and nucleus/cell area ratios (``families=('size_ratio',)``).")
GranularityFeaturizer = _family_class(
    "GranularityFeaturizer", "granularity",
    "Granular spectra only (``families=('granularity',)``); parameters as :class:`HandcraftedFeaturizer`.")
