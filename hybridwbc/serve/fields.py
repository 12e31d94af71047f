"""One smear field at a time: read it, locate its white cells, crop them for the model, classify the crops.

:func:`process_field` is what a worker process does with one field file: it never raises for a
bad file (the field becomes an error record), and it returns only small things (cell records,
PNG-encoded crops, JPEG thumbnails), so fields stream through a batch in bounded memory.
:func:`classify_crops` hands the crops of a batch of fields to a saved model, a
:class:`~hybridwbc.serve.pipeline.WBCPipeline` or an ``mlflow.pyfunc`` model, as encoded images.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["CropSettings", "process_field", "classify_crops", "thumbnail", "encode"]


@dataclass(frozen=True)
class CropSettings:
    """How a field is searched and its cells cropped (see :mod:`hybridwbc.segment.locate`).

    Attributes
    ----------
    crop : int, default 360
        Side of the crop the model reads (its training images' side: PBC crops are 360 px).
    window : int or "cell", default "cell"
        Side of the window cut from the field (field pixels), or ``"cell"``: the cell's
        equivalent diameter / ``cell_fraction``.
    cell_fraction : float, default 0.37
    max_pixels : int, optional
        Largest field decoded (``width * height``); default that of :func:`hybridwbc.data.io.read_image`.
    field_thumb : int, default 0
        Width of the field's JPEG thumbnail for the report; 0: none.
    thumb : int, default 96
        Side of each cell's JPEG thumbnail for the report.
    min_nucleus_frac : float, default 0.002
        The segmentation's smallest nucleus, as a share of the field's area (field mode doubles it): lower it
        for fields at a lower magnification (:class:`~hybridwbc.segment.segmenter.Segmenter`).
    """

    crop: int = 360
    window: int | str = "cell"
    cell_fraction: float = 0.37
    max_pixels: int | None = None
    field_thumb: int = 0
    thumb: int = 96
    min_nucleus_frac: float = 0.002


def encode(image: np.ndarray, fmt: str = "PNG", quality: int = 85) -> bytes:
    """``image`` ((H, W, 3) uint8) encoded as PNG or JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def thumbnail(image: np.ndarray, cell, side: int = 96) -> np.ndarray:
    """A ``(side, side, 3) uint8`` view of ``cell`` with its outline (black) and nucleus outline (white) drawn."""
    import cv2

    from hybridwbc.segment.locate import crop_cell

    r0, c0, r1, c1 = cell.bbox
    win = max(8, int(round(1.25 * max(r1 - r0, c1 - c0))))
    out = crop_cell(image, cell, side, window=win).copy()
    top = int(round(cell.centroid[0] - win / 2))
    left = int(round(cell.centroid[1] - win / 2))
    k = side / win
    for poly, colour in ((cell.polygon, (20, 20, 20)), (cell.nucleus_polygon, (255, 255, 255))):
        if len(poly) >= 2:
            pts = np.array([[(x - left) * k, (y - top) * k] for x, y in poly], np.int32)
            cv2.polylines(out, [pts], True, colour, 1, lineType=cv2.LINE_AA)
    return out


def _field_thumb(image: np.ndarray, width: int) -> str:
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, width / w)
    small = cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    return base64.b64encode(encode(small, "JPEG", 80)).decode("ascii")


def process_field(path: str, settings: CropSettings) -> dict:
    """Read, locate and crop one field; never raises an ``Exception``.

    Returns
    -------
    dict
        ``status`` (``ok`` or ``error``), ``reason``, ``height``, ``width``, ``cells`` (list of
        :class:`~hybridwbc.segment.locate.LocatedCell`), ``crops`` (PNG bytes, one per cell, at
        ``settings.crop``), ``thumbs`` (base64 JPEG, one per cell) and ``field_thumb`` (base64 JPEG or "").
    """
    from hybridwbc.data.io import DEFAULT_MAX_PIXELS, read_image
    from hybridwbc.segment.locate import background_colour, crop_cell, locate_cells
    from hybridwbc.segment.segmenter import Segmenter

    out = {"status": "ok", "reason": "", "height": 0, "width": 0, "cells": [], "crops": [], "thumbs": [],
           "field_thumb": ""}
    try:
        image = read_image(path, max_pixels=settings.max_pixels or DEFAULT_MAX_PIXELS)
        out["height"], out["width"] = int(image.shape[0]), int(image.shape[1])
        cells = locate_cells(image, Segmenter(min_nucleus_frac=settings.min_nucleus_frac))
        fill = background_colour(image)
        out["crops"] = [encode(crop_cell(image, c, settings.crop, settings.window, settings.cell_fraction, fill))
                        for c in cells]
        out["thumbs"] = [base64.b64encode(encode(thumbnail(image, c, settings.thumb), "JPEG")).decode("ascii")
                         for c in cells]
        out["cells"] = cells
        if settings.field_thumb:
            out["field_thumb"] = _field_thumb(image, settings.field_thumb)
    except Exception as exc:  # noqa: BLE001 - one bad field never stops the batch
        out.update(status="error", reason=f"{type(exc).__name__}: {exc}", cells=[], crops=[], thumbs=[])
    return out


def classify_crops(model, crops: list, names: list, n_jobs: int = 1, min_confidence: float = 0.0) -> pd.DataFrame:
    """Classify encoded crops with a saved model.

    Parameters
    ----------
    model : WBCPipeline or mlflow.pyfunc.PyFuncModel
        As :func:`hybridwbc.serve.predict.load_model` returns.
    crops : list of bytes
        Encoded images.
    names : list of str
        The ``path`` column of the result.
    n_jobs : int
    min_confidence : float

    Returns
    -------
    DataFrame
        ``path, label, confidence, p_<class>..., status, error``, one row per crop (see
        :func:`hybridwbc.serve.results.result_frame`).

    Raises
    ------
    ConfigError
        If the pyfunc model refuses the request (e.g. an invalid ``min_confidence``).
    """
    from hybridwbc.serve.pipeline import WBCPipeline

    if isinstance(model, WBCPipeline):
        return model.predict_sources(crops, names=names, n_jobs=n_jobs, min_confidence=min_confidence)
    from mlflow.exceptions import MlflowException

    from hybridwbc.errors import ConfigError

    frame = pd.DataFrame({"path": pd.Series(names, dtype=object),
                          "image": pd.Series([base64.b64encode(c).decode("ascii") for c in crops], dtype=object)})
    try:
        return model.predict(frame, params={"min_confidence": float(min_confidence), "n_jobs": int(n_jobs)})
    except MlflowException as exc:
        raise ConfigError(exc.message) from exc
