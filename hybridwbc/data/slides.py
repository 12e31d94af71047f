"""Seeded synthetic smear fields (slides) whose white cells are known by construction.

A field is a light background covered with red cells (discs with a pale centre) and
platelets (small purple dots, which are not white cells), over which white cells are
pasted. Each white cell is a :func:`~hybridwbc.data.synthetic.draw_cell` cell drawn at
``cell_size`` on black and pasted through its exact mask, so a crop of side ``cell_size``
centred on it looks like the training cells :func:`~hybridwbc.data.synthetic.generate_dataset`
writes at that size. Some white cells can be placed touching another one (``touching``)
or cut by the field border (``border``); :class:`TrueCell` records which, with the cell's
class, centroid, box and mask area, so detection and counts can be checked exactly.

:func:`generate_slides` writes slides as ``root/<slide>/<field>.png`` with ``root/truth.csv``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from hybridwbc.data.synthetic import draw_cell, profile_for

__all__ = ["TrueCell", "SyntheticField", "draw_field", "generate_slides", "TRUTH_COLUMNS"]

TRUTH_COLUMNS = ["slide", "field", "path", "label", "row", "col", "row0", "col0", "row1", "col1", "area",
                 "border", "touching"]
_BACKGROUND = np.array([232.0, 222.0, 214.0])
_RED = np.array([222.0, 150.0, 150.0])
_PLATELET = np.array([150.0, 90.0, 175.0])


@dataclass(frozen=True)
class TrueCell:
    """One white cell of a synthetic field.

    Attributes
    ----------
    label : str
    row, col : float
        Centroid of the visible cell mask (pixels).
    bbox : tuple of 4 int
        ``(row0, col0, row1, col1)``, half-open box of the visible cell.
    area : int
        Visible cell pixels.
    border : bool
        The cell is cut by the field border.
    touching : bool
        The cell's mask comes within 2 pixels of another white cell's mask.
    """

    label: str
    row: float
    col: float
    bbox: tuple
    area: int
    border: bool = False
    touching: bool = False


@dataclass
class SyntheticField:
    """A field image, its white cells, and their label map.

    Attributes
    ----------
    image : ndarray of shape (H, W, 3), dtype uint8
    cells : list of TrueCell
    labels : ndarray of shape (H, W), dtype int32
        0 elsewhere, ``i + 1`` on the visible pixels of ``cells[i]``.
    """

    image: np.ndarray
    cells: list
    labels: np.ndarray


def _red_cells(rng, img, n, radius):
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = radius * rng.uniform(0.85, 1.15)
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        img[d2 <= r * r] = _RED + rng.normal(0, 4, 3)
        img[d2 <= (0.45 * r) ** 2] = 0.5 * (_RED + _BACKGROUND)  # central pallor


def _platelets(rng, img, n, radius):
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius] = _PLATELET + rng.normal(0, 5, 3)


def _centres(rng, n, shape, radii, n_touching, n_border, margin, inner):
    """Centres for ``n`` cells: the first ``n_border`` cut by the border, then ``n_touching`` pairs that touch.

    ``radii`` bound each cell (for keeping cells apart), ``inner`` are their equivalent radii (a touching pair is
    placed at 0.92 times the sum of theirs, so the two masks meet).
    """
    h, w = shape
    out: list[tuple[float, float]] = []

    def free(cy, cx, r, skip=None):
        return all(k == skip or np.hypot(cy - y, cx - x) > r + radii[k] + margin for k, (y, x) in enumerate(out))

    for i in range(n):
        r = radii[i]
        for _ in range(2000):
            if i < n_border:
                side = rng.integers(4)
                along = rng.uniform(r + margin, (w if side < 2 else h) - r - margin)
                off = rng.uniform(0.2, 0.5) * r
                cy, cx = [(off, along), (h - off, along), (along, off), (along, w - off)][side]
            elif n_border <= i < n_border + 2 * n_touching and (i - n_border) % 2 == 1:
                ang = rng.uniform(0, 2 * np.pi)
                py, px = out[i - 1]
                d = 0.92 * (inner[i] + inner[i - 1])
                cy, cx = py + d * np.sin(ang), px + d * np.cos(ang)
                if not (r + 2 <= cy <= h - r - 2 and r + 2 <= cx <= w - r - 2 and free(cy, cx, r, skip=i - 1)):
                    continue
                break
            else:
                cy, cx = rng.uniform(r + 2, h - r - 2), rng.uniform(r + 2, w - r - 2)
            if free(cy, cx, r):
                break
        else:
            raise ValueError(f"cannot place {n} white cells without overlap in a {h}x{w} field; "
                             "use fewer cells, a larger field or a smaller cell_size.")
        out.append((cy, cx))
    return out


def _paste(img, drawn, centres, cell_size) -> np.ndarray:
    """Paste each drawn cell through its mask at its centre; the label map ((H, W) int32) of what shows."""
    h, w = img.shape[:2]
    lab_map = np.zeros((h, w), np.int32)
    half = cell_size // 2
    for i, (d, (cy, cx)) in enumerate(zip(drawn, centres)):
        r0, c0 = int(round(cy)) - half, int(round(cx)) - half
        ys, xs = np.nonzero(d.cell)
        ys, xs = ys + r0, xs + c0
        keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        img[ys[keep], xs[keep]] = d.image[ys[keep] - r0, xs[keep] - c0]
        lab_map[ys[keep], xs[keep]] = i + 1
    return lab_map


def draw_field(rng: np.random.Generator, labels: Sequence[str], shape: tuple = (480, 640), cell_size: int = 160,
               n_red: int = 60, n_platelets: int = 6, n_touching: int = 0, n_border: int = 0,
               classes: Sequence[str] | None = None) -> SyntheticField:
    """Draw one smear field holding one white cell per entry of ``labels``.

    Parameters
    ----------
    rng : numpy.random.Generator
    labels : sequence of str
        Class of each white cell (profiles from :func:`~hybridwbc.data.synthetic.profile_for`).
    shape : (H, W), default (480, 640)
    cell_size : int, default 160
        Side of the square each white cell is drawn in (its training-crop size).
    n_red, n_platelets : int
        Red cells (radius ``0.17 * cell_size``) and platelets (radius ``0.03 * cell_size``), under the white cells.
    n_touching : int
        Pairs of white cells placed touching (after the border cells).
    n_border : int
        White cells, first in ``labels``, placed cut by the field border.
    classes : sequence of str, optional
        The class list giving each label's profile index (default: sorted unique ``labels``).

    Returns
    -------
    SyntheticField

    Raises
    ------
    ValueError
        If the cells cannot be placed, or ``n_border + 2 * n_touching`` exceeds the number of cells.
    """
    labels = list(labels)
    if n_border + 2 * n_touching > len(labels):
        raise ValueError(f"n_border + 2 * n_touching = {n_border + 2 * n_touching} exceeds the {len(labels)} "
                         "white cells asked for; ask for more labels.")
    classes = list(classes) if classes is not None else sorted(set(labels))
    h, w = shape
    img = np.empty((h, w, 3), np.float64)
    img[:] = _BACKGROUND + rng.normal(0, 3, 3)
    _red_cells(rng, img, n_red, 0.17 * cell_size)
    _platelets(rng, img, n_platelets, max(2.0, 0.03 * cell_size))
    drawn = [draw_cell(rng, profile_for(lab, classes.index(lab) if lab in classes else 0), size=cell_size,
                       background="black") for lab in labels]
    inner = [float(np.sqrt(d.cell.sum() / np.pi)) for d in drawn]
    radii = [1.15 * r + 2 for r in inner]
    centres = _centres(rng, len(labels), shape, radii, n_touching, n_border, margin=6.0, inner=inner)
    lab_map = _paste(img, drawn, centres, cell_size)
    image = np.clip(np.rint(img + rng.normal(0, 2.0, img.shape)), 0, 255).astype(np.uint8)
    cells = []
    for i, lab in enumerate(labels):
        ys, xs = np.nonzero(lab_map == i + 1)
        box = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
        border = box[0] == 0 or box[1] == 0 or box[2] == h or box[3] == w
        near = lab_map[cv2.dilate((lab_map == i + 1).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0]
        touching = bool(np.any((near > 0) & (near != i + 1)))
        cells.append(TrueCell(lab, float(ys.mean()), float(xs.mean()), box, int(ys.size), bool(border), touching))
    return SyntheticField(image=image, cells=cells, labels=lab_map)


def generate_slides(root: str | os.PathLike, slides: dict, seed: int = 0, **field_kw) -> Path:
    """Write synthetic slides as ``root/<slide>/field_<k>.png`` and their truth as ``root/truth.csv``.

    Parameters
    ----------
    root : path-like
    slides : dict of str to list of list of str
        Slide name -> one list of white-cell labels per field.
    seed : int, default 0
    **field_kw
        Passed to :func:`draw_field` (``shape``, ``cell_size``, ``n_touching``, ``n_border``, ...).

    Returns
    -------
    pathlib.Path
        ``root / "truth.csv"``: one row per white cell with :data:`TRUTH_COLUMNS`
        (``path`` relative to ``root``).
    """
    from PIL import Image

    root = Path(root)
    classes = sorted({lab for fields in slides.values() for f in fields for lab in f})
    rows = []
    for s, (slide, fields) in enumerate(sorted(slides.items())):
        (root / slide).mkdir(parents=True, exist_ok=True)
        for k, labels in enumerate(fields):
            rng = np.random.default_rng([seed, s, k])
            fld = draw_field(rng, labels, classes=classes, **field_kw)
            rel = f"{slide}/field_{k:03d}.png"
            Image.fromarray(fld.image).save(root / rel)
            for c in fld.cells:
                d = asdict(c)
                box = d.pop("bbox")
                rows.append({"slide": slide, "field": f"field_{k:03d}", "path": rel, **d,
                             "row0": box[0], "col0": box[1], "row1": box[2], "col1": box[3]})
    truth = root / "truth.csv"
    with open(truth, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=TRUTH_COLUMNS)
        writer.writeheader()
        writer.writerows({k: r[k] for k in TRUTH_COLUMNS} for r in rows)
    return truth
