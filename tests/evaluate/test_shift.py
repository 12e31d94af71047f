"""Domain shift (hybridwbc.evaluate.shift): pool/test split by field, k-shot draws, head refits and the table, on
arrays whose right answer is known by construction; one small real-data run (BCCD), marked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from hybridwbc.errors import ConfigError
from hybridwbc.evaluate.shift import Representation, draw_shots, pool_test_split, score_arm, shift_rows
from hybridwbc.report.shift import plot_accuracy_vs_k, shift_markdown


def test_pool_and_test_parts_share_no_field_and_a_rare_class_is_only_tested():
    y = np.array(["a"] * 40 + ["b"] * 20 + ["c"])
    fields = np.array([f"f{i // 2}" for i in range(60)] + ["lonely"])  # two cells per field
    pool, test = pool_test_split(y, fields, 0.5, seed=0)
    assert not set(fields[pool]) & set(fields[test])
    assert sorted(np.concatenate([pool, test]).tolist()) == list(range(61))
    assert "c" not in set(y[pool]) and "c" in set(y[test])
    assert 15 <= (y[pool] == "a").sum() <= 25 and 6 <= (y[pool] == "b").sum() <= 14
    with pytest.raises(ConfigError, match="pool_fraction must be in"):
        pool_test_split(y, fields, 1.0, seed=0)


def test_draws_take_k_usable_cells_per_class_or_all_a_class_has():
    y = np.array(["a"] * 10 + ["b"] * 3)
    usable = np.ones(13, bool)
    usable[0] = False
    rng = np.random.default_rng(0)
    pick = draw_shots(y, usable, 5, rng)
    assert (y[pick] == "a").sum() == 5 and (y[pick] == "b").sum() == 3 and 0 not in pick
    assert len(set(pick.tolist())) == len(pick)


def _shifted(rng, n_source=100, n_target=80):
    """Source: class a near x=0, b near x=4. Target: the same classes moved by +10 (a near 10, b near 14), beyond
    every source cell, so a source-only head calls every target cell b, and target labels fix that."""
    ys = np.array(["a", "b"] * (n_source // 2), dtype=object)
    Xs = np.c_[np.where(ys == "a", 0.0, 4.0) + rng.normal(0, 0.5, n_source), rng.normal(0, 1, n_source)]
    yt = np.array(["a", "b"] * (n_target // 2), dtype=object)
    Xt = np.c_[np.where(yt == "a", 10.0, 14.0) + rng.normal(0, 0.5, n_target), rng.normal(0, 1, n_target)]
    return Xs, ys, Xt, yt


def test_few_target_labels_repair_a_shift_that_fools_the_source_model(rng):
    Xs, ys, Xt, yt = _shifted(rng)
    Xt[[1, 3]] = np.nan  # two test cells this representation cannot read: scored as wrong
    fields = np.array([f"f{i}" for i in range(len(yt))], dtype=object)
    pool, test = np.arange(0, 40), np.arange(40, 80)
    Xt[[41, 43]] = np.nan
    rep = Representation("none", "handcrafted", Xs, Xt)
    head = RandomForestClassifier(n_estimators=50, random_state=0)
    preds = score_arm(rep, head, ys, np.arange(len(ys)).astype(str), yt, fields, pool, test, [0, 10], draws=2,
                      repeat=10, seed=0)
    assert preds[0].shape == (1, 40) and preds[10].shape == (2, 40)
    assert preds[0][0, 1] is None and preds[0][0, 3] is None
    rows = {r["k"]: r for r in shift_rows(rep, "rf", preds, yt[test], n_bootstrap=200, ci=0.95, seed=0)}
    assert rows[0]["accuracy"] <= 0.55  # everything called b
    assert rows[10]["accuracy"] >= 0.9
    assert rows[10]["n_scored"] == 38 and rows[10]["n_test"] == 40
    # the unread cells count as wrong over all test cells, not over the scored ones
    assert rows[10]["accuracy"] == pytest.approx(rows[10]["accuracy_scored"] * 38 / 40)
    assert rows[10]["accuracy_ci_low"] <= rows[10]["accuracy"] <= rows[10]["accuracy_ci_high"]
    assert rows[10]["n_draws"] == 2 and rows[0]["accuracy_sd"] == 0.0


def test_table_and_figure_show_the_chosen_setting_beside_no_normalisation(tmp_path):
    rows = []
    for p, base in (("none", 0.3), ("greyworld", 0.6)):
        for k in (0, 5):
            rows.append({"preprocess": p, "representation": "handcrafted", "augmentation": "-", "head": "svm",
                         "k": k, "n_draws": 1 if k == 0 else 3, "accuracy": base + k / 50, "accuracy_sd": 0.01,
                         "accuracy_ci_low": base - 0.1, "accuracy_ci_high": base + 0.2, "balanced_accuracy": base,
                         "accuracy_scored": base, "n_scored": 9, "n_test": 10})
    table = pd.DataFrame(rows)
    best = {"preprocess": "greyworld", "representation": "handcrafted", "augmentation": "-", "head": "svm"}
    coverage = pd.DataFrame({"field": ["a", "b"], "label": ["x", "y"], "n_boxes": [1, 0], "n_cells": [1, 0],
                             "reason": ["", "no WBC box in the annotation"]})
    md = shift_markdown(table, best, coverage, np.array(["x", "y"], dtype=object), np.array([0]), np.array([1]),
                        100, "python -m hybridwbc.run +experiment=domain_shift", "abc123")
    assert "always answering the pool's most frequent class (`x`) scores accuracy 0.000" in md
    assert "MLflow run `abc123`" in md and "1 × no WBC box in the annotation" in md
    assert "| handcrafted + svm, greyworld | 0 | 0.600 [0.500, 0.800] | 0.600 |" in md
    assert "| handcrafted + svm, none | 5 | 0.400 [0.200, 0.500] | 0.300 |" in md
    assert "| handcrafted + svm, greyworld | 0.600 ± 0.010 | 0.700 ± 0.010 |" in md
    plot_accuracy_vs_k(table, best, tmp_path / "k.png")
    assert (tmp_path / "k.png").stat().st_size > 1000


@pytest.mark.realdata
def test_domain_shift_runs_on_bccd_and_tracks_its_table(compose, tmp_path, monkeypatch, real_data):
    from mlflow.tracking import MlflowClient

    from hybridwbc.run import run_experiment

    monkeypatch.setenv("HYBRIDWBC_DATA", str(real_data))
    cfg, choices = compose("+experiment=domain_shift", "~shift.preprocess.reinhard", "~shift.preprocess.macenko",
                           "shift.representations=[handcrafted]", "data.max_per_class=20", "shift.shots=[0,5]",
                           "shift.draws=1", "eval.n_bootstrap=20", "~shift.heads.rf", "features.n_jobs=1")
    out = run_experiment(cfg, tmp_path / "run", "domain_shift", choices)
    table = out["shift"]["table"]
    assert len(table) == 2 * 2  # two normalisations x two k, one representation, one head
    assert (table["n_test"] > 100).all() and table["accuracy"].between(0, 1).all()
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(out["run_id"])
    assert run.info.status == "FINISHED" and "best_k0_accuracy" in run.data.metrics
    assert (tmp_path / "run" / "results.md").read_text().count("| handcrafted + svm,") >= 4


def test_a_missing_pretrained_backbone_fails_before_any_work(compose, tmp_path):
    from hybridwbc.errors import WeightsUnavailableError
    from hybridwbc.run import run_experiment

    cfg, choices = compose("+experiment=domain_shift", "tracking=disabled")
    with pytest.raises(WeightsUnavailableError, match=r"pbc8_compact96.weights.h5' \(or its description"):
        run_experiment(cfg, tmp_path / "run", "domain_shift", choices)
