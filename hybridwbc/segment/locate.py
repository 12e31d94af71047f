"""Locate every white cell of a smear field, flag it, outline it and crop it as the model saw its training cells.

Pure functions on ndarrays. :func:`locate_cells` runs the field-mode segmentation
(:class:`~hybridwbc.segment.segmenter.Segmenter` with ``mode="field"``: the nucleus is the
most stained colour cluster, so red cells, which have no nucleus, are never candidates; lobes
of one nucleus are grouped; each cell's cytoplasm is grown from its nucleus, and red cells
touching it through a neck are cut off). On top of that it

* splits a candidate that holds several white cells (touching cells whose nuclei the segmentation
  joined, or red cells its cytoplasm grew into): :func:`split_cell`;
* drops the red-cell-coloured pixels a cell's cytoplasm grew into (:func:`trim_red`);
* shares the pixels that touching cells both claim along the strongest edge between them
  (:func:`part_touching`);
* rejects platelets and debris: a candidate whose nucleus area is below ``min_nucleus_ratio``
  times the field's median nucleus area (and below ``min_nucleus_px``);
* flags a cell cut by the field border (``border``) and a cell whose mask touches another
  white cell's mask within ``touch_px`` pixels (``overlap``);
* records the cell's and nucleus's outlines as polygons (``(x, y)`` pixel vertices), its box,
  centroid and areas.

:func:`crop_cell` cuts a square window centred on the cell's centroid and resizes it to the
model's input side: the window is either a fixed side in field pixels (a known magnification)
or the cell's own equivalent diameter divided by ``cell_fraction`` (the share of a training
crop's side a cell spans: 0.37 is the median over PBC's five white-cell types, which range from
0.27 for lymphocytes to 0.43 for monocytes). Beyond the field the window is filled with the
field's background colour (the median of its lightest tenth of pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hybridwbc.errors import ConfigError, NoCellFoundError
from hybridwbc.segment.colour import rgb_to_lab
from hybridwbc.segment.morphology import as_u8, components, dilate
from hybridwbc.segment.segmenter import Segmenter

__all__ = ["LocatedCell", "locate_cells", "split_cell", "trim_red", "part_touching", "crop_cell", "outline",
           "background_colour",
           "PBC_CELL_FRACTION"]

#: Median share of a PBC crop's side spanned by a white cell's equivalent diameter.
PBC_CELL_FRACTION = 0.37


@dataclass(frozen=True)
class LocatedCell:
    """One white cell found in a field.

    Attributes
    ----------
    bbox : tuple of 4 int
        ``(row0, col0, row1, col1)``, half-open box of the cell (nucleus and cytoplasm).
    centroid : tuple of 2 float
        ``(row, col)`` of the cell mask.
    area, nucleus_area : int
        Pixels of the cell and of its nucleus.
    border : bool
        The cell touches the field border (it is cut by it).
    overlap : bool
        The cell touches or overlaps another white cell.
    polygon, nucleus_polygon : list of (float, float)
        Outer outlines of the cell and of its largest nucleus part, ``(x, y)`` = (column, row) vertices.
    """

    bbox: tuple
    centroid: tuple
    area: int
    nucleus_area: int
    border: bool
    overlap: bool
    polygon: list
    nucleus_polygon: list

    @property
    def diameter(self) -> float:
        """Equivalent diameter ``2 sqrt(area / pi)`` in pixels."""
        return float(2.0 * np.sqrt(self.area / np.pi))


def outline(mask: np.ndarray, tolerance: float = 1.0) -> list:
    """Outer outline of the largest component of ``mask`` ((H, W) bool) as ``[(x, y), ...]`` (closed implicitly).

    ``tolerance`` is the Douglas-Peucker simplification distance in pixels; an empty mask gives ``[]``.
    """
    contours, _ = cv2.findContours(as_u8(mask), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    c = max(contours, key=cv2.contourArea)
    c = cv2.approxPolyDP(c, tolerance, True) if tolerance > 0 else c
    return [(float(p[0][0]), float(p[0][1])) for p in c]


def split_cell(nucleus: np.ndarray, cell: np.ndarray, h: float = 0.2, min_share: float = 0.08) -> list:
    """Split a segmented cell into the disc-like parts that hold a nucleus: ``[(nucleus, cytoplasm), ...]``.

    The distance transform of ``cell``, in units of its equivalent radius ``r = sqrt(|cell| / pi)``
    (quantised to 0.01 r), has one regional maximum per disc-like part; its h-maxima (dynamic at least
    ``h`` r: the regional maxima of ``f`` reconstructed from ``f - h``) seed a watershed of the negated
    transform inside ``cell``.
    A part whose nucleus pixels are at least ``min_share`` of the part and a tenth of the nucleus is a
    white cell; the other parts (red cells the cytoplasm grew into) are dropped. One disc gives the cell
    back unchanged; a part's nucleus pieces stay together, so a lobed nucleus is never split.

    ``nucleus`` and ``cell`` are (H, W) bool masks, ``cell`` a superset of ``nucleus``; returns a list of at
    least one ``(nucleus, cytoplasm)`` pair of disjoint (H, W) bool masks.
    """
    from skimage.morphology import local_maxima, reconstruction
    from skimage.segmentation import watershed

    rows = np.flatnonzero(cell.any(1))
    cols = np.flatnonzero(cell.any(0))
    r0, r1, c0, c1 = max(0, rows[0] - 1), rows[-1] + 2, max(0, cols[0] - 1), cols[-1] + 2
    win, win_nuc = cell[r0:r1, c0:c1], nucleus[r0:r1, c0:c1]
    r = max(1.0, float(np.sqrt(win.sum() / np.pi)))
    dist = cv2.distanceTransform(as_u8(win), cv2.DIST_L2, 5) / r
    f = np.clip(np.rint(100.0 * dist), 0, 255).astype(np.uint8)
    depth = max(1, int(round(100.0 * h)))
    dome = reconstruction(np.maximum(f.astype(np.int16) - depth, 0), f.astype(np.int16))  # f lowered by depth
    n_seeds, markers = cv2.connectedComponents(as_u8(local_maxima(dome) & win), connectivity=8)
    if n_seeds <= 2:
        return [(nucleus, cell & ~nucleus)]
    parts = watershed(-dist, markers, mask=win)
    area = np.bincount(parts.ravel(), minlength=n_seeds)
    hit = np.bincount(parts[win_nuc], minlength=n_seeds)
    total = max(1, int(win_nuc.sum()))
    keep = [b for b in range(1, n_seeds) if hit[b] >= min_share * area[b] and hit[b] >= 0.1 * total]
    if len(keep) <= 1:
        part = np.isin(parts, keep) | win_nuc if keep else win
        n, cc, _, _ = components(part)
        votes = np.bincount(cc[win_nuc], minlength=n)
        votes[0] = 0
        out = np.zeros_like(cell)
        out[r0:r1, c0:c1] = (cc == int(np.argmax(votes))) | win_nuc
        return [(nucleus, out & ~nucleus)]
    owner = parts.copy()  # nucleus pixels in dropped parts go to the nearest kept part
    dropped = ~np.isin(parts, keep)
    if (dropped & win_nuc).any():
        owner = watershed(-dist, np.where(np.isin(parts, keep), parts, 0), mask=win)
    out = []
    for b in keep:
        part = np.zeros_like(cell)
        part[r0:r1, c0:c1] = (np.isin(parts, [b]) & win) | ((owner == b) & win_nuc)
        out.append((nucleus & part, part & ~nucleus))
    return out


def trim_red(lab: np.ndarray, cells: list, min_delta_e: float = 12.0, ring: float = 0.25) -> list:
    """Drop from each cell the red-cell-coloured pixels its cytoplasm grew into.

    The red-cell colour is the darker of two k-means clusters (Lab) of the pixels outside every cell (the
    lighter one is the background). A cell's own cytoplasm colour is the median Lab colour of its pixels
    within ``ring`` nucleus radii of its nucleus. When the two differ by at least ``min_delta_e`` (CIE76),
    the cell keeps the pixels nearer its own colour than the red-cell colour, then the component holding
    its nucleus, with holes filled. A cell whose cytoplasm looks like red cells (e.g. eosinophils) is kept
    as it is.

    Parameters
    ----------
    lab : ndarray of shape (H, W, 3), float32
    cells : list of (ndarray, ndarray)
        ``(nucleus, cell)`` masks, (H, W) bool each.

    Returns
    -------
    list of (ndarray, ndarray)
    """
    from hybridwbc.segment.colour import kmeans, stride
    from hybridwbc.segment.morphology import fill_holes

    outside = np.ones(lab.shape[:2], bool)
    for _, c in cells:
        outside &= ~c
    px = lab[outside]
    if px.shape[0] < 64:
        return cells
    centres, _ = kmeans(px[:: stride(px.shape[0], 4096)], 2)
    red = centres[int(np.argmin(centres[:, 0]))]
    out = []
    for nuc, cell in cells:
        rn = max(1, int(round(ring * np.sqrt(nuc.sum() / np.pi))))
        near = cell & ~nuc & dilate(nuc, rn)
        if near.sum() < 8:
            out.append((nuc, cell))
            continue
        own = np.median(lab[near], axis=0)
        if float(np.linalg.norm(own - red)) < min_delta_e:
            out.append((nuc, cell))
            continue
        pix = lab[cell]
        closer = np.linalg.norm(pix - own, axis=1) <= np.linalg.norm(pix - red, axis=1)
        keep = np.zeros_like(cell)
        keep[cell] = closer
        keep |= nuc
        n, cc, _, _ = components(keep)
        votes = np.bincount(cc[nuc], minlength=n)
        votes[0] = 0
        out.append((nuc, fill_holes(cc == int(np.argmax(votes))) & cell | nuc))
    return out


def part_touching(cells: list) -> list:
    """Share the pixels that touching or overlapping cells both claim: a watershed from their nuclei.

    Cells whose masks meet are grouped; inside each group's union, a watershed of the negated distance
    transform of the union, seeded by each cell's nucleus, gives every pixel to one cell, so round cells
    that touch are cut along the neck between them.

    Parameters
    ----------
    cells : list of (ndarray, ndarray)
        ``(nucleus, cell)`` masks, (H, W) bool each.

    Returns
    -------
    list of (ndarray, ndarray)
        The same cells, with disjoint cell masks.
    """
    from skimage.segmentation import watershed

    n = len(cells)
    grown = [dilate(c, 1) for _, c in cells]
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if np.any(grown[i] & cells[j][1]):
                parent[root(j)] = root(i)
    out = list(cells)
    for g in {root(i) for i in range(n)}:
        members = [i for i in range(n) if root(i) == g]
        if len(members) < 2:
            continue
        union = np.zeros_like(cells[0][1])
        markers = np.zeros(union.shape, np.int32)
        for i in members:
            union |= cells[i][1]
        for k, i in enumerate(members):
            markers[cells[i][0]] = k + 1
        parts = watershed(-cv2.distanceTransform(as_u8(union), cv2.DIST_L2, 5), markers, mask=union)
        for k, i in enumerate(members):
            out[i] = (cells[i][0] & (parts == k + 1), parts == k + 1)
    return out


def locate_cells(image: np.ndarray, segmenter: Segmenter | None = None, min_nucleus_ratio: float = 0.2,
                 min_nucleus_px: int = 0, touch_px: int = 2) -> list:
    """Every white cell of a field.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), dtype uint8
    segmenter : Segmenter, optional
        Its settings are used with ``mode="field"`` (default: the default settings).
    min_nucleus_ratio : float, default 0.2
        A candidate whose nucleus is smaller than this share of the field's median nucleus area, and
        smaller than ``min_nucleus_px``, is dropped (platelet clumps, debris).
    min_nucleus_px : int, default 0
    touch_px : int, default 2
        Two cells whose masks come within this many pixels are both flagged ``overlap``.

    Returns
    -------
    list of LocatedCell
        Ordered top to bottom, then left to right (by centroid); ``[]`` when the field holds no
        plausible nucleus.
    """
    from dataclasses import replace

    seg = replace(segmenter or Segmenter(), mode="field")
    try:
        found = seg.segment(image)
    except NoCellFoundError:
        return []
    pairs = [p for c in found.cells for p in split_cell(c.nucleus, c.cell)]
    cells = [(nuc, nuc | cyt) for nuc, cyt in pairs if nuc.any()]
    cells = trim_red(rgb_to_lab(found.image), cells)
    if len(cells) > 1:
        cells = [(nuc, cell) for nuc, cell in part_touching(cells) if nuc.any()]
    areas = np.array([int(nuc.sum()) for nuc, _ in cells], float)
    floor = min_nucleus_ratio * float(np.median(areas))
    keep = [i for i, a in enumerate(areas) if a >= floor or a >= max(1, min_nucleus_px)]
    labels = np.zeros(found.labels.shape, np.int32)
    for i in keep:
        labels[cells[i][1] & (labels == 0)] = i + 1
    h, w = labels.shape
    out = []
    for i in keep:
        nuc, mask = cells[i]
        near = labels[dilate(mask, max(1, touch_px))]
        overlap = bool(np.any((near > 0) & (near != i + 1)))
        ys, xs = np.nonzero(mask)
        bbox = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
        border = bbox[0] == 0 or bbox[1] == 0 or bbox[2] == h or bbox[3] == w
        out.append(LocatedCell(bbox=bbox, centroid=(float(ys.mean()), float(xs.mean())), area=int(ys.size),
                               nucleus_area=int(areas[i]), border=bool(border), overlap=overlap,
                               polygon=outline(mask), nucleus_polygon=outline(nuc)))
    out.sort(key=lambda c: (round(c.centroid[0]), c.centroid[1]))
    return out


def background_colour(image: np.ndarray) -> tuple:
    """Median RGB of the lightest tenth of the pixels of ``image`` ((H, W, 3) uint8): the slide's background."""
    flat = image.reshape(-1, 3)
    light = flat.sum(1)
    top = flat[light >= np.quantile(light, 0.9)]
    return tuple(int(v) for v in np.median(top, axis=0))


