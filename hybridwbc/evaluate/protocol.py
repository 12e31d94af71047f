"""Evaluation protocol: fit on training splits only, predict the held-out rows.

The protocol functions fit a fresh clone of the estimator on each training
split only (its inner hyperparameter search included) and predict the test
split, producing out-of-sample predictions for every evaluated row
(:func:`predict_out_of_sample`); :func:`final_model` is the model a run keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridwbc.data.splits import holdout_split, kfold_splits
from hybridwbc.errors import ConfigError
from hybridwbc.models.parts import fit_with_groups, proba_over

__all__ = ["Predictions", "fit_estimator", "predict_out_of_sample", "final_model"]


@dataclass
class Predictions:
    """Out-of-sample predictions.

    Attributes
    ----------
    rows : ndarray of shape (n,), dtype int64
        Positions in the feature table of the evaluated rows.
    fold : ndarray of shape (n,), dtype int64
    y_true, y_pred : ndarray of shape (n,), dtype object
    proba : ndarray of shape (n, n_classes), dtype float64
        Columns follow ``classes``.
    classes : list of str
    """

    rows: np.ndarray
    fold: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray
    classes: list


def fit_estimator(estimator, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None):
    """Fit ``estimator`` on training rows, passing ``groups`` to whatever takes them.

    See :func:`hybridwbc.models.parts.fit_with_groups`: a grid search, an estimator whose ``fit``
    has a ``groups`` argument (:class:`~hybridwbc.calibration.CalibratedModel`, the CNN estimators,
    the cascade) or the last step of a :class:`~sklearn.pipeline.Pipeline` gets the training rows'
    groups, so its inner splits (search, calibration, the CNN's validation split, cross-fitting)
    never share a subject.
    """
    return fit_with_groups(estimator, X, y, groups)


def predict_out_of_sample(estimator, X: np.ndarray, y: np.ndarray, groups: np.ndarray, protocol: str = "holdout",
                          test_size: float = 0.2, n_splits: int = 5, grouped: bool = True, seed: int = 0
                          ) -> tuple[Predictions, list[tuple[np.ndarray, np.ndarray]], list]:
    """Fit on training splits only and predict the held-out rows.

    Parameters
    ----------
    estimator : scikit-learn classifier (cloned per split)
    X : ndarray of shape (n, n_features)
    y : ndarray of shape (n,)
    groups : ndarray of shape (n,)
        Subject (or duplicate) groups; see :func:`hybridwbc.data.splits.split_groups`.
    protocol : {"holdout", "cv"}
    test_size : float
        Held-out share for ``holdout``.
    n_splits : int
        Folds for ``cv``.
    grouped : bool
        ``False`` splits by row (leaky where subjects exist).
    seed : int

    Returns
    -------
    predictions : Predictions
    splits : list of (train, test) index arrays
    fitted : list of fitted estimators, one per split
    """
    from sklearn.base import clone

    y = np.asarray(y, dtype=object)
    classes = sorted(set(y.tolist()))
    if protocol == "holdout":
        splits = [holdout_split(y, groups, test_size=test_size, seed=seed, grouped=grouped)]
    elif protocol == "cv":
        splits = list(kfold_splits(y, groups, n_splits=n_splits, seed=seed, grouped=grouped))
    else:
        raise ConfigError(f"Unknown eval.protocol {protocol!r}. Expected 'holdout' or 'cv'.")
    rows, folds, preds, probas, fitted = [], [], [], [], []
    for k, (train, test) in enumerate(splits):
        est = fit_estimator(clone(estimator), X[train], y[train], groups[train])
        fitted.append(est)
        p = proba_over(est, X[test], classes)
        rows.append(test)
        folds.append(np.full(len(test), k))
        probas.append(p)
        preds.append(np.asarray(est.predict(X[test]), dtype=object))
    rows = np.concatenate(rows)
    return Predictions(rows=rows, fold=np.concatenate(folds), y_true=y[rows], y_pred=np.concatenate(preds),
                       proba=np.vstack(probas), classes=classes), splits, fitted


def final_model(estimator, fitted: list, protocol: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray):
    """The model a run keeps: the evaluated one (``holdout``), or a clone refitted on all rows (``cv``)."""
    if protocol == "holdout":
        return fitted[0]
    from sklearn.base import clone

    return fit_estimator(clone(estimator), X, y, groups)
