"""The review page and the GeoJSON, written from cell rows (no browser: tests/serve/test_analyze.py drives one)."""

import json

import pandas as pd

from hybridwbc.evaluate.differential import differential
from hybridwbc.report.geojson import class_colour, field_collection
from hybridwbc.report.review import NOT_WBC, write_review
from hybridwbc.segment.locate import LocatedCell

CLASSES = ["lymphocyte", "neutrophil"]


def _rows():
    base = {"sample": "S", "field": "f.png", "row0": 1, "col0": 2, "row1": 11, "col1": 12, "border": False,
            "overlap": False, "confidence": 0.9, "reason": "", "thumb": "AAAA", "p_lymphocyte": 0.9,
            "p_neutrophil": 0.1, "guess": "lymphocyte"}
    return [{**base, "cell_id": "S/f.png#0", "label": "lymphocyte", "status": "ok"},
            {**base, "cell_id": "S/f.png#1", "label": "uncertain", "status": "uncertain", "reason": "far <away>"},
            {**base, "cell_id": "S/f.png#2", "label": "neutrophil", "status": "ok", "border": True}]


def test_page_lists_every_cell_once_in_its_gallery(tmp_path):
    rows = _rows()
    samples = pd.DataFrame([{"sample": "S", "n_fields": 1, "n_error_fields": 0,
                             **differential(pd.DataFrame(rows), CLASSES)}])
    src = tmp_path / "cells.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields = [{"sample": "S", "field": "f.png", "thumb": "BBBB", "height": 20, "width": 30}]
    page = write_review(tmp_path / "r.html", CLASSES, samples, src, fields).read_text()
    assert page == write_review(tmp_path / "r2.html", CLASSES, samples, rows, fields).read_text()
    assert page.count("<figure class='cell'") == 3 and page.count("<rect ") == 3
    at = [page.index(f"class='gallery' data-label='{c}'") for c in ("uncertain", "lymphocyte", NOT_WBC)]
    assert at == sorted(at)
    assert "far &lt;away&gt;" in page and "far <away>" not in page
    assert "<figcaption>lymphocyte? 0.90</figcaption>" in page  # an uncertain cell shows the model's guess
    assert "corrections.csv" in page and "<svg width='480' height='320'" in page


def test_geojson_cells_carry_class_and_outlines():
    rows = _rows()
    cell = LocatedCell((1, 2, 11, 12), (6.0, 7.0), 80, 20, False, False, [(2, 1), (11, 1), (11, 10)], [])
    fc = field_collection(rows, [cell] * 3, CLASSES)
    names = [f["properties"]["classification"]["name"] for f in fc["features"]]
    assert names == ["lymphocyte", "uncertain", "neutrophil"]
    assert fc["features"][0]["geometry"]["coordinates"][0][0] == fc["features"][0]["geometry"]["coordinates"][0][-1]
    assert len(fc["features"][0]["nucleusGeometry"]["coordinates"][0]) == 5  # no outline: the box
    assert fc["features"][0]["properties"]["classification"]["color"] == list(class_colour("lymphocyte", CLASSES))
    assert fc["features"][0]["properties"]["measurements"]["p_lymphocyte"] == 0.9
