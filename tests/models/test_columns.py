import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from hybridwbc.config import build_estimator
from hybridwbc.errors import ConfigError
from hybridwbc.models.columns import ColumnPrefixSelector


@parametrize_with_checks([ColumnPrefixSelector()])
def test_sklearn_contract(estimator, check):
    check(estimator)


def test_selects_by_prefix():
    X = np.arange(12.0).reshape(3, 4)
    sel = ColumnPrefixSelector(["granularity__", "colour__"],
                               ["granularity__a", "geometry__b", "colour__c", "texture__d"]).fit(X)
    np.testing.assert_array_equal(sel.transform(X), X[:, [0, 2]])
    assert list(sel.get_feature_names_out()) == ["granularity__a", "colour__c"]


def test_errors():
    X = np.zeros((2, 3))
    with pytest.raises(ConfigError, match="needs feature_names for the 3 columns of X; received None"):
        ColumnPrefixSelector(["a"]).fit(X)
    with pytest.raises(ConfigError, match="match none of the 3 feature names"):
        ColumnPrefixSelector(["zzz"], ["a", "b", "c"]).fit(X)


def test_classifier_columns_wrap_and_rewrite_the_grid(compose):
    cfg, _ = compose("+experiment=granularity_eo_baso")
    est = build_estimator(cfg.methods.granularity, cfg.seed)
    assert est.named_steps["select"].prefixes == ["granularity__"]
    assert "select__feature_names" in est.get_params(deep=True)
    from omegaconf import OmegaConf

    from hybridwbc.config import ClassifierConfig

    node = OmegaConf.merge(OmegaConf.structured(ClassifierConfig), {
        "columns": ["geometry__"], "search": {"param_grid": {"max_depth": [2, 4]}},
        "estimator": {"_target_": "sklearn.ensemble.RandomForestClassifier", "n_estimators": 5}})
    est = build_estimator(node, 0)
    assert list(est.param_grid) == ["model__max_depth"]
    assert "estimator__select__feature_names" in est.get_params(deep=True)
