import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from hybridwbc.errors import ConfigError
from hybridwbc.evaluate import (
    Predictions,
    bootstrap_ci,
    classification_metrics,
    evaluate_predictions,
    predict_out_of_sample,
    to_binary,
)


def test_binary_metrics_by_hand():
    y = np.array(["all"] * 4 + ["hem"] * 6, dtype=object)
    p = np.array(["all", "all", "all", "hem"] + ["hem"] * 5 + ["all"], dtype=object)
    proba = np.column_stack([np.linspace(1, 0, 10), np.linspace(0, 1, 10)])
    m = classification_metrics(y, p, proba, ["all", "hem"], positive="all")
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["sensitivity"] == pytest.approx(0.75)
    assert m["specificity"] == pytest.approx(5 / 6)
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 5 / 6) / 2)
    assert m["roc_auc"] == pytest.approx(1.0)


def test_multiclass_metrics_have_no_binary_keys():
    y = np.array(list("aabbcc"), dtype=object)
    m = classification_metrics(y, y, None, ["a", "b", "c"])
    assert m["f1_macro"] == 1.0 and "roc_auc" not in m


def test_bootstrap_ci_brackets_estimate_and_grouping_widens_it():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(10), 30)  # 10 subjects of 30 cells
    y = rng.choice(np.array(["a", "b"], dtype=object), 300)
    # errors cluster by subject: the even subjects are all right, the odd ones right half of the time
    right = (groups % 2 == 0) | (rng.random(300) < 0.5)
    p = np.where(right, y, np.where(y == "a", "b", "a")).astype(object)
    point = classification_metrics(y, p, None, ["a", "b"])["accuracy"]
    rows = bootstrap_ci(y, p, None, ["a", "b"], n_bootstrap=300, seed=0)
    assert rows["accuracy_ci_low"] < point < rows["accuracy_ci_high"]
    grp = bootstrap_ci(y, p, None, ["a", "b"], groups=groups, n_bootstrap=300, seed=0)
    assert grp["accuracy_ci_low"] < point < grp["accuracy_ci_high"]
    width = rows["accuracy_ci_high"] - rows["accuracy_ci_low"]
    grp_width = grp["accuracy_ci_high"] - grp["accuracy_ci_low"]
    # cells of one subject are not independent: resampling subjects gives the honest, wider interval
    # (by hand: rows sd ~ sqrt(.75 * .25 / 300) = .025, subjects sd ~ .25 / sqrt(10) = .079)
    assert grp_width > 2 * width, (width, grp_width)
    assert bootstrap_ci(y, p, None, ["a", "b"], n_bootstrap=50, seed=1) == \
        bootstrap_ci(y, p, None, ["a", "b"], n_bootstrap=50, seed=1)


def test_out_of_sample_predictions_are_complete_and_learn():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (40, 3)), rng.normal(3, 1, (40, 3))])
    y = np.array(["a"] * 40 + ["b"] * 40, dtype=object)
    groups = np.arange(80).astype(object)
    pred, splits, fitted = predict_out_of_sample(LogisticRegression(), X, y, groups, protocol="cv", n_splits=4)
    assert sorted(pred.rows.tolist()) == list(range(80)) and len(fitted) == 4
    np.testing.assert_allclose(pred.proba.sum(axis=1), 1.0)
    res = evaluate_predictions(pred, n_bootstrap=100)
    assert res.metrics["accuracy"] > 0.9
    assert res.confusion.sum() == 80 and res.report["support"].sum() == 80
    with pytest.raises(ConfigError, match="Unknown eval.protocol 'loo'"):
        predict_out_of_sample(LogisticRegression(), X, y, groups, protocol="loo")


def test_to_binary_sums_probabilities():
    pred = Predictions(rows=np.arange(3), fold=np.zeros(3, int),
                       y_true=np.array(["Benign", "Pre", "Pro"], dtype=object),
                       y_pred=np.array(["Early", "Pre", "Benign"], dtype=object),
                       proba=np.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.1, 0.7, 0.1], [0.5, 0.1, 0.2, 0.2]]),
                       classes=["Benign", "Early", "Pre", "Pro"])
    b = to_binary(pred, {"benign": ["Benign"], "b_all": ["Early", "Pre", "Pro"]}, "b_all")
    assert b.classes == ["b_all", "benign"]
    assert b.y_true.tolist() == ["benign", "b_all", "b_all"]
    np.testing.assert_allclose(b.proba[:, 0], [0.6, 0.9, 0.5])
    with pytest.raises(ConfigError, match=r"classes \['Pro'\] are unassigned"):
        to_binary(pred, {"benign": ["Benign"], "b_all": ["Early", "Pre"]}, "b_all")


def test_mcnemar_counts_discordant_pairs():
    from hybridwbc.evaluate import mcnemar

    y = np.array(list("aaaaaaaaaa"), dtype=object)
    a = y.copy()
    b = y.copy()
    b[:8] = "b"  # A right and B wrong on 8 rows
    r = mcnemar(y, a, b)
    assert (r["b"], r["c"]) == (8, 0) and r["p_value"] == pytest.approx(2 * 0.5 ** 8)
    assert mcnemar(y, a, a)["p_value"] == 1.0


