"""Cells of one field as GeoJSON that QuPath opens (File > Import objects, or drag the file onto the image).

Each cell is a ``Feature`` whose ``geometry`` is the cell outline (a closed ``Polygon`` in image
pixels, ``x`` = column, ``y`` = row) and whose ``nucleusGeometry`` is its nucleus outline, with
``properties.objectType = "cell"`` and ``properties.classification = {"name", "color"}``: QuPath's
own export format for cell objects. The other properties carry the cell id, status, confidence,
flags and the class probabilities (``measurements``, which QuPath shows in its measurement table).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

__all__ = ["class_colour", "cell_feature", "field_collection", "write_field_geojson", "PALETTE"]

#: Class colours (RGB) in class order; ``uncertain`` is grey.
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (188, 189, 34), (23, 190, 207), (127, 127, 127)]
UNCERTAIN_COLOUR = (160, 160, 160)


def class_colour(label: str, classes) -> tuple:
    """RGB colour of ``label`` among ``classes`` (grey for anything else, e.g. ``uncertain``)."""
    classes = list(classes)
    return PALETTE[classes.index(label) % len(PALETTE)] if label in classes else UNCERTAIN_COLOUR


def _ring(poly, bbox) -> list:
    """A closed ring from ``poly`` (``(x, y)`` vertices), or the box ``(row0, col0, row1, col1)`` if too short."""
    if len(poly) < 3:
        r0, c0, r1, c1 = bbox
        poly = [(c0, r0), (c1, r0), (c1, r1), (c0, r1)]
    pts = [[float(x), float(y)] for x, y in poly]
    return pts + [pts[0]]


def _number(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def cell_feature(row: dict, cell, classes) -> dict:
    """One QuPath cell object from a ``cells.csv`` row and its :class:`~hybridwbc.segment.locate.LocatedCell`."""
    label = row.get("label") or "uncertain"
    name = label if row.get("status") == "ok" else "uncertain"
    measurements = {k: _number(v) for k, v in row.items() if k.startswith("p_") or k in ("confidence", "area")}
    return {
        "type": "Feature",
        "id": row["cell_id"],
        "geometry": {"type": "Polygon", "coordinates": [_ring(cell.polygon, cell.bbox)]},
        "nucleusGeometry": {"type": "Polygon", "coordinates": [_ring(cell.nucleus_polygon, cell.bbox)]},
        "properties": {
            "objectType": "cell",
            "name": row["cell_id"],
            "classification": {"name": name, "color": list(class_colour(name, classes))},
            "status": row.get("status", ""),
            "reason": row.get("reason", ""),
            "border": bool(row.get("border")),
            "overlap": bool(row.get("overlap")),
            "measurements": {k: v for k, v in measurements.items() if v is not None},
        },
    }


def field_collection(rows: list, cells: list, classes) -> dict:
    """A ``FeatureCollection`` of a field's cells (``rows`` and ``cells`` in the same order)."""
    return {"type": "FeatureCollection", "features": [cell_feature(r, c, classes) for r, c in zip(rows, cells)]}


def write_field_geojson(path: str | os.PathLike, rows: list, cells: list, classes) -> Path:
    """Write :func:`field_collection` to ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(field_collection(rows, cells, classes)), encoding="utf-8")
    return path
