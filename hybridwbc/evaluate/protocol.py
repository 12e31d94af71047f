"""Evaluation protocol: fit on training splits only, predict the held-out rows.

The protocol functions fit a fresh clone of the estimator on each training
split only (its inner hyperparameter search included) and predict the test
split, producing out-of-sample predictions for every evaluated row
(:func:`predict_out_of_sample`); :func:`final_model` is the model a run keeps.
:func:`fit_domain` fits the applicability domain of a fitted model on its own training
rows, and :func:`held_out_ood_share` measures, split by split, the share of held-out rows
the training split's domain flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hybridwbc.data.splits import holdout_split, kfold_splits
from hybridwbc.errors import ConfigError
from hybridwbc.models.parts import fit_with_groups, proba_over

__all__ = ["Predictions", "fit_estimator", "make_splits", "predict_out_of_sample", "with_skipped", "SKIPPED",
           "final_model", "fit_domain", "held_out_ood_share"]


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
    skipped : ndarray of shape (m,), dtype int64
        Positions of the test rows of every split that the method could not score (no cell found for a
        method that needs segmentation, unreadable image); empty when every test row was scored.
    skipped_fold : ndarray of shape (m,), dtype int64
    """

    rows: np.ndarray
    fold: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray
    classes: list
    skipped: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    skipped_fold: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))


def fit_estimator(estimator, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None):
    """Fit ``estimator`` on training rows, passing ``groups`` to whatever takes them.

    See :func:`hybridwbc.models.parts.fit_with_groups`: a grid search, an estimator whose ``fit``
    has a ``groups`` argument (:class:`~hybridwbc.calibration.CalibratedModel`, the CNN estimators,
    the cascade) or the last step of a :class:`~sklearn.pipeline.Pipeline` gets the training rows'
    groups, so its inner splits (search, calibration, the CNN's validation split, cross-fitting)
    never share a subject.
    """
    return fit_with_groups(estimator, X, y, groups)