def test_subject_level_aggregation_and_errors():
    from hybridwbc.errors import DataLayoutError
    from hybridwbc.evaluate import aggregate_by_group, most_confident_errors

    pred = Predictions(rows=np.arange(4), fold=np.zeros(4, int),
                       y_true=np.array(["all", "all", "hem", "hem"], dtype=object),
                       y_pred=np.array(["all", "hem", "hem", "all"], dtype=object),
                       proba=np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]]), classes=["all", "hem"])
    sp, names = aggregate_by_group(pred, np.array(["S1", "S1", "H2", "H2"], dtype=object))
    assert list(names) == ["H2", "S1"]
    np.testing.assert_allclose(sp.proba, [[0.45, 0.55], [0.65, 0.35]])
    assert sp.y_pred.tolist() == ["hem", "all"] and sp.y_true.tolist() == ["hem", "all"]
    with pytest.raises(DataLayoutError, match="one label per subject"):
        aggregate_by_group(pred, np.array(["S1", "S1", "S1", "H2"], dtype=object))
    assert most_confident_errors(pred, 5).tolist() == [3, 1]


def test_comparison_ranks_and_tests_on_all_test_rows(tmp_path):
    """A method cannot win by skipping the hard cells: skipped test rows count wrong in the ranking and
    in McNemar's pairs, aligned by row across methods that skipped different rows."""
    from hybridwbc.evaluate.compare import compare_methods

    y = np.array(["a", "b"] * 5, dtype=object)
    proba = np.full((10, 2), 0.5)
    # "careful" scores every row and gets 8 right; "skippy" skips rows 0-3 and gets the other 6 right
    careful = Predictions(rows=np.arange(10), fold=np.zeros(10, int), y_true=y,
                          y_pred=np.where(np.arange(10) < 8, y, np.where(y == "a", "b", "a")).astype(object),
                          proba=proba, classes=["a", "b"])
    skippy = Predictions(rows=np.arange(4, 10)[::-1], fold=np.zeros(6, int), y_true=y[4:][::-1],
                         y_pred=y[4:][::-1].copy(), proba=proba[:6], classes=["a", "b"],
                         skipped=np.arange(4), skipped_fold=np.zeros(4, int))
    results = {"careful": {"metrics": {"balanced_accuracy": 0.8, "all_balanced_accuracy": 0.8}, "run_id": "1",
                           "pred": careful},
               "skippy": {"metrics": {"balanced_accuracy": 1.0, "all_balanced_accuracy": 0.6}, "run_id": "2",
                          "pred": skippy}}
    out = compare_methods(results, tmp_path)
    assert out["best"] == "careful"
    # rows 0-3: careful right, skippy skipped (b = 4); rows 8-9: careful wrong, skippy right (c = 2)
    assert (out["b"], out["c"]) == (4, 2)


def test_held_out_ood_share_flags_a_subject_unlike_the_others():
    """Issue #10.2: the domain is fitted per training split on training rows only; a held-out subject whose
    cells lie far from every training subject is flagged, ordinary held-out subjects are not."""
    from hybridwbc.evaluate.protocol import fit_domain, held_out_ood_share

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = np.array(["a", "b"] * 100, dtype=object)
    groups = np.repeat(np.arange(20), 10).astype(object)
    X[groups == 7] += 12.0  # one subject from another lab
    pred, splits, fitted = predict_out_of_sample(LogisticRegression(), X, y, groups, protocol="cv", n_splits=5)
    out = held_out_ood_share(fitted, splits, X, groups)
    assert [d.reference_.shape[0] for d in out["domains"]] == [len(train) for train, _ in splits]
    # subject 7 (10 of 200 cells) is flagged; of the other 190 held-out cells at most a few
    assert 10 / 200 <= out["ood_share_test"] <= 10 / 200 + 0.05
    assert out["ood_share_test_max"] >= 10 / 40
    assert fit_domain(LogisticRegression().fit(X, y), X, groups).inside(X[groups == 7]).all()


def test_domain_settings_are_a_schema():
    from hydra.errors import ConfigCompositionException

    from hybridwbc.config import compose_experiment

    cfg = compose_experiment("all_hem")
    assert cfg.eval.domain.enabled and cfg.eval.domain.quantile == 0.99
    with pytest.raises(ConfigCompositionException, match="eval.domain.quantle"):
        compose_experiment("all_hem", ["eval.domain.quantle=0.9"])


def test_comparison_refuses_methods_scored_on_different_splits(tmp_path):
    from hybridwbc.errors import DataLayoutError
    from hybridwbc.evaluate.compare import compare_methods

    y = np.array(["a", "b"] * 3, dtype=object)
    pa = Predictions(rows=np.arange(6), fold=np.zeros(6, int), y_true=y, y_pred=y, proba=np.full((6, 2), 0.5),
                     classes=["a", "b"])
    pb = Predictions(rows=np.arange(1, 7), fold=np.zeros(6, int), y_true=y, y_pred=y, proba=np.full((6, 2), 0.5),
                     classes=["a", "b"])
    results = {"m1": {"metrics": {"balanced_accuracy": 1.0}, "run_id": "1", "pred": pa},
               "m2": {"metrics": {"balanced_accuracy": 0.9}, "run_id": "2", "pred": pb}}
    with pytest.raises(DataLayoutError, match="'m1' and 'm2' were evaluated on different test rows"):
        compare_methods(results, tmp_path)
