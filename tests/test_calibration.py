"""CalibratedModel (a scikit-learn meta-estimator) and the calibration measures."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import parametrize_with_checks

from hybridwbc.calibration import (
    CalibratedModel,
    brier_score,
    calibration_metrics,
    calibration_split,
    expected_calibration_error,
    reliability_table,
    risk_coverage,
)
from hybridwbc.errors import ConfigError
from hybridwbc.report.calibration import reliability_png, risk_coverage_png


@parametrize_with_checks([CalibratedModel(LogisticRegression(), method=m) for m in ("sigmoid", "isotonic",
                                                                                    "temperature")]
                         + [CalibratedModel(LogisticRegression(), cv=2)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _blobs(n=600, k=3, seed=0, noise=2.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centres = rng.normal(0, 1.5, (k, 5))
    X = centres[y] + rng.normal(0, noise, (n, 5))
    return X, np.array([f"c{v}" for v in y], dtype=object)


def test_calibration_split_is_stratified_disjoint_and_grouped():
    y = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 1)
    fit, cal = calibration_split(y, size=0.2, seed=0)
    assert set(fit) | set(cal) == set(range(len(y))) and not set(fit) & set(cal)
    assert (y[cal] == "a").sum() == 10 and (y[cal] == "b").sum() == 6 and "c" not in set(y[cal])
    groups = np.repeat(np.arange(20), 4)
    yg = np.where(groups < 10, "a", "b")
    fit, cal = calibration_split(yg, groups, size=0.2, seed=1)
    assert not set(groups[fit]) & set(groups[cal])
    assert set(yg[cal]) == {"a", "b"} and 8 <= len(cal) <= 24
    np.testing.assert_array_equal(calibration_split(yg, groups, 0.2, 1)[1], cal)  # deterministic
    with pytest.raises(ValueError, match="groups has 3 entries but y has 80"):
        calibration_split(yg, groups[:3])


class Overconfident(ClassifierMixin, BaseEstimator):
    """A logistic regression whose probabilities are sharpened: ``p ** power``, renormalised."""

    def __init__(self, power=4.0):
        self.power = power

    def fit(self, X, y):
        self.lr_ = LogisticRegression().fit(X, y)
        self.classes_ = self.lr_.classes_
        return self

    def predict_proba(self, X):
        p = self.lr_.predict_proba(X) ** self.power
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


@pytest.mark.parametrize("method", ["sigmoid", "isotonic", "temperature"])
def test_calibration_lowers_ece_of_an_overconfident_model(method):
    X, y = _blobs(n=3000, seed=0)
    X, y, Xt, yt = X[:2000], y[:2000], X[2000:], y[2000:]
    m = CalibratedModel(Overconfident(), method=method, random_state=0).fit(X, y)
    classes = list(m.classes_)
    p_raw, p_cal = m.estimator_.predict_proba(Xt), m.predict_proba(Xt)
    np.testing.assert_allclose(p_cal.sum(axis=1), 1.0, atol=1e-9)
    ece_raw, ece_cal = expected_calibration_error(yt, p_raw, classes), expected_calibration_error(yt, p_cal, classes)
    assert ece_raw > 0.1 and ece_cal < ece_raw / 2, (ece_raw, ece_cal)
    assert len(m.calibration_indices_) == pytest.approx(400, abs=3)
    assert brier_score(yt, p_cal, classes) < brier_score(yt, p_raw, classes)
    if method == "temperature":
        assert m.calibrator_ is None and m.temperature_ == pytest.approx(4.0, rel=0.25)
        np.testing.assert_array_equal(m.predict(Xt), m.estimator_.predict(Xt))  # T keeps the argmax
        np.testing.assert_allclose(m.predict_proba_uncalibrated(Xt), p_raw, atol=1e-9)


def test_temperature_shrinks_an_overconfident_model():
    X, y = _blobs(n=1200, seed=3, noise=3.0)
    m = CalibratedModel(RandomForestClassifier(n_estimators=30, min_samples_leaf=1, random_state=0),
                        method="temperature").fit(X, y)
    assert m.temperature_ != pytest.approx(1.0)
    svc = CalibratedModel(SVC(), method="temperature").fit(X, y)  # no predict_proba: decision_function logits
    assert svc.predict_proba(X[:5]).shape == (5, 3)
    Xb, yb = X[y != "c2"], y[y != "c2"]
    b = CalibratedModel(SVC(), method="temperature").fit(Xb, yb)  # binary decision_function is 1-D
    assert b.predict_proba(Xb[:4]).shape == (4, 2)


def test_groups_reach_the_split_and_an_inner_search():
    X, y = _blobs(n=240, k=2, seed=1)
    groups = np.repeat(np.arange(60), 4)
    y = np.where(groups % 2 == 0, "c0", "c1").astype(object)
    X = X + (y == "c1")[:, None] * 2.0
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=GroupKFold(3))
    m = CalibratedModel(search, method="sigmoid").fit(X, y, groups=groups)
    assert not set(groups[m.fit_indices_]) & set(groups[m.calibration_indices_])
    assert hasattr(m.estimator_, "best_params_")


class _RowRecorder(LogisticRegression):
    """Records the row ids (column 0) of every fit."""

    fits: list = []

    def fit(self, X, y):
        _RowRecorder.fits.append(np.asarray(X)[:, 0].astype(int))
        return super().fit(X[:, 1:], y)

    def decision_function(self, X):  # predict_proba and predict go through it
        return super().decision_function(np.asarray(X)[:, 1:])


@pytest.mark.parametrize("method", ["sigmoid", "temperature"])
def test_cross_fitted_calibration_keeps_subjects_whole_and_calibrates(method):
    X, y = _blobs(n=2200, k=2, seed=4)
    X, y, Xt, yt = X[:1200], y[:1200], X[1200:], y[1200:]
    groups = np.arange(len(y)) // 6  # 200 subjects of 6 cells
    X = np.column_stack([np.arange(len(y)), X])
    _RowRecorder.fits = []
    m = CalibratedModel(_RowRecorder(), method=method, cv=3).fit(X, y, groups=groups)
    *folds, full = _RowRecorder.fits
    assert len(folds) == 3 and sorted(full.tolist()) == list(range(len(y)))  # then refitted on every row
    for rows in folds:
        held_out = np.setdiff1d(np.arange(len(y)), rows)
        assert 0 < len(held_out) < len(y) and not set(groups[rows]) & set(groups[held_out])
    assert len(m.calibration_indices_) == len(y)
    over = CalibratedModel(Overconfident(), method=method, cv=3).fit(X[:, 1:], y, groups=groups)
    classes = list(over.classes_)
    ece_raw = expected_calibration_error(yt, over.estimator_.predict_proba(Xt), classes)
    assert expected_calibration_error(yt, over.predict_proba(Xt), classes) < ece_raw / 2


def test_configured_svm_head_calibrates_on_subject_grouped_folds(compose, monkeypatch):
    """The head of cnn_svm and hybrid (conf/head/svm_calibrated.yaml): grouped inner calibration."""
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    from hybridwbc.config import build_estimator
    from hybridwbc.models.parts import fit_with_groups

    fits = []
    real = Pipeline.fit

    def spy(self, X, y=None, **params):
        fits.append(np.asarray(X)[:, 0].astype(int))
        return real(self, X, y, **params)

    monkeypatch.setattr(Pipeline, "fit", spy)
    X, y = _blobs(n=240, k=2, seed=6)
    groups = np.arange(len(y)) // 8
    X = np.column_stack([np.arange(len(y)), X])
    for name in ("cnn_svm", "hybrid"):
        cfg, _ = compose("+experiment=all_hem", f"classifier={name}")
        head = build_estimator(cfg.classifier, cfg.seed).head
        fits.clear()
        fit_with_groups(clone(head), X, y, groups)
        inner = [rows for rows in fits if len(rows) < len(y)]
        assert len(inner) == 3, name
        for rows in inner:
            assert not set(groups[rows]) & set(groups[np.setdiff1d(np.arange(len(y)), rows)]), name


def test_bad_settings_and_data_raise():
    X, y = _blobs(n=60)
    with pytest.raises(ConfigError, match=r"cv must be null or an integer of at least 2; received 1"):
        CalibratedModel(cv=1).fit(X, y)

    class _ForgetsC2(LogisticRegression):
        def fit(self, X, y):
            keep = (y != "c2") if len(y) < 60 else np.ones(len(y), bool)
            return super().fit(X[keep], y[keep])

    with pytest.raises(ValueError, match=r"A calibration fold trained without class\(es\) \['c2'\]"):
        CalibratedModel(_ForgetsC2(), cv=3).fit(X, y)
    with pytest.raises(ConfigError, match="method must be one of"):
        CalibratedModel(method="platt").fit(X, y)
    with pytest.raises(ConfigError, match=r"calibration_size must be in \(0, 0.5\]"):
        CalibratedModel(calibration_size=0.9).fit(X, y)
    with pytest.raises(ValueError, match="needs at least 2 classes"):
        CalibratedModel().fit(X, np.array(["a"] * 60))
    with pytest.raises(ValueError, match="Cannot carve a calibration split"):
        CalibratedModel().fit(X[:2], np.array(["a", "b"]))
    with pytest.raises(ValueError, match="X has 60 samples but y has 59"):
        CalibratedModel().fit(X, y[:59])


def test_measures_on_known_values(tmp_path):
    classes = ["a", "b"]
    y = np.array(["a", "a", "b", "b"], dtype=object)
    perfect = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], float)
    assert expected_calibration_error(y, perfect, classes) == 0.0
    assert brier_score(y, perfect, classes) == 0.0
    worst = perfect[:, ::-1]
    assert expected_calibration_error(y, worst, classes) == 1.0 and brier_score(y, worst, classes) == 2.0
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    # bins (15): 0.9 -> acc 1; 0.6 -> acc 1; 0.7 -> acc 1; 0.8 -> acc 0 (true b, predicted a)
    expected = (abs(1 - 0.9) + abs(1 - 0.6) + abs(1 - 0.7) + abs(0 - 0.8)) / 4
    assert expected_calibration_error(y, p, classes) == pytest.approx(expected)
    assert brier_score(y, p, classes) == pytest.approx(np.mean([0.02, 0.32, 0.18, 1.28]))
    t = reliability_table(y, p, classes, n_bins=10)
    assert t["count"].sum() == 4 and len(t) == 10
    rc = risk_coverage(y, p, classes)
    assert list(rc.columns) == ["threshold", "coverage", "accuracy", "n_kept"]
    assert rc["threshold"].tolist() == [0.0, 0.6, 0.7, 0.8, 0.9]
    assert rc["coverage"].tolist() == [1.0, 1.0, 0.75, 0.5, 0.25]
    assert rc["accuracy"].tolist() == pytest.approx([0.75, 0.75, 2 / 3, 0.5, 1.0])
    m = calibration_metrics(y, p, classes)
    assert set(m) == {"ece", "brier", "log_loss", "aurc"} and m["log_loss"] > 0
    assert reliability_png(y, p, classes, tmp_path / "rel.png", title="t").stat().st_size > 1000
    assert risk_coverage_png(y, p, classes, tmp_path / "rc.png").stat().st_size > 1000
    with pytest.raises(ValueError, match=r"proba must have shape \(n_samples, n_classes\) = \(4, 2\)"):
        brier_score(y, p[:, :1], classes)
    assert np.isnan(expected_calibration_error([], np.empty((0, 2)), classes))


def test_used_through_run_experiment(compose, tmp_path, monkeypatch):
    """A calibrated head composes from conf/ and trains in a run."""
    monkeypatch.delenv("HYBRIDWBC_DATA", raising=False)
    from hybridwbc.run import run_experiment

    cfg, choices = compose("+experiment=wbc5", "classifier=svm", "data.synthetic.n_per_class=15",
                           "data.synthetic.size=64", "eval.n_bootstrap=20", "features.n_jobs=1",
                           "tracking=disabled")
    out = run_experiment(cfg, tmp_path / "run", "wbc5", choices)
    assert out["metrics"]["accuracy"] > 0.6
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv")
    np.testing.assert_allclose(preds.filter(like="p_").sum(axis=1), 1.0, atol=1e-6)


def test_without_subjects_a_wrapped_estimator_gets_no_row_ids_as_groups():
    """Row ids as groups are for an inner search only; a CNN given them would split its validation by row."""
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.linear_model import LogisticRegression

    from hybridwbc.calibration import CalibratedModel

    class Spy(ClassifierMixin, BaseEstimator):
        def fit(self, X, y, groups=None):
            self.groups_seen_ = groups
            self.inner_ = LogisticRegression().fit(X, y)
            self.classes_ = self.inner_.classes_
            return self

        def decision_function(self, X):
            return self.inner_.decision_function(X)

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), np.array(["a", "b"] * 30, dtype=object)
    model = CalibratedModel(Spy()).fit(X, y)
    assert model.estimator_.groups_seen_ is None
