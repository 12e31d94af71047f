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
   cell radius, form the cell. With ``cytoplasm_method="split"``
   a watershed of the cell's distance transform then cuts off the red cells that
   touch it through a neck (:func:`~hybridwbc.segment.cytoplasm.split_touching`). With
   ``cytoplasm_method="colour"`` (the default) the cell is instead redrawn from a
   per-image Gaussian colour model of cytoplasm, red cells and background fitted on
   pseudo-labels (:func:`~hybridwbc.segment.cytoplasm.colour_model`).
5. **Cell choice.** ``mode="crop"`` keeps the cell nearest the image centre
   (PBC crops), ``"cutout"`` takes the cell on a black background as the
   non-black component (C-NMC), ``"field"`` keeps every cell (smear fields),
   and ``"auto"`` is ``"cutout"`` when the image border is black, otherwise
   ``"crop"``.

All lengths are relative to the image or to the nucleus found, so one set of
defaults serves 224-px fields, 360-px crops and 640-px fields. Those defaults are
written once, as the fields of :class:`Segmenter` (the ``segment`` config group);
featurizers take a ``Segmenter`` and :func:`segment` is its functional form.

The steps live in :mod:`~hybridwbc.segment.colour` (1, 2),
:mod:`~hybridwbc.segment.nucleus` (2, 3, ``cutout``),
:mod:`~hybridwbc.segment.cytoplasm` (4) and :mod:`~hybridwbc.segment.morphology`;
this module drives them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import cv2
import numpy as np

from hybridwbc.errors import ConfigError, NoCellFoundError
from hybridwbc.segment.colour import as_rgb_uint8, rgb_to_lab
from hybridwbc.segment.cytoplasm import CYTOPLASM_METHODS, find_cytoplasm
from hybridwbc.segment.morphology import as_u8
from hybridwbc.segment.nucleus import cutout_cell, find_nuclei, no_cell

__all__ = ["VERSION", "MODES", "MIN_SIDE", "CellMasks", "Segmentation", "Segmenter", "segment", "find_cells"]

#: Version of the masks :func:`segment` returns. Featurizers that segment hash it into their
#: cache keys, so bump it whenever a change alters any mask. 2: basophil granules are split
#: from the nucleus; granule clusters sharing the ring join the cell. 3: a dark chromatin rim
#: or crescent beside a lighter centre is not taken for granules. 4: touching red cells are cut off the
#: cytoplasm along narrow necks (``cytoplasm_method="split"``). 5: the cell is redrawn from a per-image
#: colour model of cytoplasm, red cells and background (``cytoplasm_method="colour"``, the default).
VERSION = 5

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



