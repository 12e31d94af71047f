"""The estimator interface (validate, trained_cnn), probabilities over a class list, and who takes groups."""

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hybridwbc.calibration import CalibratedModel
from hybridwbc.errors import ConfigError
from hybridwbc.models.cascade import CascadeClassifier
from hybridwbc.models.parts import WBCEstimator, proba_over, takes_groups, trained_cnn, validate


class _Checked(WBCEstimator):
    def __init__(self, ok=True):
        self.ok = ok

    def validate(self):
        if not self.ok:
            raise ConfigError("bad part")


def test_validate_forwards_through_composites():
    validate(RandomForestClassifier())  # a plain estimator has nothing to check
    validate(None)
    validate(CascadeClassifier(stage1=LogisticRegression(), stage2=_Checked(ok=True)))
    with pytest.raises(ConfigError, match="bad part"):
        validate(CascadeClassifier(stage2=_Checked(ok=False)))
    with pytest.raises(ConfigError, match="bad part"):
        validate(CalibratedModel(_Checked(ok=False)))


def test_trained_cnn_is_none_without_a_cnn():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), np.repeat(["a", "b"], 20)
    assert trained_cnn(RandomForestClassifier(n_estimators=5).fit(X, y)) is None
    assert trained_cnn(CascadeClassifier(stage2=RandomForestClassifier(n_estimators=5)).fit(X, y)) is None
    assert trained_cnn(CalibratedModel(LogisticRegression()).fit(X, y)) is None
    assert trained_cnn(CalibratedModel(LogisticRegression())) is None  # not fitted


def test_proba_over_orders_columns_and_fills_unknown_classes():
    X = np.array([[0.0], [1.0], [0.1], [0.9]])
    est = LogisticRegression().fit(X, ["b", "a", "b", "a"])
    p = proba_over(est, X, ["c", "a", "b"])
    assert p.shape == (4, 3) and (p[:, 0] == 0).all()
    np.testing.assert_allclose(p[:, 1:], est.predict_proba(X)[:, [0, 1]])

    class _NoProba:
        classes_ = np.array(["a", "b"])

        def predict(self, X):
            return np.array(["b"] * len(X))

    np.testing.assert_array_equal(proba_over(_NoProba(), X, ["a", "b"]), np.tile([0.0, 1.0], (4, 1)))


def test_takes_groups():
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    assert takes_groups(GridSearchCV(pipe, {"logisticregression__C": [1.0]}))
    assert takes_groups(CalibratedModel())
    assert not takes_groups(pipe) and not takes_groups(RandomForestClassifier())


def test_grouped_folds_partition_rows_and_never_split_a_group():
    from hybridwbc.models.parts import grouped_folds

    y = np.array(["a"] * 24 + ["b"] * 24, dtype=object)
    groups = np.repeat(np.arange(12), 4)  # 6 subjects per class, 4 rows each
    folds = grouped_folds(y, groups, 3, seed=0)
    assert len(folds) == 3
    assert sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(48))
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te]) and set(y[tr]) == {"a", "b"}
    assert len(grouped_folds(y, np.where(y == "a", groups % 2, 10 + groups), 5)) == 2  # "a" has 2 subjects
    assert len(grouped_folds(y, None, 4)) == 4  # no groups: each row is its own
    with pytest.raises(ValueError, match=r"class 'a' has 1 subject/image group"):
        grouped_folds(y, np.where(y == "a", 0, groups), 3)
    with pytest.raises(ValueError, match=r"at least 2 folds; received 1"):
        grouped_folds(y, groups, 1)


def test_fit_with_groups_reaches_the_last_step_of_a_pipeline():
    from hybridwbc.models.parts import fit_with_groups

    class _Grouped(LogisticRegression):
        def fit(self, X, y, groups=None):
            self.groups_seen_ = groups
            return super().fit(X, y)

    X = np.random.default_rng(0).normal(size=(20, 2))
    y = np.repeat(["a", "b"], 10)
    groups = np.arange(20) // 2
    pipe = fit_with_groups(make_pipeline(StandardScaler(), _Grouped()), X, y, groups)
    assert pipe[-1].groups_seen_ is groups
    assert fit_with_groups(_Grouped(), X, y).groups_seen_ is None
    assert fit_with_groups(RandomForestClassifier(n_estimators=3), X, y, groups).n_features_in_ == 2
