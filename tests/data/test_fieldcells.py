"""Typed white cells cut from smear fields with VOC boxes (the BCCD layout), on synthetic fields whose cells are
known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridwbc.data.fieldcells import typed_field_cells, wbc_boxes
from hybridwbc.data.slides import draw_field
from hybridwbc.errors import DataLayoutError

VOC = """<annotation><filename>{name}.jpg</filename>{objects}</annotation>"""
OBJ = ("<object><name>{kind}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"
       "</bndbox></object>")


def _bccd(tmp_path, save_png):
    """Four fields: two with one white cell each (typed), one whose annotation has no WBC box, one unreadable."""
    import cv2

    root = tmp_path / "bccd"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    rng = np.random.default_rng(3)
    rows = []
    for i, label in enumerate(["eosinophil", "lymphocyte"]):
        f = draw_field(rng, [label], shape=(480, 640), cell_size=200, n_red=30)
        name = f"BloodImage_{i:05d}"
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        r0, c0, r1, c1 = f.cells[0].bbox
        objs = OBJ.format(kind="WBC", x0=c0, y0=r0, x1=c1, y1=r1) + OBJ.format(kind="RBC", x0=1, y0=1, x1=40, y1=40)
        (root / "Annotations" / f"{name}.xml").write_text(VOC.format(name=name, objects=objs))
        rows.append((name, label))
    (root / "JPEGImages" / "BloodImage_00002.jpg").write_bytes(
        (root / "JPEGImages" / "BloodImage_00000.jpg").read_bytes())
    (root / "Annotations" / "BloodImage_00002.xml").write_text(VOC.format(name="x", objects=OBJ.format(
        kind="RBC", x0=1, y0=1, x1=40, y1=40)))
    (root / "JPEGImages" / "BloodImage_00003.jpg").write_bytes(b"not a jpeg")
    (root / "Annotations" / "BloodImage_00003.xml").write_text(VOC.format(name="y", objects=OBJ.format(
        kind="WBC", x0=1, y0=1, x1=90, y1=90)))
    rows += [("BloodImage_00002", "neutrophil"), ("BloodImage_00003", "monocyte")]
    pd.DataFrame(rows, columns=["image", "category"]).to_csv(root / "labels.csv", index=False)
    return root


def test_typed_cells_are_cut_centred_and_every_field_is_accounted_for(tmp_path, save_png):
    from hybridwbc.data.io import read_image

    root = _bccd(tmp_path, save_png)
    manifest, coverage = typed_field_cells(root, tmp_path / "cache", side=120)
    assert manifest["label"].tolist() == ["eosinophil", "lymphocyte"]
    assert manifest["subject"].tolist() == ["BloodImage_00000", "BloodImage_00001"]
    assert (manifest["annotation"].astype(float) >= 0.3).all()
    for p in manifest["path"]:
        crop = read_image(p)
        assert crop.shape == (120, 120, 3)
        # the white cell (dark, bluish) sits in the middle of the crop, background at the corners
        centre = crop[50:70, 50:70].astype(float).mean()
        corners = np.mean([crop[:8, :8].mean(), crop[-8:, -8:].mean()])
        assert centre < corners - 30
    cov = coverage.set_index("field")
    assert cov.loc["BloodImage_00002", "reason"] == "no WBC box in the annotation"
    assert cov.loc["BloodImage_00003", "reason"].startswith("ImageReadError")
    assert cov["n_cells"].tolist() == [1, 1, 0, 0]
    # a second call reuses the written crops (same files, same hashes)
    again, _ = typed_field_cells(root, tmp_path / "cache", side=120)
    assert again["sha256"].tolist() == manifest["sha256"].tolist()


def test_missing_labels_and_bad_annotation_say_what_to_fix(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DataLayoutError, match="No labels.csv"):
        typed_field_cells(tmp_path / "x", tmp_path / "cache")
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotation><object>")
    with pytest.raises(DataLayoutError, match="Cannot read VOC annotation"):
        wbc_boxes(bad)
    (tmp_path / "x" / "labels.csv").write_text("file,type\na,b\n")
    with pytest.raises(DataLayoutError, match="expected image,category"):
        typed_field_cells(tmp_path / "x", tmp_path / "cache")


def test_a_box_with_a_missing_or_empty_side_is_no_box(tmp_path):
    xml = tmp_path / "a.xml"
    xml.write_text(VOC.format(name="a", objects=OBJ.format(kind="WBC", x0=10, y0=10, x1=50, y1=60)
                              + "<object><name>WBC</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax>"
                                "</bndbox></object>" + OBJ.format(kind="WBC", x0=5, y0=5, x1=5, y1=9)))
    assert wbc_boxes(xml) == [(10.0, 10.0, 50.0, 60.0)]
