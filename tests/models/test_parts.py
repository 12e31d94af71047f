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
