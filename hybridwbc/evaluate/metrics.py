"""Metrics of out-of-sample predictions: point estimates, bootstrap intervals, McNemar, subjects, binary groups.

Metrics are computed from the predictions of :mod:`hybridwbc.evaluate.protocol`,
with percentile bootstrap confidence intervals that resample whole subjects where
subjects exist (a cluster bootstrap), since cells of one subject are not independent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from hybridwbc.errors import ConfigError, DataLayoutError
from hybridwbc.evaluate.protocol import SKIPPED, Predictions

__all__ = ["EvaluationResult", "classification_metrics", "balanced_accuracy", "bootstrap_ci", "per_class_report",
           "evaluate_predictions", "to_binary", "mcnemar", "aggregate_by_group", "most_confident_errors"]


@dataclass
class EvaluationResult:
    """Scores of one set of predictions.

    Attributes
    ----------
    metrics : dict of str to float
        Point estimates, plus ``<name>_ci_low`` / ``<name>_ci_high``.
    report : DataFrame
        Per-class precision, recall, F1 and support.
    confusion : ndarray of shape (n_classes, n_classes), dtype int64
        Rows are true classes, columns predicted, in ``classes`` order.
    classes : list of str
    """

    metrics: dict
    report: pd.DataFrame
    confusion: np.ndarray
    classes: list
    extra: dict = field(default_factory=dict)


def classification_metrics(y_true, y_pred, proba: np.ndarray | None, classes: Sequence[str],
                           positive: str | None = None) -> dict:
    """Accuracy, balanced accuracy, weighted and macro F1; for binary tasks also
    sensitivity, specificity and ROC AUC of ``positive``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
    proba : ndarray of shape (n, n_classes) or None
    classes : sequence of str
    positive : str, optional
        The positive class of a binary task (default: the second class).

    Returns
    -------
    dict of str to float
    """
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    with np.errstate(all="ignore"):
        out = {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": balanced_accuracy(y_true, y_pred),
            "f1_weighted": float(f1_score(y_true, y_pred, average="weighted", labels=list(classes), zero_division=0)),
            "f1_macro": float(f1_score(y_true, y_pred, average="macro", labels=list(classes), zero_division=0)),
        }
    if len(classes) == 2:
        pos = positive if positive is not None else classes[1]
        neg = [c for c in classes if c != pos][0]
        is_pos, is_neg = y_true == pos, y_true == neg
        out["sensitivity"] = float(np.mean(y_pred[is_pos] == pos)) if is_pos.any() else float("nan")
        out["specificity"] = float(np.mean(y_pred[is_neg] == neg)) if is_neg.any() else float("nan")
        if proba is not None and is_pos.any() and is_neg.any():
            out["roc_auc"] = float(roc_auc_score(is_pos, proba[:, list(classes).index(pos)]))
        else:
            out["roc_auc"] = float("nan")
    return out


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (no warning on absent ones)."""
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else float("nan")


