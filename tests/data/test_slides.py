"""Synthetic smear fields: the truth they record is the truth they draw."""

import numpy as np
import pandas as pd
import pytest

from hybridwbc.data.slides import TRUTH_COLUMNS, draw_field, generate_slides


def test_field_truth_matches_its_label_map():
    rng = np.random.default_rng(0)
    labels = ["neutrophil", "lymphocyte", "monocyte", "eosinophil"]
    f = draw_field(rng, labels, n_touching=1, n_border=1)
    assert f.image.shape == (480, 640, 3) and f.image.dtype == np.uint8
    assert [c.label for c in f.cells] == labels
    for i, c in enumerate(f.cells):
        ys, xs = np.nonzero(f.labels == i + 1)
        assert c.area == ys.size and c.bbox == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
    assert f.cells[0].border and not any(c.border for c in f.cells[1:])
    assert f.cells[1].touching and f.cells[2].touching and not f.cells[3].touching
    again = draw_field(np.random.default_rng(0), labels, n_touching=1, n_border=1)
    assert np.array_equal(again.image, f.image)


def test_impossible_fields_are_refused():
    with pytest.raises(ValueError, match="exceeds the 2 white cells"):
        draw_field(np.random.default_rng(0), ["lymphocyte", "monocyte"], n_touching=1, n_border=1)
    with pytest.raises(ValueError, match="cannot place 30 white cells"):
        draw_field(np.random.default_rng(0), ["monocyte"] * 30, shape=(200, 200))


def test_generate_slides_writes_fields_and_truth(tmp_path):
    truth = generate_slides(tmp_path, {"A": [["lymphocyte"], ["monocyte", "neutrophil"]], "B": [[]]},
                            shape=(240, 320), cell_size=96, n_red=10)
    df = pd.read_csv(truth)
    assert list(df.columns) == TRUTH_COLUMNS and len(df) == 3
    assert sorted(p.name for p in (tmp_path / "A").iterdir()) == ["field_000.png", "field_001.png"]
    assert (tmp_path / "B" / "field_000.png").is_file()
    assert df.groupby("path").size().to_dict() == {"A/field_000.png": 1, "A/field_001.png": 2}
