"""Applicability domain: does a new row look like the rows the model was trained on?

A classifier answers every row it is given, also rows far from anything it saw: an RBF SVM
trained on C-NMC cells gives every PBC neutrophil the same confident probability, because
its kernel saturates far from the training data. :class:`ApplicabilityDomain` is fitted on
the training rows' representation (:func:`domain_representation`: the design matrix of a
feature model, the CNN embeddings plus any feature columns of a model that holds a CNN) and
says, for each new row, whether it lies inside the training domain.

Distance. Each column is standardised robustly (median, and the inter-quartile range
``/ 1.349``; a column with zero IQR uses its standard deviation, a constant column 1). The
distance of a row is the root-mean-square over columns of its standardised difference to
each of its ``k`` nearest training rows, averaged over those ``k``::

    d(x) = mean_{j in kNN(x)} ||z(x) - z(x_j)||_2 / sqrt(n_features)

Threshold. The training rows are split into ``n_splits`` folds (whole groups per fold when
``groups`` are given, e.g. subjects), and each row's distance is measured to the rows of the
*other* folds only, so no row scores itself and no subject scores its own cells: the way a
new subject's cells arrive. The threshold is the ``quantile`` (default 0.99) of those
distances; a row further than it is outside. Distances at prediction time are measured to
all training rows, so the threshold is slightly conservative (fewer rows flagged).

``inside`` says True inside; ``score_samples`` is ``-d(x)`` and ``decision_function`` is
``threshold - d(x)`` (scikit-learn's outlier convention). It is deliberately no scikit-learn
outlier detector (no ``predict``/``fit_predict``): a training row measured against a reference
set that holds it is always close, so "which training rows are outliers" is
``train_distances_ > threshold_``, not ``predict`` of the training rows.
This module imports neither TensorFlow nor the saved-model format.
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from hybridwbc.errors import ConfigError
from hybridwbc.models.parts import trained_cnn

__all__ = ["ApplicabilityDomain", "domain_representation"]


class ApplicabilityDomain(BaseEstimator):
    """k-nearest-neighbour distance in robustly standardised space, thresholded at a training quantile.

    Parameters
    ----------
    quantile : float in (0, 1], default 0.99
        Share of the training rows' out-of-fold distances that fall inside.
    n_neighbors : int, default 5
        ``k``; lowered to the smallest reference fold when the training set is small.
    n_splits : int, default 5
        Folds of the out-of-fold distances (at most the number of groups).

    Attributes
    ----------
    center_, scale_ : ndarray of shape (n_features,), float64
    reference_ : ndarray of shape (n_train, n_features), float32
        The standardised training rows.
    n_neighbors_ : int
        The ``k`` used.
    train_distances_ : ndarray of shape (n_train,), float64
        Out-of-fold distance of each training row.
    threshold_ : float
    offset_ : float
        ``-threshold_`` (scikit-learn's convention).
    n_features_in_ : int
    """

    def __init__(self, quantile: float = 0.99, n_neighbors: int = 5, n_splits: int = 5):
        self.quantile = quantile
        self.n_neighbors = n_neighbors
        self.n_splits = n_splits

    def fit(self, X, y=None, groups=None):
        """Fit on the training rows ``X`` (shape (n_samples, n_features), float); ``y`` is ignored.

        Parameters
        ----------
        groups : array-like of shape (n_samples,), optional
            Rows of a group (a subject) fall in the same fold; default: each row its own group.

        Raises
        ------
        ConfigError
            If ``quantile``, ``n_neighbors`` or ``n_splits`` is out of range.
        ValueError
            If ``X`` has fewer than 2 rows (or groups), or is not finite.
        """
        from sklearn.model_selection import GroupKFold

        if not 0.0 < float(self.quantile) <= 1.0:
            raise ConfigError(f"ApplicabilityDomain quantile must be in (0, 1]; received {self.quantile!r}.")
        if int(self.n_neighbors) < 1 or int(self.n_splits) < 2:
            raise ConfigError("ApplicabilityDomain needs n_neighbors >= 1 and n_splits >= 2; received "
                              f"n_neighbors={self.n_neighbors!r}, n_splits={self.n_splits!r}.")
        X = validate_data(self, X, dtype=np.float64)
        n = X.shape[0]
        groups = np.arange(n) if groups is None else np.asarray(groups)
        n_groups = len(np.unique(groups))
        if n < 2 or n_groups < 2:
            raise ValueError(f"ApplicabilityDomain needs at least 2 samples in 2 groups; received n_samples = {n} "
                             f"in {n_groups} group(s).")
        self.center_ = np.median(X, axis=0)
        q75, q25 = np.percentile(X, [75, 25], axis=0)
        scale = (q75 - q25) / 1.349
        std = X.std(axis=0)
        scale = np.where(scale > 0, scale, np.where(std > 0, std, 1.0))
        self.scale_ = scale
        Z = self._standardise(X)
        folds = list(GroupKFold(n_splits=min(int(self.n_splits), n_groups)).split(Z, groups=groups))
        self.n_neighbors_ = int(min(int(self.n_neighbors), min(len(train) for train, _ in folds)))
        dist = np.empty(n)
        for train, test in folds:
            dist[test] = self._knn_distance(Z[test], Z[train])
        self.train_distances_ = dist
        self.threshold_ = float(np.quantile(dist, float(self.quantile)))
        self.offset_ = -self.threshold_
        self.reference_ = Z.astype(np.float32)
        return self

    def _standardise(self, X) -> np.ndarray:
        return np.arcsinh((np.asarray(X, dtype=np.float64) - self.center_) / self.scale_)

    def _knn_distance(self, Z: np.ndarray, ref: np.ndarray, batch: int = 1024) -> np.ndarray:
        """Mean RMS distance of each row of ``Z`` to its ``n_neighbors_`` nearest rows of ``ref``."""
        ref = np.asarray(ref, dtype=np.float64)
        ref_sq = (ref ** 2).sum(axis=1)
        k, out = self.n_neighbors_, np.empty(len(Z))
        for s in range(0, len(Z), batch):
            z = Z[s:s + batch]
            d2 = np.maximum((z ** 2).sum(axis=1)[:, None] + ref_sq[None, :] - 2.0 * z @ ref.T, 0.0)
            near = np.partition(d2, k - 1, axis=1)[:, :k] if k < d2.shape[1] else d2
            out[s:s + batch] = np.sqrt(near).mean(axis=1) / np.sqrt(Z.shape[1])
        return out

    def distance(self, X) -> np.ndarray:
        """``d(x)`` of each row: shape (n_samples,), float64."""
        check_is_fitted(self, "reference_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._knn_distance(self._standardise(X), self.reference_)

    def score_samples(self, X) -> np.ndarray:
        """``-d(x)``: higher is more typical of the training rows; shape (n_samples,)."""
        return -self.distance(X)

    def decision_function(self, X) -> np.ndarray:
        """``threshold_ - d(x)``: negative outside the domain; shape (n_samples,)."""
        return self.score_samples(X) - self.offset_

    def inside(self, X) -> np.ndarray:
        """Whether each row lies inside the domain (``d(x) <= threshold_``); shape (n_samples,), bool."""
        return self.decision_function(X) >= 0

    def describe(self) -> dict:
        """What ``model.json`` records: the settings, the threshold and the training size."""
        check_is_fitted(self, "reference_")
        return {"method": "knn_robust_standardised", "quantile": float(self.quantile),
                "n_neighbors": int(self.n_neighbors_), "threshold": float(self.threshold_),
                "n_train": int(self.reference_.shape[0]), "n_features": int(self.n_features_in_)}


def domain_representation(estimator, X) -> np.ndarray:
    """What the applicability domain of a fitted ``estimator`` looks at, for its design matrix ``X``.

    Parameters
    ----------
    estimator : fitted classifier
    X : array-like of shape (n, n_columns)
        As the estimator takes it: a float feature table, or image paths in column 0 then
        (optionally) feature columns.

    Returns
    -------
    R : ndarray of shape (n, n_repr), float64
        For an estimator holding a trained CNN (:func:`hybridwbc.models.parts.trained_cnn`):
        the CNN's embeddings of the paths, then the feature columns; otherwise the feature
        columns (the path column, if any, dropped).
    """
    X = np.asarray(X) if not hasattr(X, "dtype") else X
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    has_paths = X.dtype == object and X.shape[0] > 0 and isinstance(X[0, 0], (str, bytes, os.PathLike))
    features = np.asarray(X[:, 1:] if has_paths else X, dtype=np.float64)
    cnn = trained_cnn(estimator)
    if cnn is None or not has_paths:
        return features
    emb = np.asarray(cnn.transform(X[:, :1]), dtype=np.float64)
    return np.hstack([emb, features]) if features.shape[1] else emb