def make_splits(y: np.ndarray, groups: np.ndarray, protocol: str = "holdout", test_size: float = 0.2,
                n_splits: int = 5, grouped: bool = True, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(train, test)`` index arrays of a protocol (``holdout``: one split; ``cv``: ``n_splits`` folds).

    Raises
    ------
    ConfigError
        If ``protocol`` is neither ``holdout`` nor ``cv``.
    """
    y = np.asarray(y, dtype=object)
    if protocol == "holdout":
        return [holdout_split(y, groups, test_size=test_size, seed=seed, grouped=grouped)]
    if protocol == "cv":
        return list(kfold_splits(y, groups, n_splits=n_splits, seed=seed, grouped=grouped))
    raise ConfigError(f"Unknown eval.protocol {protocol!r}. Expected 'holdout' or 'cv'.")


def predict_out_of_sample(estimator, X: np.ndarray, y: np.ndarray, groups: np.ndarray, protocol: str = "holdout",
                          test_size: float = 0.2, n_splits: int = 5, grouped: bool = True, seed: int = 0,
                          usable: np.ndarray | None = None
                          ) -> tuple[Predictions, list[tuple[np.ndarray, np.ndarray]], list]:
    """Fit on training splits only and predict the held-out rows.

    The splits are drawn over *all* rows, so every method of a comparison meets the same test rows;
    rows a method cannot use (``usable`` false: no cell found for a method that needs segmentation,
    unreadable images) are left out of its fits and reported as ``skipped`` test rows, never dropped
    silently.

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
    usable : ndarray of shape (n,), dtype bool, optional
        Rows this method can fit on and score (default: all).

    Returns
    -------
    predictions : Predictions
    splits : list of (train, test) index arrays
    fitted : list of fitted estimators, one per split
    """
    from sklearn.base import clone

    y = np.asarray(y, dtype=object)
    usable = np.ones(len(y), dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
    classes = sorted(set(y[usable].tolist()))
    splits = make_splits(y, groups, protocol, test_size, n_splits, grouped, seed)
    rows, folds, preds, probas, fitted, skipped, skipped_fold = [], [], [], [], [], [], []
    for k, (train, test) in enumerate(splits):
        train = train[usable[train]]
        skipped.append(test[~usable[test]])
        skipped_fold.append(np.full(int((~usable[test]).sum()), k))
        test = test[usable[test]]
        est = fit_estimator(clone(estimator), X[train], y[train], groups[train])
        fitted.append(est)
        p = proba_over(est, X[test], classes)
        rows.append(test)
        folds.append(np.full(len(test), k))
        probas.append(p)
        preds.append(np.asarray(est.predict(X[test]), dtype=object))
    rows = np.concatenate(rows)
    return Predictions(rows=rows, fold=np.concatenate(folds), y_true=y[rows], y_pred=np.concatenate(preds),
                       proba=np.vstack(probas), classes=classes,
                       skipped=np.concatenate(skipped).astype(np.int64),
                       skipped_fold=np.concatenate(skipped_fold).astype(np.int64)), splits, fitted


#: The label a skipped test row gets when metrics count it (always wrong).
SKIPPED = "(skipped)"


def with_skipped(pred: Predictions, y: np.ndarray) -> Predictions:
    """``pred`` extended by its skipped test rows, each predicted :data:`SKIPPED` (counted wrong) with
    uniform probabilities: metrics on *all* test rows of the splits, not only the scored ones.

    Parameters
    ----------
    pred : Predictions
    y : ndarray of shape (n,)
        Labels of every row of the table (``pred.rows`` and ``pred.skipped`` index it).
    """
    m, k = len(pred.skipped), len(pred.classes)
    y = np.asarray(y, dtype=object)
    return Predictions(rows=np.concatenate([pred.rows, pred.skipped]),
                       fold=np.concatenate([pred.fold, pred.skipped_fold]),
                       y_true=np.concatenate([pred.y_true, y[pred.skipped]]),
                       y_pred=np.concatenate([pred.y_pred, np.full(m, SKIPPED, dtype=object)]),
                       proba=np.vstack([pred.proba, np.full((m, k), 1.0 / k)]), classes=pred.classes)


def final_model(estimator, fitted: list, protocol: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                usable: np.ndarray | None = None):
    """The model a run keeps: the evaluated one (``holdout``), or a clone refitted on all usable rows (``cv``)."""
    if protocol == "holdout":
        return fitted[0]
    from sklearn.base import clone

    keep = np.ones(len(y), dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
    return fit_estimator(clone(estimator), X[keep], np.asarray(y, dtype=object)[keep], np.asarray(groups)[keep])


def fit_domain(estimator, X: np.ndarray, groups: np.ndarray | None = None, quantile: float = 0.99,
               n_neighbors: int = 5):
    """The applicability domain of the fitted ``estimator``, fitted on its training rows ``X`` only.

    Parameters
    ----------
    estimator : fitted classifier
    X : ndarray of shape (n_train, n_columns)
        The design matrix the estimator was fitted on.
    groups : ndarray of shape (n_train,), optional
        Subjects (or duplicate groups): the domain's threshold is calibrated on distances to
        other groups only.
    quantile, n_neighbors
        See :class:`~hybridwbc.models.domain.ApplicabilityDomain`.

    Returns
    -------
    ApplicabilityDomain or None
        ``None`` where the estimator's representation has no columns.
    """
    from hybridwbc.models.domain import ApplicabilityDomain, domain_representation

    R = domain_representation(estimator, X)
    if R.shape[1] == 0:
        return None
    return ApplicabilityDomain(quantile=quantile, n_neighbors=n_neighbors).fit(R, groups=groups)


def held_out_ood_share(fitted: list, splits: list, X: np.ndarray, groups: np.ndarray, **params) -> dict:
    """Per split, fit the domain on the training rows and flag the held-out rows.

    Parameters
    ----------
    fitted : list of fitted estimators, one per split (from :func:`predict_out_of_sample`)
    splits : list of (train, test) index arrays
    X : ndarray of shape (n, n_columns)
    groups : ndarray of shape (n,)
    **params
        ``quantile``, ``n_neighbors`` of :func:`fit_domain`.

    Returns
    -------
    dict
        ``ood_share_test`` (held-out rows flagged, pooled over splits), ``ood_share_test_max``
        (the largest share of one split), and ``domains``: the fitted domains (one per split;
        not a metric).
    """
    from hybridwbc.models.domain import domain_representation

    flagged, total, worst, domains = 0, 0, 0.0, []
    for est, (train, test) in zip(fitted, splits):
        dom = fit_domain(est, X[train], groups[train], **params)
        domains.append(dom)
        if dom is None:
            return {"domains": domains}
        out = ~dom.inside(domain_representation(est, X[test]))
        flagged, total = flagged + int(out.sum()), total + len(test)
        worst = max(worst, float(out.mean()) if len(test) else 0.0)
    return {"ood_share_test": flagged / max(total, 1), "ood_share_test_max": worst, "domains": domains}