def crop_cell(image: np.ndarray, cell: LocatedCell, out_side: int, window: int | str = "cell",
              cell_fraction: float = PBC_CELL_FRACTION, fill: tuple | None = None) -> np.ndarray:
    """A square crop centred on ``cell``, resized to ``out_side``: what the cell model reads.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), dtype uint8
    cell : LocatedCell
    out_side : int
        Side of the returned crop (the model's training image side).
    window : int or "cell", default "cell"
        Side of the window cut from the field, in field pixels; ``"cell"``: ``cell.diameter / cell_fraction``.
    cell_fraction : float, default :data:`PBC_CELL_FRACTION`
    fill : tuple of 3 int, optional
        Colour beyond the field (default :func:`background_colour`).

    Returns
    -------
    ndarray of shape (out_side, out_side, 3), dtype uint8

    Raises
    ------
    ConfigError
        If ``out_side`` or ``window`` is not a positive size, or ``cell_fraction`` is not in (0, 1].
    """
    if window == "cell":
        if not 0 < cell_fraction <= 1:
            raise ConfigError(f"cell_fraction must be in (0, 1]; received {cell_fraction!r}. "
                              f"Fix: the share of a training crop's side a cell spans (PBC: {PBC_CELL_FRACTION}).")
        side = int(round(cell.diameter / cell_fraction))
    else:
        side = int(window) if isinstance(window, (int, np.integer)) or str(window).isdigit() else 0
    if side < 1 or int(out_side) < 1:
        raise ConfigError(f"crop window and out_side must be positive pixel sizes or window='cell'; received "
                          f"window={window!r}, out_side={out_side!r}.")
    fill = background_colour(image) if fill is None else fill
    r0 = int(round(cell.centroid[0] - side / 2))
    c0 = int(round(cell.centroid[1] - side / 2))
    h, w = image.shape[:2]
    crop = np.empty((side, side, 3), np.uint8)
    crop[:] = np.asarray(fill, np.uint8)
    y0, x0, y1, x1 = max(0, r0), max(0, c0), min(h, r0 + side), min(w, c0 + side)
    if y1 > y0 and x1 > x0:
        crop[y0 - r0:y1 - r0, x0 - c0:x1 - c0] = image[y0:y1, x0:x1]
    if side == out_side:
        return crop
    interp = cv2.INTER_AREA if side > out_side else cv2.INTER_LINEAR
    return cv2.resize(crop, (int(out_side), int(out_side)), interpolation=interp)
