"""Locating white cells in synthetic smear fields whose cells are known by construction."""

import numpy as np
import pytest

from hybridwbc.data.slides import draw_field
from hybridwbc.errors import ConfigError
from hybridwbc.evaluate.detection import detection_scores, match_boxes
from hybridwbc.segment.locate import LocatedCell, crop_cell, locate_cells, outline, split_cell

CLASSES = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]


def _boxes(cells):
    return [(c.bbox[1], c.bbox[0], c.bbox[3], c.bbox[2]) for c in cells]


def _truth_boxes(field):
    return [(c.bbox[1], c.bbox[0], c.bbox[3], c.bbox[2]) for c in field.cells]


def test_cells_among_red_cells_and_platelets_are_found_with_their_flags():
    # 40 white cells in 8 fields, each with a pair of touching cells and one cut by the border; today two
    # touching eosinophils (cytoplasm coloured like the red cells) can merge, and a cut cell can be missed
    n_match = n_det = n_ref = 0
    flags_ok = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        field = draw_field(rng, list(rng.choice(CLASSES, 5)), n_touching=1, n_border=1, n_platelets=10,
                           classes=CLASSES)
        found = locate_cells(field.image)
        pairs = match_boxes(_boxes(found), _truth_boxes(field))
        n_match, n_det, n_ref = n_match + len(pairs), n_det + len(found), n_ref + len(field.cells)
        flags_ok += [(found[i].border, found[i].overlap) == (field.cells[j].border, field.cells[j].touching)
                     for i, j in pairs]
    scores = detection_scores(n_match, n_det, n_ref)
    assert scores["recall"] >= 0.9 and scores["precision"] >= 0.9, scores
    assert np.mean(flags_ok) >= 0.9


def test_a_field_without_white_cells_gives_none():
    field = draw_field(np.random.default_rng(0), [], n_platelets=12)
    assert locate_cells(field.image) == []
    assert locate_cells(np.full((64, 64, 3), 230, np.uint8)) == []


def test_located_cell_geometry_matches_the_drawn_cell():
    field = draw_field(np.random.default_rng(5), ["monocyte"], n_platelets=0)
    (cell,) = locate_cells(field.image)
    truth = field.cells[0]
    assert abs(cell.centroid[0] - truth.row) < 3 and abs(cell.centroid[1] - truth.col) < 3
    assert abs(cell.area - truth.area) < 0.1 * truth.area
    assert not cell.border and not cell.overlap
    xs = [p[0] for p in cell.polygon]
    assert cell.bbox[1] <= min(xs) and max(xs) < cell.bbox[3]
    assert 0 < cell.nucleus_area < cell.area


def test_split_cell_cuts_two_touching_discs_and_drops_a_part_without_nucleus():
    yy, xx = np.mgrid[0:120, 0:200]
    a = (yy - 60) ** 2 + (xx - 55) ** 2 <= 40 ** 2
    b = (yy - 60) ** 2 + (xx - 130) ** 2 <= 40 ** 2
    nuc_a = (yy - 60) ** 2 + (xx - 55) ** 2 <= 20 ** 2
    nuc_b = (yy - 60) ** 2 + (xx - 130) ** 2 <= 20 ** 2
    parts = split_cell(nuc_a | nuc_b, a | b)
    assert len(parts) == 2
    assert {int(n.sum()) for n, _ in parts} == {int(nuc_a.sum()), int(nuc_b.sum())}
    only_a = split_cell(nuc_a, a | b)  # b holds no nucleus: a red cell the cytoplasm grew into
    assert len(only_a) == 1 and (only_a[0][1] & b & ~a).sum() < 0.05 * b.sum()
    assert len(split_cell(nuc_a, a)) == 1


def test_crop_cell_centres_the_cell_at_the_model_scale():
    image = np.full((100, 100, 3), 200, np.uint8)
    image[40:60, 40:60] = (10, 20, 30)
    cell = LocatedCell(bbox=(40, 40, 60, 60), centroid=(49.5, 49.5), area=400, nucleus_area=100, border=False,
                       overlap=False, polygon=outline(image[..., 0] < 100), nucleus_polygon=[])
    crop = crop_cell(image, cell, out_side=40, window=40)
    assert crop.shape == (40, 40, 3) and crop.dtype == np.uint8
    assert (crop[10:30, 10:30] == (10, 20, 30)).all() and (crop[:9] == 200).all()
    auto = crop_cell(image, cell, out_side=90, window="cell", cell_fraction=0.5)  # side = 22.6 / 0.5 = 45 px
    dark = (auto[..., 0] < 100).mean()
    assert dark == pytest.approx((20 / 45) ** 2, abs=0.03)
    edge = LocatedCell((0, 0, 10, 10), (5.0, 5.0), 100, 20, True, False, [], [])
    filled = crop_cell(image, edge, out_side=20, window=20, fill=(1, 2, 3))
    assert (filled[0, 0] == (1, 2, 3)).all() and (filled[15, 15] == 200).all()
    with pytest.raises(ConfigError, match="cell_fraction must be in"):
        crop_cell(image, cell, 40, "cell", cell_fraction=0)
    with pytest.raises(ConfigError, match="positive pixel sizes"):
        crop_cell(image, cell, 40, window="big")
    assert outline(np.zeros((5, 5), bool)) == []


@pytest.mark.realdata
def test_bccd_white_cells_are_found(real_data):
    import xml.etree.ElementTree as ET

    from hybridwbc.data.io import read_image

    root = real_data / "bccd"
    if not (root / "Annotations").is_dir():
        pytest.skip(f"BCCD is absent from {real_data}")
    n_match = n_det = n_ref = 0
    for xml in sorted((root / "Annotations").glob("*.xml"))[:30]:
        refs = [tuple(float(o.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
                for o in ET.parse(xml).getroot().iter("object") if (o.findtext("name") or "").strip() == "WBC"]
        found = locate_cells(read_image(root / "JPEGImages" / f"{xml.stem}.jpg"))
        n_match += len(match_boxes(_boxes(found), refs))
        n_det, n_ref = n_det + len(found), n_ref + len(refs)
    scores = detection_scores(n_match, n_det, n_ref)
    assert scores["recall"] >= 0.95 and scores["precision"] >= 0.9, scores