@dataclass(frozen=True)
class Segmenter:
    """The segmentation settings, in one place, and the segmentation they define.

    Parameters
    ----------
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
    cytoplasm_method : {"colour", "split", "cluster"}, default "colour"
        ``cluster``: the cell is the local colour cluster grown from the
        nucleus (segmentation version 3); ``split``: the same, then red cells
        touching it through a neck are cut off by a distance-transform
        watershed (:func:`~hybridwbc.segment.cytoplasm.split_touching`, version 4);
        ``colour``: the clustered cell is redrawn as the pixels likelier cytoplasm
        than red cell or background under Gaussians fitted on the image's own
        pseudo-labels (:func:`~hybridwbc.segment.cytoplasm.colour_model`, version 5).

    Raises
    ------
    ConfigError
        If ``mode`` or a numeric parameter is invalid.
    """

    mode: str = "auto"
    n_clusters: int = 4
    sample: int = 2048
    min_contrast: float = 40.0
    min_nucleus_frac: float = 0.002
    max_cell_ratio: float = 2.6
    work_side: int = 160
    cytoplasm_method: str = "colour"

    def __post_init__(self):
        # a config enum arrives as its member: keep its value
        object.__setattr__(self, "mode", getattr(self.mode, "value", self.mode))
        if self.mode not in MODES:
            raise ConfigError(f"segment mode must be one of {MODES}; received {self.mode!r}.")
        if self.cytoplasm_method not in CYTOPLASM_METHODS:
            raise ConfigError(f"segment cytoplasm_method must be one of {CYTOPLASM_METHODS}; received "
                              f"{self.cytoplasm_method!r}. Set segment.cytoplasm_method=colour (or split, cluster).")
        if self.n_clusters < 2 or self.sample < 64 or self.work_side < MIN_SIDE:
            raise ConfigError(
                "segment needs n_clusters >= 2, sample >= 64 and work_side >= 16; received "
                f"n_clusters={self.n_clusters}, sample={self.sample}, work_side={self.work_side}."
            )

    def settings(self) -> dict:
        """The settings and the mask :data:`VERSION`: what a cache key of segmented features hashes."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "version": VERSION}

    def segment(self, image) -> Segmentation:
        """Segment white cells into nucleus and cytoplasm by colour clustering.

        Parameters
        ----------
        image : array-like of shape (H, W[, C])
            Any input :func:`~hybridwbc.segment.colour.as_rgb_uint8` accepts.

        Returns
        -------
        Segmentation

        Raises
        ------
        NoCellFoundError
            If the image is smaller than 16 px, uniform, or holds no plausible
            nucleus.
        """
        rgb = as_rgb_uint8(image)
        h, w = rgb.shape[:2]
        if min(h, w) < MIN_SIDE:
            raise NoCellFoundError(
                f"No cell found: the image is {h}x{w} pixels, smaller than {MIN_SIDE} on a side."
            )
        scale = max(1, min(h, w) // int(self.work_side))
        work = rgb
        if scale > 1:
            work = cv2.resize(rgb, (w // scale, h // scale), interpolation=cv2.INTER_AREA)
        mode = self.mode
        if mode == "auto":
            mode = "cutout" if _black_border(work) else "crop"
        cells_small = find_cells(work, mode, n_clusters=int(self.n_clusters), sample=int(self.sample),
                                 min_contrast=float(self.min_contrast),
                                 min_nucleus_frac=float(self.min_nucleus_frac),
                                 max_cell_ratio=float(self.max_cell_ratio),
                                 cytoplasm_method=self.cytoplasm_method)
        return _at_full_size(rgb, cells_small, scale, mode)


def segment(image, mode: str = "auto", **settings) -> Segmentation:
    """``Segmenter(mode, **settings).segment(image)``: the functional form of :class:`Segmenter`.

    Parameters
    ----------
    image : array-like of shape (H, W[, C])
    mode : {"auto", "crop", "cutout", "field"}, default "auto"
    **settings
        ``n_clusters``, ``sample``, ``min_contrast``, ``min_nucleus_frac``,
        ``max_cell_ratio``, ``work_side``, ``cytoplasm_method``: see :class:`Segmenter`.

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
    return Segmenter(mode, **settings).segment(image)


def find_cells(rgb, mode, *, n_clusters, sample, min_contrast, min_nucleus_frac, max_cell_ratio,
               cytoplasm_method="colour") -> list:
    """``[(nucleus, cytoplasm), ...]`` masks ((h, w) bool) of the cells of a working-size image ``rgb``.

    Raises
    ------
    NoCellFoundError
        A uniform image, or no plausible nucleus.
    """
    h, w = rgb.shape[:2]
    if int(rgb.max()) - int(rgb.min()) < 12:
        raise no_cell("the image is uniform")
    lab = rgb_to_lab(rgb)
    r_img = max(1, int(round(min(h, w) / 180)))
    if mode == "cutout":
        return cutout_cell(rgb, lab, r_img, sample=sample, min_contrast=min_contrast,
                           min_nucleus_frac=min_nucleus_frac)
    nucs, all_nuclei, bg_colour = find_nuclei(lab, r_img, mode, n_clusters=n_clusters, sample=sample,
                                              min_contrast=min_contrast, min_nucleus_frac=min_nucleus_frac)
    return [(nuc, find_cytoplasm(lab, nuc, all_nuclei, bg_colour, sample, max_cell_ratio, r_img,
                                 method=cytoplasm_method)) for nuc in nucs]


def _at_full_size(rgb, cells_small, scale, mode) -> Segmentation:
    """Resize working-size masks back to the image, sort the cells by distance to the centre, label them."""
    h, w = rgb.shape[:2]
    cells = []
    for nuc, cyt in cells_small:
        if scale > 1:
            cell = nuc | cyt
            nuc = cv2.resize(as_u8(nuc) * 255, (w, h), interpolation=cv2.INTER_LINEAR) > 127
            cell = (cv2.resize(as_u8(cell) * 255, (w, h), interpolation=cv2.INTER_LINEAR) > 127) | nuc
            cyt = cell & ~nuc
            if not nuc.any():
                continue
        cells.append(_make_cell(nuc, cyt))
    if not cells:
        raise no_cell("the nucleus vanished when the masks were resized to the image")
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
