"""The applicability domain: scikit-learn contract, known answers on synthetic clouds, grouped calibration."""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from hybridwbc.errors import ConfigError
from hybridwbc.models.domain import ApplicabilityDomain, domain_representation


@parametrize_with_checks([ApplicabilityDomain()])
def test_sklearn_contract(estimator, check):
    check(estimator)


def _cloud(n, d=6, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def test_far_rows_are_outside_and_training_like_rows_inside():
    train = _cloud(400, seed=0)
    dom = ApplicabilityDomain().fit(train)
    near = ~dom.inside(_cloud(400, seed=1))
    far = ~dom.inside(_cloud(100, shift=8.0, seed=2))
    assert far.all()
    # new rows of the same distribution: about 1 - quantile of them outside (0.99 -> ~1%)
    assert near.mean() <= 0.05
    assert dom.describe()["n_train"] == 400 and dom.threshold_ > 0
    np.testing.assert_allclose(dom.decision_function(train[:3]), dom.threshold_ - dom.distance(train[:3]))


def test_groups_calibrate_on_other_subjects():
    """Cells of one subject are near-copies: without groups the threshold only knows within-subject distances."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(20, 5))
    X = np.vstack([c + rng.normal(scale=0.05, size=(10, 5)) for c in centres])
    groups = np.repeat(np.arange(20), 10)
    plain = ApplicabilityDomain().fit(X)
    grouped = ApplicabilityDomain().fit(X, groups=groups)
    new_subject = rng.normal(scale=3.0, size=(1, 5)) + rng.normal(scale=0.05, size=(10, 5))
    assert grouped.threshold_ > 5 * plain.threshold_
    assert not plain.inside(new_subject).any() and grouped.inside(new_subject).all()


def test_constant_and_zero_iqr_columns_do_not_break_the_scale():
    X = _cloud(50, d=3)
    X = np.hstack([X, np.ones((50, 1)), np.r_[np.zeros(45), np.arange(1, 6)][:, None]])
    dom = ApplicabilityDomain().fit(X)
    assert np.all(np.isfinite(dom.scale_)) and np.all(dom.scale_ > 0)


def test_bad_settings_fail_with_the_key():
    with pytest.raises(ConfigError, match="quantile must be in"):
        ApplicabilityDomain(quantile=1.5).fit(_cloud(10))
    with pytest.raises(ConfigError, match="n_neighbors >= 1 and n_splits >= 2"):
        ApplicabilityDomain(n_neighbors=0).fit(_cloud(10))
    with pytest.raises(ValueError, match="at least 2 samples in 2 groups"):
        ApplicabilityDomain().fit(_cloud(10), groups=np.zeros(10))


class _FakeCNN:
    def transform(self, X):
        return np.array([[len(str(p))] for p in np.asarray(X)[:, 0]], dtype=float)


class _WithCNN:
    def trained_cnn(self):
        return _FakeCNN()


def test_representation_is_features_or_embeddings_then_features():
    from hybridwbc.models.parts import WBCEstimator

    feats = np.arange(6, dtype=float).reshape(3, 2)
    np.testing.assert_array_equal(domain_representation(object(), feats), feats)
    X = np.hstack([np.array([["a"], ["bb"], ["ccc"]], dtype=object), feats.astype(object)])
    np.testing.assert_array_equal(domain_representation(object(), X), feats)  # no CNN: the path column dropped
    cnn_model = type("M", (_WithCNN, WBCEstimator), {})()
    np.testing.assert_array_equal(domain_representation(cnn_model, X), np.c_[[1.0, 2.0, 3.0], feats])
