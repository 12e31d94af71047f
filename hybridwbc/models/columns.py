"""Select feature-table columns by name prefix inside a scikit-learn pipeline."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from hybridwbc.errors import ConfigError
from hybridwbc.models.parts import SelectsByName

__all__ = ["ColumnPrefixSelector"]


class ColumnPrefixSelector(SelectsByName, TransformerMixin, BaseEstimator):
    """Keep the columns whose names start with one of ``prefixes``.

    The run builds it with ``feature_names``, the names of the design matrix's
    columns (:func:`hybridwbc.config.build_estimator`), so configs can say
    ``prefixes: [granularity__]``.

    Parameters
    ----------
    prefixes : sequence of str, optional
        ``None`` keeps every column.
    feature_names : sequence of str, optional
        Names of the columns of ``X``.

    Attributes
    ----------
    columns_ : ndarray of int
        Indices kept.
    n_features_in_ : int
    """

    def __init__(self, prefixes: Sequence[str] | None = None, feature_names: Sequence[str] | None = None):
        self.prefixes = prefixes
        self.feature_names = feature_names

    def fit(self, X, y=None):
        """Resolve the prefixes to column indices.

        Raises
        ------
        ConfigError
            If names are needed but missing, have the wrong length, or match nothing.
        """
        X = validate_data(self, X)
        n = X.shape[1]
        if self.prefixes is None:
            self.columns_ = np.arange(n)
            return self
        if self.feature_names is None or len(self.feature_names) != n:
            got = None if self.feature_names is None else len(self.feature_names)
            raise ConfigError(
                f"ColumnPrefixSelector needs feature_names for the {n} columns of X; received {got}. "
                "The run passes the feature table's names; pass them yourself when using the selector directly."
            )
        keep = [i for i, name in enumerate(self.feature_names)
                if any(str(name).startswith(p) for p in self.prefixes)]
        if not keep:
            raise ConfigError(
                f"Column prefixes {list(self.prefixes)} match none of the {n} feature names "
                f"(e.g. {list(self.feature_names)[:4]}). Fix the prefixes."
            )
        self.columns_ = np.asarray(keep)
        return self

    def transform(self, X):
        """Return ``X[:, columns_]``; shape (n_samples, len(columns_))."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return X[:, self.columns_]

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self)
        names = self.feature_names if self.feature_names is not None else [f"x{i}" for i in range(self.n_features_in_)]
        return np.asarray(names, dtype=object)[self.columns_]
