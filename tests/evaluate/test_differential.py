"""The differential (Wilson intervals, flags) and the agreement figures, on counts whose answer is known."""

import math

import numpy as np
import pandas as pd
import pytest

from hybridwbc.evaluate.detection import box_iou, detection_scores, match_boxes
from hybridwbc.evaluate.differential import CountRules, agreement, differential, wilson_interval


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(50, 100)
    assert (lo, hi) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def _cells(labels, status=None, border=None):
    n = len(labels)
    return pd.DataFrame({"label": labels, "status": status or ["ok"] * n, "border": border or [False] * n})


def test_differential_counts_flags_and_blasts():
    labels = ["lymphocyte:all"] * 3 + ["neutrophil"] * 6 + ["uncertain", "neutrophil"]
    cells = _cells(labels, status=["ok"] * 9 + ["uncertain", "ok"], border=[False] * 10 + [True])
    d = differential(cells, ["lymphocyte:all", "neutrophil"], CountRules(min_count=10, blast_threshold=20))
    assert d["n_counted"] == 9 and d["n_uncertain"] == 1 and d["n_border"] == 1
    assert d["n_neutrophil"] == 6 and d["pct_neutrophil"] == pytest.approx(100 * 6 / 9)
    assert d["blast_pct"] == pytest.approx(100 / 3)
    assert d["ci_low_neutrophil"] < d["pct_neutrophil"] < d["ci_high_neutrophil"]
    assert d["flags"] == "low_count;blasts"
    counted_border = differential(cells, ["lymphocyte:all", "neutrophil"], CountRules(count_border=True))
    assert counted_border["n_neutrophil"] == 7
    no_blast = differential(_cells(["a", "uncertain", "uncertain"], status=["ok", "uncertain", "uncertain"]),
                            ["a"], CountRules(min_count=1))
    assert math.isnan(no_blast["blast_pct"]) and no_blast["flags"] == "many_uncertain"


def test_agreement_per_class_and_overall():
    pre = ["a", "a", "b", "b", "uncertain", "a"]
    ver = ["a", "a", "b", "a", "b", "a"]
    t = agreement(pre, ver, ["a", "b"]).set_index("class")
    assert t.loc["all", "agreement"] == pytest.approx(4 / 6)
    assert t.loc["a", "n_pre"] == 3 and t.loc["a", "n_verified"] == 4
    assert t.loc["a", "agreement"] == pytest.approx(5 / 6)
    perfect = agreement(["a", "b"], ["a", "b"], ["a", "b"]).set_index("class")
    assert perfect.loc["all", "kappa"] == pytest.approx(1.0)
    assert np.isnan(agreement(["a"], ["a"], ["a"]).set_index("class").loc["all", "kappa"])
    with pytest.raises(ValueError, match="differ in length"):
        agreement(["a"], ["a", "b"], ["a", "b"])


def test_box_matching_is_one_to_one():
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0
    pairs = match_boxes([(0, 0, 10, 10), (1, 1, 11, 11)], [(0, 0, 10, 10)])
    assert pairs == [(0, 0)]
    s = detection_scores(1, 2, 1)
    assert s["recall"] == 1 and s["precision"] == 0.5 and math.isnan(detection_scores(0, 0, 0)["recall"])
