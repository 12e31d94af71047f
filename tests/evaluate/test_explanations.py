"""Explanation artifacts of a method's evaluation: family permutation importance, the Grad-CAM gallery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from hybridwbc.evaluate.importance import (
    balanced_accuracy,
    family_columns,
    family_importance,
    family_of,
    importance_markdown,
)
from hybridwbc.evaluate.protocol import predict_out_of_sample
from hybridwbc.models.cascade import CascadeClassifier

NAMES = ["geometry__area", "geometry__round", "colour__hue", "granularity__g1", "granularity__g2", "texture__t"]


def _table(seed: int = 0, n: int = 240):
    """Classes a/b decided by granularity only, c/d by colour only; geometry and texture are noise."""
    rng = np.random.default_rng(seed)
    y = np.array(["a", "b", "c", "d"] * (n // 4), dtype=object)
    X = rng.normal(size=(n, len(NAMES)))
    X[:, 3] += np.where(y == "a", 3.0, np.where(y == "b", -3.0, 0.0))
    X[:, 4] += np.where(y == "a", 2.0, np.where(y == "b", -2.0, 0.0))
    X[:, 2] += np.where(y == "c", 3.0, np.where(y == "d", -3.0, 0.0))
    return X, y


def test_family_names_and_columns():
    assert family_of("size_ratio__nc") == "size_ratio" and family_of("path") == "path"
    cols = family_columns(["path", *NAMES])
    assert list(cols) == ["geometry", "colour", "granularity", "texture"]
    np.testing.assert_array_equal(cols["granularity"], [4, 5])


def test_permutation_importance_finds_the_families_that_decide():
    X, y = _table()
    groups = np.arange(len(y))
    rf = RandomForestClassifier(n_estimators=60, random_state=0)
    pred, splits, fitted = predict_out_of_sample(rf, X, y, groups, protocol="cv", n_splits=3)
    t = family_importance(fitted, splits, X, y, NAMES, n_repeats=5, seed=0)
    drop = t.set_index("family")["drop_mean"]
    assert set(t["stage"]) == {"model"} and drop["granularity"] > 0.2 and drop["colour"] > 0.2
    assert abs(drop["geometry"]) < 0.05 and abs(drop["texture"]) < 0.05
    assert (t["drop_lo"] <= t["drop_mean"]).all() and (t["drop_mean"] <= t["drop_hi"]).all()
    strong = t.set_index("family").loc[["granularity", "colour"]]
    assert (strong["boot_lo"] > 0.1).all() and (strong["boot_lo"] < strong["drop_mean"]).all()
    assert (strong["drop_mean"] < strong["boot_hi"]).all()
    assert t["n_rows"].iloc[0] == len(y)  # every row scored once, by the split that held it out
    assert "| model | granularity | 2 |" in importance_markdown(t, "x")
    # whole groups resampled: one group holding every row leaves no sampling variation
    one = family_importance(fitted, splits, X, y, NAMES, n_repeats=3, groups=np.zeros(len(y)), n_bootstrap=20)
    np.testing.assert_allclose(one["boot_lo"], one["boot_hi"])
    with pytest.raises(ValueError, match=r"names has 2 entries but X has 6 columns"):
        family_importance(fitted, splits, X, y, NAMES[:2])
    with pytest.raises(ValueError, match=r"n_repeats must be at least 2 .*received 1"):
        family_importance(fitted, splits, X, y, NAMES, n_repeats=1)


def test_gallery_rows_keep_one_row_per_class():
    from hybridwbc.evaluate.explanations import gallery_rows
    from hybridwbc.evaluate.protocol import Predictions

    y_true = np.array(["a", "a", "a", "b", "b"], dtype=object)
    y_pred = np.array(["a", "a", "b", "b", "b"], dtype=object)
    proba = np.array([[0.6, 0.4], [0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.4, 0.6]])
    pred = Predictions(rows=np.arange(5), fold=np.zeros(5, int), y_true=y_true, y_pred=y_pred, proba=proba,
                       classes=["a", "b"])
    assert gallery_rows(pred, 2) == [(1, "correct", "a"), (0, "correct", "a"), (2, "wrong", "a"), (None, "wrong", "a"),
                                     (3, "correct", "b"), (4, "correct", "b"), (None, "wrong", "b"),
                                     (None, "wrong", "b")]


def test_balanced_accuracy_matches_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    truth, pred = rng.integers(0, 4, 50), rng.integers(-1, 4, 50)  # -1: a label the truth never has
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        expected = balanced_accuracy_score(truth, pred)
    assert balanced_accuracy(truth, pred, np.arange(4)) == pytest.approx(expected)


def test_cascade_importance_is_per_stage():
    X, y = _table()
    y = np.where(y == "a", "eosinophil", np.where(y == "b", "basophil", y)).astype(object)
    cascade = CascadeClassifier(stage1=RandomForestClassifier(n_estimators=40, random_state=0),
                                stage2=RandomForestClassifier(n_estimators=40, random_state=0),
                                stage1_columns=["granularity__", "colour__"], feature_names=NAMES)
    pred, splits, fitted = predict_out_of_sample(cascade, X, y, np.arange(len(y)), protocol="holdout")
    t = family_importance(fitted, splits, X, y, NAMES, n_repeats=4, seed=1)
    s1 = t[t["stage"] == "stage1"].set_index("family")["drop_mean"]
    s2 = t[t["stage"] == "stage2"].set_index("family")["drop_mean"]
    assert set(s1.index) == {"granularity", "colour"} and s1["granularity"] > 0.2
    assert s2["colour"] > 0.2 and abs(s2["granularity"]) < 0.1  # stage 2 types c/d (colour) only
    assert t[t["stage"] == "stage2"]["n_rows"].iloc[0] == int(np.isin(y[splits[0][1]], ["c", "d"]).sum())


@pytest.mark.slow
def test_runs_write_their_explanations(compose, tmp_path, monkeypatch):
    """A handcrafted cascade writes per-stage family importances; a CNN writes a Grad-CAM gallery with outlines."""
    monkeypatch.delenv("HYBRIDWBC_DATA", raising=False)
    from hybridwbc.run import run_experiment

    common = ("tracking=disabled", "data.synthetic.n_per_class=10", "data.synthetic.size=48", "eval.n_bootstrap=20",
              "features.n_jobs=1", "eval.explain.importance_repeats=3", "eval.domain.enabled=false")
    cfg, choices = compose("+experiment=wbc5", "classifier=cascade_handcrafted", *common)
    out = run_experiment(cfg, tmp_path / "classical", "wbc5", choices)
    t = pd.read_csv(tmp_path / "classical" / "family_importance.csv")
    assert {"model", "stage1", "stage2"} <= set(t["stage"])
    assert set(t[t["stage"] == "stage1"]["family"]) == {"granularity", "colour"}
    assert (tmp_path / "classical" / "family_importance.png").stat().st_size > 1000
    assert any(k.startswith("importance.stage1.") for k in out["metrics"])
    assert not (tmp_path / "classical" / "gradcam_gallery.png").exists()

    cfg, choices = compose("+experiment=wbc5", "classifier=cnn_softmax", "backbone=tiny",
                           "backbone.backbone_params={depth: 2, width: 8}", *common)
    run_experiment(cfg, tmp_path / "cnn", "wbc5", choices)
    g = pd.read_csv(tmp_path / "cnn" / "gradcam_gallery.csv")
    assert (tmp_path / "cnn" / "gradcam_gallery.png").stat().st_size > 1000
    assert set(g["kind"]) <= {"correct", "wrong"} and g.groupby(["label", "kind"]).size().max() <= 2
    assert g["heat_in_nucleus"].notna().any()  # the outlines come from the run's segmentation
    assert ((g["heat_in_nucleus"] <= g["heat_in_cell"] + 1e-9) | g["heat_in_nucleus"].isna()).all()
    assert not (tmp_path / "cnn" / "family_importance.csv").exists()


def test_shap_contributions_of_the_errors_add_up_per_family(tmp_path):
    shap = pytest.importorskip("shap", reason="the optional 'explain' extra (shap) is not installed")
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from hybridwbc.evaluate.explanations import forest_view, shap_errors

    X, y = _table(n=120)
    y[:6] = np.roll(y[:6], 1)  # a few contradicting labels, so there are confident errors
    rf = RandomForestClassifier(n_estimators=30, random_state=0)
    pred, splits, fitted = predict_out_of_sample(rf, X, y, np.arange(len(y)), protocol="cv", n_splits=3)
    kept = pd.DataFrame({"path": [f"cell{i}.png" for i in range(len(y))]})
    data = SimpleNamespace(cfg=OmegaConf.create({"eval": {"n_error_gallery": 4}}), y=y, kept=kept)
    path = shap_errors(data, pred, fitted, X, NAMES, tmp_path)
    t = pd.read_csv(path)
    assert len(t) == 4 and (t["label"] != t["predicted"]).all()
    fams = [c for c in t.columns if c.startswith("shap__")]
    assert fams == ["shap__geometry", "shap__colour", "shap__granularity", "shap__texture"]
    for r in t.itertuples(index=False):  # SHAP is additive: base value + contributions = the forest's probability
        row = int(r.path[4:-4])
        forest = fitted[r.fold]
        k = list(forest.classes_).index(r.explained_class)
        base = shap.TreeExplainer(forest).expected_value[k]
        assert base + sum(getattr(r, f) for f in fams) == pytest.approx(forest.predict_proba(X[[row]])[0, k], abs=1e-6)
    assert forest_view(object(), X[:1], y[:1], NAMES) is None
