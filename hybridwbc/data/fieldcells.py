"""Typed white cells cut from another lab's smear fields: BCCD fields with VOC boxes and a type per field.

BCCD (``bccd/``) gives, per 640x480 field, VOC boxes of the white cells (``Annotations/*.xml``) and, in
``labels.csv`` (``image,category``), the white-cell type of the field. :func:`typed_field_cells` finds
the white cells of each typed field with the smear-field locator
(:func:`~hybridwbc.segment.locate.locate_cells`), keeps each located cell that matches a reference WBC
box (IoU >= ``min_iou``), and cuts it out centred as PBC's crops are (:func:`~hybridwbc.segment.locate.crop_cell`,
the cell spanning ``cell_fraction`` of the side). The crops are written once as lossless PNGs under a
folder named by the settings (the segmenter's included) and files named by the field image's content,
atomically; the field is the cell's ``subject``, so splits keep a field's
cells together. Every typed field that yields no cell is a coverage row with its reason, never dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from hybridwbc.data.atomic import atomic_path
from hybridwbc.data.manifest import MANIFEST_COLUMNS, file_sha256
from hybridwbc.errors import DataLayoutError, ImageReadError

__all__ = ["FIELDCELLS_VERSION", "wbc_boxes", "typed_field_cells"]

#: Version of the crop recipe (part of the crop folder's name: a change re-cuts every crop).
FIELDCELLS_VERSION = 1


def wbc_boxes(xml_path: str | os.PathLike) -> list[tuple[float, float, float, float]]:
    """``(xmin, ymin, xmax, ymax)`` of every ``WBC`` object of a VOC annotation file, in pixels.

    Raises
    ------
    DataLayoutError
        If the file cannot be read or parsed as XML.
    """
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise DataLayoutError(f"Cannot read VOC annotation {str(xml_path)!r}: {exc}. Expected a PASCAL VOC "
                              "XML file with <object><name>WBC</name><bndbox>...") from None
    out = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if (obj.findtext("name") or "").strip().upper() != "WBC" or bb is None:
            continue
        box = tuple(float(bb.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
        if all(np.isfinite(box)) and box[2] > box[0] and box[3] > box[1]:  # a box with a missing or empty side: none
            out.append(box)
    return out


def _cell_box(cell) -> tuple:
    r0, c0, r1, c1 = cell.bbox
    return (c0, r0, c1, r1)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cv2.imwrite failed for {tmp}")


def _field_cells(image, boxes, segmenter, min_iou: float) -> list:
    """Located cells matched one-to-one to the reference boxes (``[(cell, iou)]``)."""
    from hybridwbc.evaluate.detection import box_iou, match_boxes
    from hybridwbc.segment.locate import locate_cells

    cells = locate_cells(image, segmenter)
    pairs = match_boxes([_cell_box(c) for c in cells], boxes, threshold=min_iou)
    return [(cells[i], box_iou(_cell_box(cells[i]), boxes[j])) for i, j in sorted(pairs)]


def typed_field_cells(root: str | os.PathLike, cache_dir: str | os.PathLike, side: int = 360,
                      cell_fraction: float | None = None, min_iou: float = 0.3, progress: bool = False,
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cut the typed white cells of every field listed in ``root/labels.csv``.

    Parameters
    ----------
    root : path-like
        The BCCD folder (``JPEGImages/``, ``Annotations/``, ``labels.csv``).
    cache_dir : path-like
        The crops go to ``<cache_dir>/field_cells/<settings hash>/``.
    side : int, default 360
        Side of each crop (PBC's crops are 360 x 363).
    cell_fraction : float, optional
        Share of the crop's side the cell spans (default: PBC's, :data:`~hybridwbc.segment.locate.PBC_CELL_FRACTION`).
    min_iou : float, default 0.3
        A located cell counts as a reference WBC box's cell at this IoU or more.
    progress : bool

    Returns
    -------
    manifest : DataFrame
        :data:`~hybridwbc.data.manifest.MANIFEST_COLUMNS` (``subject`` is the field, ``annotation`` the
        match IoU), one row per kept cell, ordered by field.
    coverage : DataFrame
        ``field``, ``label``, ``n_boxes``, ``n_cells``, ``reason`` (``""`` where cells were kept) of every
        typed field.

    Raises
    ------
    DataLayoutError
        If ``labels.csv`` is missing or has no ``image`` / ``category`` columns.
    """
    from tqdm.auto import tqdm

    from hybridwbc.data.io import read_image
    from hybridwbc.segment.locate import PBC_CELL_FRACTION, crop_cell
    from hybridwbc.segment.segmenter import Segmenter

    root = Path(os.fsdecode(root))
    labels_csv = root / "labels.csv"
    if not labels_csv.is_file():
        raise DataLayoutError(f"No labels.csv in {str(root)!r}. Expected the BCCD folder with labels.csv "
                              "(image,category: one white-cell type per field). Fix the target data root.")
    labels = pd.read_csv(labels_csv, dtype=str)
    if not {"image", "category"} <= set(labels.columns):
        raise DataLayoutError(f"{str(labels_csv)!r} has columns {list(labels.columns)}; expected image,category.")
    fraction = PBC_CELL_FRACTION if cell_fraction is None else float(cell_fraction)
    segmenter = Segmenter()
    settings = json.dumps({"v": FIELDCELLS_VERSION, "side": int(side), "fraction": fraction,
                           "min_iou": float(min_iou), "segment": segmenter.settings()}, sort_keys=True, default=str)
    out = Path(os.fsdecode(cache_dir)) / "field_cells" / hashlib.sha256(settings.encode()).hexdigest()[:12]
    out.mkdir(parents=True, exist_ok=True)
    rows, cover = [], []
    for field, label in tqdm(list(zip(labels["image"], labels["category"])), disable=not progress,
                             desc="field cells", unit="field"):
        jpg, xml = root / "JPEGImages" / f"{field}.jpg", root / "Annotations" / f"{field}.xml"
        reason, kept, image = "", [], None
        try:
            boxes = wbc_boxes(xml)
            if not boxes:
                reason = "no WBC box in the annotation"
            else:
                image = read_image(jpg)
                kept = _field_cells(image, boxes, segmenter, min_iou)
                reason = "" if kept else f"no located cell matches a WBC box at IoU >= {min_iou}"
        except (DataLayoutError, ImageReadError) as exc:
            boxes, reason = [], f"{type(exc).__name__}: {exc}"
        source = file_sha256(jpg)[:12]  # the crop's name holds its field image's content: another root, another crop
        for k, (cell, overlap) in enumerate(kept):
            path = out / f"{field}_{source}_{k}.png"
            if not path.is_file():
                _write_png(path, crop_cell(image, cell, side, "cell", fraction))
            rows.append({"path": str(path), "label": str(label), "subject": str(field), "dataset": "bccd_cells",
                         "sha256": file_sha256(path), "fine_label": "", "annotation": f"{overlap:.3f}"})
        cover.append({"field": field, "label": label, "n_boxes": len(boxes), "n_cells": len(kept), "reason": reason})
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS), pd.DataFrame(cover)
