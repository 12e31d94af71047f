"""White-cell segmentation by colour clustering: nucleus and cytoplasm masks.

Pure functions on ndarrays. The pipeline of :func:`segment` is:

1. **Normalise** the input to ``(H, W, 3) uint8`` RGB (:func:`as_rgb_uint8`):
   grayscale is replicated, RGBA is composited on white, 16-bit and float
   images are rescaled. Large images are segmented at a reduced scale
   (``work_side``) and the masks are resized back.
2. **Global colour clustering.** Pixels are converted to CIE Lab (OpenCV,
   D65) and a deterministic k-means (:func:`kmeans`, centres initialised at
   quantiles of lightness, fixed iteration count) runs on a strided
   subsample of at most ``sample`` pixels; every pixel is then assigned to its
   nearest centre. In May-Grünwald-Giemsa stains the nucleus is dark and
   purple-blue, so the nucleus cluster is the one that maximises the *stain
   score* ``s = a* - b* + 0.5 (100 - L*)`` (:func:`stain_score`). An image
   whose best cluster does not exceed the background cluster's score by
   ``min_contrast`` holds no nucleus and raises
   :class:`~hybridwbc.errors.NoCellFoundError`.
3. **Nucleus clean-up.** Opening by a small disk, hole filling, removal of
   components smaller than ``min_nucleus_frac`` of the image; lobes of one
   nucleus are grouped by a closing whose radius is a fraction of the
   typical nucleus radius, so a segmented neutrophil is one cell.
4. **Cytoplasm by local clustering.** Around each nucleus a second k-means
   (3 clusters) runs on the non-nucleus pixels of a window. The cluster that
   dominates a thin ring just outside the nucleus is the cytoplasm, unless it
   is the background. Cytoplasm pixels connected to the nucleus, after an
   opening (which cuts touching red cells), hole filling and a bound on the
   cell radius, form the cell.
5. **Cell choice.** ``mode="crop"`` keeps the cell nearest the image centre
   (PBC crops), ``"cutout"`` takes the cell on a black background as the
   non-black component (C-NMC), ``"field"`` keeps every cell (smear fields),
   and ``"auto"`` is ``"cutout"`` when the image border is black, otherwise
   ``"crop"``.

All lengths are relative to the image or to the nucleus found, so one set of
defaults serves 224-px fields, 360-px crops and 640-px fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from hybridwbc.errors import ConfigError, ImageReadError, NoCellFoundError

__all__ = [
    "VERSION",
    "MODES",
    "CellMasks",
    "Segmentation",
    "as_rgb_uint8",
    "rgb_to_lab",
    "stain_score",
    "kmeans",
    "disk",
    "segment",
    "dice",
]

#: Version of the masks :func:`segment` returns. Featurizers that segment hash it into their
#: cache keys, so bump it whenever a change alters any mask. 2: basophil granules are split
#: from the nucleus; granule clusters sharing the ring join the cell. 3: a dark chromatin rim
#: or crescent beside a lighter centre is not taken for granules.
VERSION = 3

#: Accepted values of the ``mode`` parameter.
MODES = ("auto", "crop", "cutout", "field")

#: Smallest image side (pixels) that can hold a plausible cell.
MIN_SIDE = 16

cv2.setNumThreads(1)


@dataclass(frozen=True)
class CellMasks:
    """Masks of one segmented cell.

    Attributes
    ----------
    nucleus : ndarray of shape (H, W), dtype bool
    cytoplasm : ndarray of shape (H, W), dtype bool
        Cell minus nucleus; disjoint from ``nucleus``.
    bbox : tuple of 4 int
        ``(row0, col0, row1, col1)``, half-open bounding box of the cell.
    touches_border : bool
        Whether the cell touches the image border.
    """

    nucleus: np.ndarray
    cytoplasm: np.ndarray
    bbox: tuple
    touches_border: bool = False

    @property
    def cell(self) -> np.ndarray:
        """Whole-cell mask ``nucleus | cytoplasm``; shape (H, W), bool."""
        return self.nucleus | self.cytoplasm


@dataclass
class Segmentation:
    """Result of :func:`segment`.

    Attributes
    ----------
    labels : ndarray of shape (H, W), dtype int32
        0 for background, ``i + 1`` for the pixels of ``cells[i]``.
    cells : list of CellMasks
        In ``crop``/``cutout`` mode exactly one cell; in ``field`` mode every
        cell, sorted by distance of its nucleus centroid to the image centre.
    mode : str
        The mode actually used (``auto`` resolved).
    image : ndarray of shape (H, W, 3), dtype uint8
        The normalised RGB image the masks refer to.
    """

    labels: np.ndarray
    cells: list
    mode: str
    image: np.ndarray = field(repr=False, default=None)

    @property
    def primary(self) -> CellMasks:
        """The cell nearest the image centre."""
        return self.cells[0]

    def classes(self) -> np.ndarray:
        """Class map ``(H, W) int32``: 0 background, 1 cytoplasm, 2 nucleus."""
        out = np.zeros(self.labels.shape, np.int32)
        for c in self.cells:
            out[c.cytoplasm] = 1
            out[c.nucleus] = 2
        return out


# --------------------------------------------------------------------------- input
def as_rgb_uint8(image) -> np.ndarray:
    """Normalise an array to ``(H, W, 3) uint8`` RGB.

    Parameters
    ----------
    image : array-like of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)
        uint8, uint16 (rescaled by 257), other integer types (rescaled by their
        maximum when it exceeds 255), bool, or float (``[0, 1]`` when its
        maximum is at most 1, else ``[0, 255]``). RGBA is composited on white.

    Returns
    -------
    rgb : ndarray of shape (H, W, 3), dtype uint8, C-contiguous

    Raises
    ------
    ImageReadError
        If the array is not 2-D or 3-D with 1, 3 or 4 channels, or is empty.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or arr.size == 0 or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ImageReadError(
            f"Cannot use an array of shape {arr.shape} as an image: expected (H, W), (H, W, 1), "
            "(H, W, 3) or (H, W, 4). Pass one RGB image."
        )
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = (arr.astype(np.uint32) // 257).astype(np.uint8)
    elif arr.dtype.kind == "f":
        a = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if a.max(initial=0.0) <= 1.0 else 1.0
        arr = np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        a = arr.astype(np.float64)
        top = a.max(initial=0.0)
        if top > 255:
            a = a * (255.0 / top)
        arr = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 255.0
        rgb = arr[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        arr = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of an RGB image, from OpenCV's 8-bit conversion.

    Parameters
    ----------
    rgb : ndarray of shape (H, W, 3), dtype uint8

    Returns
    -------
    lab : ndarray of shape (H, W, 3), dtype float32
        ``L*`` in [0, 100], ``a*`` and ``b*`` in [-128, 127], quantised to
        about one unit (ample for clustering).
    """
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).astype(np.float32)
    lab -= np.array([0.0, 128.0, 128.0], np.float32)
    lab[..., 0] *= np.float32(100.0 / 255.0)
    return lab


def stain_score(lab: np.ndarray) -> np.ndarray:
    """Nucleus-likeness ``s = a* - b* + 0.5 (100 - L*)`` of Lab colours.

    Large for dark purple-blue (haematoxylin/azure-stained chromatin), near 0
    for the light background, small for pink red cells.

    Parameters
    ----------
    lab : ndarray of shape (..., 3)

    Returns
    -------
    score : ndarray of shape (...,), float
    """
    lab = np.asarray(lab, np.float32)
    return lab[..., 1] - lab[..., 2] + 0.5 * (100.0 - lab[..., 0])


def kmeans(x: np.ndarray, k: int, n_iter: int = 10, init: Optional[np.ndarray] = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic Lloyd k-means.

    Centres start at ``init`` or, by default, at the points at quantiles
    ``(i + 0.5) / k`` of the first column (lightness), so the result depends
    only on the data. Empty clusters keep their previous centre.

    Parameters
    ----------
    x : ndarray of shape (n, d), float
    k : int
    n_iter : int, default 10
    init : ndarray of shape (k, d), optional

    Returns
    -------
    centres : ndarray of shape (k, d), float32
    labels : ndarray of shape (n,), int64
    """
    x = np.asarray(x, np.float32)
    n = len(x)
    order = np.argsort(x[:, 0], kind="stable")
    if init is not None:
        centres = np.array(init, np.float32).reshape(k, x.shape[1])
    else:
        centres = x[order[((np.arange(k) + 0.5) * n / k).astype(int).clip(0, n - 1)]].copy()
    labels = np.zeros(n, np.int64)
    for _ in range(n_iter):
        labels = _assign(x, centres)
        counts = np.bincount(labels, minlength=k)
        new = np.zeros_like(centres)
        for d in range(x.shape[1]):
            new[:, d] = np.bincount(labels, weights=x[:, d], minlength=k)
        keep = counts > 0
        new[keep] /= counts[keep, None]
        new[~keep] = centres[~keep]
        if np.allclose(new, centres, atol=1e-3):
            centres = new
            break
        centres = new
    return centres, _assign(x, centres)


def _affine(centres: np.ndarray) -> np.ndarray:
    # rows: squared distance to each centre minus |x|^2 (constant per pixel), as an affine map
    c = np.asarray(centres, np.float32)
    return np.concatenate([-2.0 * c, (c * c).sum(1)[:, None]], 1).astype(np.float32)


def _assign(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for each row of ``x`` (n, 3); ties go to the lower index."""
    x = np.ascontiguousarray(x, np.float32)
    d = cv2.transform(x.reshape(-1, 1, x.shape[1]), _affine(centres)).reshape(len(x), -1)
    return d.argmin(1)


def _nearest_is(img: np.ndarray, centres: np.ndarray, j: int) -> np.ndarray:
    """``(H, W)`` bool: pixels of ``img`` (H, W, 3) whose nearest centre is ``j``."""
    m = _affine(centres)
    others = [k for k in range(len(centres)) if k != j]
    diff = (m[j][None, :] - m[others]).astype(np.float32)  # d_j - d_k, want < 0 for every k
    out = None
    for start in range(0, len(others), 4):
        block = diff[start:start + 4]
        d = cv2.transform(img, block) if len(block) > 1 else cv2.transform(img, block)
        d = d.reshape(img.shape[0], img.shape[1], -1)
        cur = d.max(2) < 0 if d.shape[2] > 1 else d[..., 0] < 0
        out = cur if out is None else out & cur
    return out


def disk(radius: int) -> np.ndarray:
    """Disk structuring element ``(2r+1, 2r+1) uint8`` (OpenCV ellipse)."""
    r = max(0, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _u8(mask: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(mask, dtype=np.uint8)


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Erosion by a disk of radius ``r``; outside the image counts as foreground."""
    if r <= 0:
        return mask
    if r <= 2:
        return cv2.erode(_u8(mask), disk(r)).astype(bool)
    return cv2.distanceTransform(_u8(mask), cv2.DIST_L2, 5) > r


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Dilation by a disk of radius ``r``."""
    if r <= 0:
        return mask
    if r <= 2:
        return cv2.dilate(_u8(mask), disk(r)).astype(bool)
    if not mask.any():
        return mask.copy()
    return cv2.distanceTransform(_u8(~mask), cv2.DIST_L2, 5) <= r


def _open(mask: np.ndarray, r: int) -> np.ndarray:
    return _dilate(_erode(mask, r), r) if r > 0 else mask


def _close(mask: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return mask
    pad = r + 1
    m = np.pad(mask, pad)
    return _erode(_dilate(m, r), r)[pad:-pad, pad:-pad]


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes (background regions not 4-connected to the border); (H, W) bool."""
    h, w = mask.shape
    m = np.zeros((h + 2, w + 2), np.uint8)
    m[1:-1, 1:-1] = mask
    cv2.floodFill(m, None, (0, 0), 2)
    return m[1:-1, 1:-1] != 2


def _components(mask: np.ndarray):
    n, lab, stats, cent = cv2.connectedComponentsWithStats(_u8(mask), connectivity=8)
    return n, lab, stats, cent


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2 |a & b| / (|a| + |b|)`` of two bool masks (1.0 if both empty)."""
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2.0 * np.logical_and(a, b).sum() / s)


# --------------------------------------------------------------------------- main
def segment(
    image,
    mode: str = "auto",
    *,
    n_clusters: int = 4,
    sample: int = 2048,
    min_contrast: float = 40.0,
    min_nucleus_frac: float = 0.002,
    max_cell_ratio: float = 2.6,
    work_side: int = 160,
) -> Segmentation:
    """Segment white cells into nucleus and cytoplasm by colour clustering.

    Parameters
    ----------
    image : array-like of shape (H, W[, C])
        Any input :func:`as_rgb_uint8` accepts.
    mode : {"auto", "crop", "cutout", "field"}, default "auto"
        ``crop``: one cell, the one nearest the centre, among red cells on a
        light background (PBC); ``cutout``: one cell on a black background
        (C-NMC); ``field``: every cell of a smear field; ``auto``: ``cutout``
        when most of the image border is black, else ``crop``.
    n_clusters : int, default 4
        Clusters of the global Lab k-means (nucleus, cytoplasm, red cells,
        background).
    sample : int, default 2048
        Largest number of pixels (a regular stride) the k-means runs on.
    min_contrast : float, default 40
        Least stain-score difference between the nucleus cluster and the
        background cluster for a nucleus to be plausible.
    min_nucleus_frac : float, default 0.002
        Smallest nucleus area as a fraction of the image area (field mode
        uses twice this, as small purple platelets are not white cells).
    max_cell_ratio : float, default 2.6
        Largest cell radius as a multiple of the nucleus radius (measured on
        the nucleus bounding box); bounds cytoplasm leaking into neighbours.
    work_side : int, default 160
        Segmentation runs on the image shrunk by the integer factor
        ``max(1, min(H, W) // work_side)`` (area averaging), and the masks are
        resized back (bilinear, threshold 0.5): a 360-px PBC crop is
        segmented at 180 px, a 640x480 field at 213x160.

    Returns
    -------
    Segmentation

    Raises
    ------
    ConfigError
        If ``mode`` or a numeric parameter is invalid.
    NoCellFoundError
        If the image is smaller than 16 px, uniform, or holds no plausible
        nucleus.
    """
    if mode not in MODES:
        raise ConfigError(f"segment mode must be one of {MODES}; received {mode!r}.")
    if n_clusters < 2 or sample < 64 or work_side < MIN_SIDE:
        raise ConfigError(
            "segment needs n_clusters >= 2, sample >= 64 and work_side >= 16; received "
            f"n_clusters={n_clusters}, sample={sample}, work_side={work_side}."
        )
    rgb = as_rgb_uint8(image)
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise NoCellFoundError(
            f"No cell found: the image is {h}x{w} pixels, smaller than {MIN_SIDE} on a side."
        )
    scale = max(1, min(h, w) // work_side)
    work = rgb
    if scale > 1:
        work = cv2.resize(rgb, (w // scale, h // scale), interpolation=cv2.INTER_AREA)
    if mode == "auto":
        mode = "cutout" if _black_border(work) else "crop"
    params = dict(n_clusters=n_clusters, sample=sample, min_contrast=min_contrast,
                  min_nucleus_frac=min_nucleus_frac, max_cell_ratio=max_cell_ratio)
    cells_small = _segment_work(work, mode, **params)
    cells = []
    for nuc, cyt in cells_small:
        if scale > 1:
            cell = nuc | cyt
            nuc = cv2.resize(_u8(nuc) * 255, (w, h), interpolation=cv2.INTER_LINEAR) > 127
            cell = (cv2.resize(_u8(cell) * 255, (w, h), interpolation=cv2.INTER_LINEAR) > 127) | nuc
            cyt = cell & ~nuc
            if not nuc.any():
                continue
        cells.append(_make_cell(nuc, cyt))
    if not cells:
        raise _no_cell("the nucleus vanished when the masks were resized to the image")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0

    def dist(c: CellMasks) -> float:
        ys, xs = np.nonzero(c.nucleus)
        return float((ys.mean() - cy) ** 2 + (xs.mean() - cx) ** 2)

    cells.sort(key=dist)
    labels = np.zeros((h, w), np.int32)
    for i in range(len(cells) - 1, -1, -1):
        labels[cells[i].cell] = i + 1
    return Segmentation(labels=labels, cells=cells, mode=mode, image=rgb)


def _make_cell(nuc: np.ndarray, cyt: np.ndarray) -> CellMasks:
    cell = nuc | cyt
    rows = np.flatnonzero(cell.any(1))
    cols = np.flatnonzero(cell.any(0))
    bbox = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    h, w = cell.shape
    border = bbox[0] == 0 or bbox[1] == 0 or bbox[2] == h or bbox[3] == w
    return CellMasks(nucleus=nuc, cytoplasm=cyt, bbox=bbox, touches_border=bool(border))


def _black_border(rgb: np.ndarray) -> bool:
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return bool((border.max(1) < 30).mean() > 0.6)


def _no_cell(reason: str) -> NoCellFoundError:
    return NoCellFoundError(f"No cell found: {reason}. The image is reported as skipped, not guessed.")


def _stain_init(x: np.ndarray, k: int) -> np.ndarray:
    """Initial centres: the 99th-percentile stain-score pixel (a nucleus, even a small one),
    then pixels at lightness quantiles ``(i + 0.5) / (k - 1)``."""
    n = len(x)
    s = stain_score(x)
    first = x[np.argsort(s, kind="stable")[min(n - 1, int(0.99 * n))]]
    order = np.argsort(x[:, 0], kind="stable")
    rest = x[order[((np.arange(k - 1) + 0.5) * n / (k - 1)).astype(int).clip(0, n - 1)]]
    return np.vstack([first[None], rest])


def _strided(n: int, sample: int) -> int:
    return max(1, int(np.ceil(n / sample)))


def _segment_work(rgb, mode, *, n_clusters, sample, min_contrast, min_nucleus_frac, max_cell_ratio):
    h, w = rgb.shape[:2]
    if int(rgb.max()) - int(rgb.min()) < 12:
        raise _no_cell("the image is uniform")
    lab = rgb_to_lab(rgb)
    flat = lab.reshape(-1, 3)
    score = stain_score(lab)
    r_img = max(1, int(round(min(h, w) / 180)))

    if mode == "cutout":
        fg = rgb.max(2) >= 30
        fg = _fill_holes(_open(fg, r_img))
        n, cc, stats, _ = _components(fg)
        if n <= 1:
            raise _no_cell("the cut-out holds no non-black object")
        big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        if stats[big, cv2.CC_STAT_AREA] < min_nucleus_frac * h * w:
            raise _no_cell("the non-black object is too small to be a cell")
        cell = cc == big
        idx = np.flatnonzero(cell.ravel())
        xs = flat[idx[:: _strided(idx.size, sample)]]
        centres, _ = kmeans(xs, 2, init=_stain_init(xs, 2))
        s = stain_score(centres)
        nuc_c = int(np.argmax(s))
        if s[nuc_c] < min_contrast:
            raise _no_cell("the cut-out object has no stained nucleus")
        lab_in = np.zeros(flat.shape[0], np.int64) - 1
        lab_in[idx] = _assign(flat[idx], centres)
        nuc = (lab_in == nuc_c).reshape(h, w)
        if np.sort(s)[-1] - np.sort(s)[0] < 0.5 * min_contrast:
            nuc = cell.copy()  # one homogeneous object: all nucleus (e.g. a blast)
        nuc = _fill_holes(_open(nuc, r_img)) & cell
        nuc = _drop_dark_granules(lab, nuc, r_img)
        if nuc.sum() < 0.05 * cell.sum():
            raise _no_cell("the cut-out object has no plausible nucleus")
        return [(nuc, cell & ~nuc)]

    # ---- global clustering
    step = _strided(h * w, sample)
    xs = flat[::step]
    centres, _ = kmeans(xs, n_clusters, init=_stain_init(xs, n_clusters))
    s = stain_score(centres)
    nuc_c = int(np.argmax(s))
    bg_c = int(np.argmax(centres[:, 0]))  # lightest cluster
    if s[nuc_c] - s[bg_c] < min_contrast or nuc_c == bg_c:
        raise _no_cell("no colour cluster is stained like a nucleus")
    nucleus = _nearest_is(lab, centres, nuc_c)
    # a large nucleus may be split in two clusters of similar stain: merge clusters whose
    # score is within the top quarter of the background-to-nucleus range
    for k in range(len(centres)):
        if k != nuc_c and k != bg_c and s[k] >= s[bg_c] + 0.75 * (s[nuc_c] - s[bg_c]):
            nucleus |= _nearest_is(lab, centres, k)
    nucleus = _fill_holes(_open(nucleus, r_img))
    frac = min_nucleus_frac * (2.0 if mode == "field" else 1.0)
    min_area = max(12.0, frac * h * w)
    n, cc, stats, cent = _components(nucleus)
    keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area * 0.25]
    if not keep:
        raise _no_cell("no nucleus-coloured region is large enough")
    areas = np.array([stats[i, cv2.CC_STAT_AREA] for i in keep], float)
    nucleus = np.isin(cc, keep)
    # granules darker than chromatin (basophils) join the nucleus cluster as thin specks:
    # an opening at a tenth of the nucleus radius removes them, not the nucleus
    r_specks = int(round(0.1 * float(np.sqrt(areas.max() / np.pi))))
    if r_specks > r_img:
        opened = _open(nucleus, r_specks)
        if opened.sum() >= min_area:
            nucleus = opened
            n, cc, stats, cent = _components(nucleus)
            keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area * 0.25]
            if not keep:
                raise _no_cell("no nucleus-coloured region is large enough")
            areas = np.array([stats[i, cv2.CC_STAT_AREA] for i in keep], float)
            nucleus = np.isin(cc, keep)
    # group lobes of one nucleus: closing with a radius ~ a third of the typical nucleus radius
    r_typ = float(np.sqrt(areas.max() / np.pi))
    r_group = max(1, int(round(0.35 * r_typ)))
    grouped = _close(nucleus, r_group)
    n, gcc, gstats, gcent = _components(grouped)
    groups = [i for i in range(1, n) if (nucleus & (gcc == i)).sum() >= min_area]
    if not groups:
        raise _no_cell("no nucleus-coloured region is large enough")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    if mode == "crop":
        d = [(gcent[i][1] - cy) ** 2 + (gcent[i][0] - cx) ** 2 for i in groups]
        groups = [groups[int(np.argmin(d))]]
    bg_colour = centres[bg_c]
    nucs = []
    for g in groups:
        nuc = nucleus & (gcc == g)
        core = _drop_dark_granules(lab, nuc, r_img)
        nucleus &= ~(nuc & ~core)  # granules dropped from a nucleus may become cytoplasm
        nucs.append(core)
    out = []
    for nuc in nucs:
        cyt = _cytoplasm(lab, nuc, nucleus, bg_colour, sample, max_cell_ratio, r_img)
        out.append((nuc, cyt))
    return out


def _drop_dark_granules(lab, nuc, r_img, min_delta_e=6.0, max_thickness=0.45):
    """Remove dark granules (basophils) that joined a nucleus mask; (H, W) bool.

    The stained pixels of ``nuc`` (lightness at most 15 above its median; the
    rest are filled-in holes) are split by a 2-means in Lab. The split is kept only
    when the two colours differ by at least ``min_delta_e``, the darker part
    lies mostly outside the filled main component of the lighter part, and it
    is thin: its largest inscribed radius is below ``max_thickness`` times the
    lighter part's; the rest of the mask must not ring the lighter part (its
    closed, filled outline covers less than half of it) and must be scattered
    (its largest piece at most 70 % of it). Basophil granules are darker than
    chromatin and scattered as specks a few pixels wide, so they pass;
    chromatin texture (dark and light parts interleaved inside one outline), a
    dark chromatin rim or crescent beside a lighter centre (lymphocytes,
    lymphoblasts) and a second lobe (as thick as the first) do not, and the
    mask is returned unchanged. Returns the filled main component of the
    lighter part, limited to ``nuc``.
    """
    idx = np.flatnonzero(nuc.ravel())
    if idx.size < 64:
        return nuc
    x = lab.reshape(-1, 3)[idx]
    # pixels much lighter than the median are filled-in holes (cytoplasm between granules)
    stained = x[:, 0] <= np.median(x[:, 0]) + 15.0
    if stained.sum() < 64:
        return nuc
    idx, x = idx[stained], x[stained]
    centres, _ = kmeans(x[:: _strided(idx.size, 2048)], 2)
    if float(np.sqrt(((centres[0] - centres[1]) ** 2).sum())) < min_delta_e:
        return nuc
    dark = int(np.argmin(centres[:, 0]))
    sub = np.zeros(nuc.size, bool)
    sub[idx] = _assign(x, centres) == dark
    dark_m = sub.reshape(nuc.shape)
    light_m = nuc & ~dark_m
    n, cc, stats, _ = _components(_open(light_m, r_img))
    if n <= 1:
        return nuc
    core = _fill_holes(cc == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])))
    outside = dark_m & ~_dilate(core, r_img)
    if outside.sum() < 0.5 * dark_m.sum():
        return nuc
    if (_fill_holes(_close(nuc & ~core, r_img)) & core).sum() >= 0.5 * core.sum():
        return nuc  # the rest rings the light part: a dark chromatin rim (lymphocytes), not granules
    n, _, stats, _ = _components(nuc & ~_dilate(core, r_img))
    areas = stats[1:, cv2.CC_STAT_AREA]
    if n <= 1 or areas.max() > 0.7 * areas.sum():
        return nuc  # one dark piece (a crescent of chromatin), not scattered granules

    def thickness(m):
        return float(cv2.distanceTransform(_u8(m), cv2.DIST_L2, 5).max())

    if thickness(dark_m) >= max_thickness * thickness(core):
        return nuc
    return core & nuc


def _hull(mask: np.ndarray) -> np.ndarray:
    """Filled convex hull of the foreground of ``mask`` (H, W) bool."""
    pts = cv2.findNonZero(_u8(mask))
    out = np.zeros(mask.shape, np.uint8)
    if pts is not None:
        cv2.fillConvexPoly(out, cv2.convexHull(pts), 1)
    return out.astype(bool) | mask


def _cytoplasm(lab, nuc, all_nuclei, bg_colour, sample, max_cell_ratio, r_img):
    """Cytoplasm of the cell whose nucleus is ``nuc``; (H, W) bool, disjoint from ``nuc``."""
    h, w = nuc.shape
    rows = np.flatnonzero(nuc.any(1))
    cols = np.flatnonzero(nuc.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    rn = 0.5 * max(r1 - r0, c1 - c0)
    rn_area = float(np.sqrt(nuc.sum() / np.pi))
    rad = max(rn, rn_area) * max_cell_ratio
    yc, xc = 0.5 * (r0 + r1 - 1), 0.5 * (c0 + c1 - 1)
    m = int(np.ceil(rad - 0.5 * min(r1 - r0, c1 - c0))) + 2
    wr0, wr1, wc0, wc1 = max(0, r0 - m), min(h, r1 + m), max(0, c0 - m), min(w, c1 + m)
    win_lab = lab[wr0:wr1, wc0:wc1]
    win_nuc = nuc[wr0:wr1, wc0:wc1]
    other = ~all_nuclei[wr0:wr1, wc0:wc1]
    yy, xx = np.ogrid[wr0:wr1, wc0:wc1]
    inside = ((yy - yc) ** 2 + (xx - xc) ** 2) <= rad * rad
    cand_px = other & inside
    idx = np.flatnonzero(cand_px.ravel())
    if idx.size < 16:
        return np.zeros_like(nuc)
    wflat = win_lab.reshape(-1, 3)
    centres, _ = kmeans(wflat[idx[:: _strided(idx.size, sample // 2)]], 3)
    lab_w = np.full(wflat.shape[0], -1, np.int64)
    lab_w[idx] = _assign(wflat[idx], centres)
    lab_w = lab_w.reshape(win_nuc.shape)
    ring_r = max(2, int(round(0.12 * rn_area)))
    ring = _dilate(win_nuc, ring_r) & ~win_nuc & cand_px
    votes = np.bincount(lab_w[ring], minlength=3) if ring.any() else np.zeros(3, int)
    if votes.sum() == 0:
        return np.zeros_like(nuc)
    cyt_c = int(np.argmax(votes))
    # background-like cluster: as light as the global background and close in colour
    dist_bg = float(np.sqrt(((centres[cyt_c] - bg_colour) ** 2).sum()))
    if dist_bg < 6.0:
        cand = win_nuc.copy()
    else:
        cand = (lab_w == cyt_c) | win_nuc
        # granules and cytoplasm can share the ring (basophils, eosinophils): a second
        # non-background cluster holding at least a third of the ring votes joins the cell
        for k in range(3):
            far = np.sqrt(((centres[k] - bg_colour) ** 2).sum()) >= 6.0
            if k != cyt_c and far and votes[k] >= votes.sum() / 3.0:
                cand |= lab_w == k
    r_open = max(r_img, int(round(0.18 * rn_area)))

    def grow(cand):
        opened = _open(_fill_holes(cand), r_open) | win_nuc
        n, cc, stats, _ = _components(opened)
        hit = np.bincount(cc[win_nuc], minlength=n)
        hit[0] = 0
        return cc == int(np.argmax(hit))

    cell = grow(cand)
    if dist_bg >= 6.0:
        # a second cytoplasm colour (granules) lies mostly inside the cell's convex hull; red
        # cells mostly outside. Granules cut the cytoplasm into strips that the opening drops,
        # so the cell regrows (at most 3 times) while the hull takes in more granules.
        for _ in range(3):
            near = _dilate(_hull(cell), r_open)
            extra = np.zeros_like(cand)
            for k in range(3):
                if k == cyt_c or np.sqrt(((centres[k] - bg_colour) ** 2).sum()) < 6.0:
                    continue
                mk = lab_w == k
                if mk.any() and (mk & near).sum() >= 0.5 * mk.sum():
                    extra |= mk & near
            if not extra.any():
                break
            grown = grow(cand | extra)
            if grown.sum() <= cell.sum():
                break
            cell = grown
    cell = _fill_holes(_close(cell, r_img) & inside) | win_nuc
    out = np.zeros_like(nuc)
    out[wr0:wr1, wc0:wc1] = cell & ~win_nuc
    return out