def bootstrap_ci(y_true, y_pred, proba, classes, groups=None, positive=None, n_bootstrap: int = 1000,
                 ci: float = 0.95, seed: int = 0) -> dict:
    """Percentile bootstrap intervals of :func:`classification_metrics`.

    Resamples whole groups (subjects) with replacement when ``groups`` is
    given, otherwise rows.

    Returns
    -------
    dict
        ``<metric>_ci_low`` and ``<metric>_ci_high`` for every metric.
    """
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    rng = np.random.default_rng(seed)
    if groups is None:
        members = [np.array([i]) for i in range(len(y_true))]
    else:
        groups = np.asarray(groups)
        _, inv = np.unique(groups, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        bounds = np.flatnonzero(np.diff(inv[order])) + 1
        members = np.split(order, bounds)
    samples: dict[str, list] = {}
    for _ in range(int(n_bootstrap)):
        pick = rng.integers(0, len(members), len(members))
        idx = np.concatenate([members[i] for i in pick])
        m = classification_metrics(y_true[idx], y_pred[idx], None if proba is None else proba[idx], classes,
                                   positive)
        for k, v in m.items():
            samples.setdefault(k, []).append(v)
    alpha = (1.0 - ci) / 2.0
    out = {}
    for k, vals in samples.items():
        vals = np.asarray(vals, dtype=float)
        vals = vals[np.isfinite(vals)]
        lo, hi = (np.quantile(vals, [alpha, 1 - alpha]) if vals.size else (np.nan, np.nan))
        out[f"{k}_ci_low"], out[f"{k}_ci_high"] = float(lo), float(hi)
    return out


def per_class_report(y_true, y_pred, classes) -> pd.DataFrame:
    """Precision, recall, F1 and support per class; one row per class."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(classes), zero_division=0)
    return pd.DataFrame({"class": list(classes), "precision": p, "recall": r, "f1": f, "support": s})


def to_binary(pred: Predictions, groups_map: Mapping[str, Sequence[str]], positive: str) -> Predictions:
    """Collapse classes into groups (e.g. Early/Pre/Pro into ``b_all``) and sum their probabilities.

    Raises
    ------
    ConfigError
        If a class is in no group, or ``positive`` names no group.
    """
    lookup = {c: g for g, members in groups_map.items() for c in members}
    lookup[SKIPPED] = SKIPPED  # a skipped row stays skipped (wrong) in the binary view
    missing = sorted(set(pred.classes) - set(lookup))
    if missing or positive not in groups_map:
        raise ConfigError(
            f"eval.binary_groups must cover every class and name eval.binary_positive; classes {missing} are "
            f"unassigned, binary_positive={positive!r}, groups {sorted(groups_map)}."
        )
    new_classes = sorted(groups_map)
    proba = np.zeros((len(pred.rows), len(new_classes)))
    for j, c in enumerate(pred.classes):
        proba[:, new_classes.index(lookup[c])] += pred.proba[:, j]
    f = np.vectorize(lookup.get, otypes=[object])
    return Predictions(rows=pred.rows, fold=pred.fold, y_true=f(pred.y_true), y_pred=f(pred.y_pred),
                       proba=proba, classes=new_classes)


def evaluate_predictions(pred: Predictions, groups=None, positive: str | None = None, n_bootstrap: int = 1000,
                         ci: float = 0.95, seed: int = 0) -> EvaluationResult:
    """Metrics, bootstrap intervals, per-class report and confusion matrix of predictions."""
    from sklearn.metrics import confusion_matrix

    metrics = classification_metrics(pred.y_true, pred.y_pred, pred.proba, pred.classes, positive)
    if n_bootstrap:
        metrics.update(bootstrap_ci(pred.y_true, pred.y_pred, pred.proba, pred.classes, groups, positive,
                                    n_bootstrap, ci, seed))
    metrics["n_test"] = float(len(pred.rows))
    cm = confusion_matrix(pred.y_true, pred.y_pred, labels=pred.classes)
    return EvaluationResult(metrics=metrics, report=per_class_report(pred.y_true, pred.y_pred, pred.classes),
                            confusion=cm, classes=list(pred.classes))


def mcnemar(y_true, pred_a, pred_b) -> dict:
    """Exact McNemar test of two classifiers' paired predictions on the same rows.

    Counts the discordant pairs, ``b`` (A right, B wrong) and ``c`` (A wrong,
    B right), and tests ``b`` against Binomial(``b + c``, 1/2), two-sided.

    Returns
    -------
    dict
        ``b``, ``c`` and ``p_value`` (1.0 when there are no discordant pairs).
    """
    from scipy.stats import binomtest

    y_true = np.asarray(y_true, dtype=object)
    a_ok = np.asarray(pred_a, dtype=object) == y_true
    b_ok = np.asarray(pred_b, dtype=object) == y_true
    b = int(np.sum(a_ok & ~b_ok))
    c = int(np.sum(~a_ok & b_ok))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"b": b, "c": c, "p_value": p}


def aggregate_by_group(pred: Predictions, groups) -> tuple[Predictions, np.ndarray]:
    """Subject-level predictions: the mean of each subject's cell probabilities.

    Each group must have one true label (a subject is leukaemic or healthy);
    the predicted label is the arg-max of the mean probabilities.

    Parameters
    ----------
    pred : Predictions
    groups : ndarray of shape (n,)
        Group (subject) of each row of ``pred``.

    Returns
    -------
    subject_pred : Predictions
        One row per group; ``rows`` index the first cell of each group in ``pred``.
    names : ndarray of shape (n_groups,), dtype object

    Raises
    ------
    DataLayoutError
        If a group holds cells of different true labels.
    """
    groups = np.asarray(groups, dtype=object)
    names, first, inv = np.unique(groups, return_index=True, return_inverse=True)
    proba = np.zeros((len(names), pred.proba.shape[1]))
    np.add.at(proba, inv, pred.proba)
    proba /= np.bincount(inv, minlength=len(names))[:, None]
    y_true = pred.y_true[first]
    mixed = [names[g] for g in range(len(names)) if len(set(pred.y_true[inv == g])) > 1]
    if mixed:
        raise DataLayoutError(
            f"Subject-level scores need one label per subject, but {mixed[:5]} hold cells of several labels. "
            "Turn eval.subject_level off for this data set."
        )
    y_pred = np.asarray(pred.classes, dtype=object)[np.argmax(proba, axis=1)]
    return Predictions(rows=pred.rows[first], fold=pred.fold[first], y_true=y_true, y_pred=y_pred, proba=proba,
                       classes=list(pred.classes)), names


def most_confident_errors(pred: Predictions, n: int = 16) -> np.ndarray:
    """Positions (in ``pred``) of the ``n`` wrong predictions with the highest confidence."""
    wrong = np.flatnonzero(pred.y_true != pred.y_pred)
    conf = pred.proba[wrong].max(axis=1)
    return wrong[np.argsort(-conf, kind="stable")[:n]]
