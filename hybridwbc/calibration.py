"""Calibrated probabilities, and the measures that say whether probabilities mean what they say.

:class:`CalibratedModel` is a scikit-learn meta-estimator. Given training data
in :meth:`~CalibratedModel.fit`, it carves a *calibration split* out of it
(stratified by class; whole groups when ``groups`` is given, so no subject
straddles the two parts), fits a clone of the wrapped estimator on the rest,
and fits a calibrator on the calibration split only. With ``cv=k`` it cross-fits instead, as
scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` does but with grouped folds: ``k`` clones,
each fitted on ``k - 1`` stratified folds that never split a group (a subject), score the held-out
fold; the calibrator is fitted on these out-of-fold scores and the estimator refitted on all rows.
The methods:

``sigmoid`` / ``isotonic``
    One-vs-rest, as scikit-learn's ``CalibratedClassifierCV`` does for a
    prefitted (frozen) estimator: for each class, Platt's sigmoid (fitted by
    maximum likelihood with Platt's smoothed targets) or an isotonic
    regression maps the estimator's ``decision_function`` column (else its
    ``predict_proba`` column) to a probability, and the columns are
    renormalised to sum to 1; a binary task has one calibrator. Implemented
    here so that a class absent from a small calibration split still gets a
    column. Suits the classical heads (SVM, random forest).
``temperature``
    Temperature scaling: ``p = softmax(z / T)`` with ``z`` the estimator's
    log-probabilities ``log(max(predict_proba, 1e-12))`` (or its
    ``decision_function`` when it has no ``predict_proba``) and the single
    ``T > 0`` chosen to minimise the log loss on the calibration split. It
    never changes the predicted class. Suits the CNN, whose softmax is usually
    over-confident.

Measures (all take ``y_true`` labels, ``proba`` of shape ``(n, n_classes)``
with columns in ``classes`` order):

* :func:`expected_calibration_error`: top-label ECE with ``n_bins`` equal-width
  confidence bins, ``sum_b |B_b|/n * |accuracy(B_b) - mean confidence(B_b)|``;
* :func:`brier_score`: multiclass Brier score ``mean_i sum_k (p_ik - [y_i = k])^2``
  (0 is perfect, 2 is the worst);
* :func:`risk_coverage`: for every confidence threshold, the share of cells
  kept (coverage) and the accuracy on them, the curve a lab reads to choose
  ``min_confidence`` (cells below it go to a human);
* the figures, :func:`~hybridwbc.report.calibration.reliability_png` and
  :func:`~hybridwbc.report.calibration.risk_coverage_png`, are in :mod:`hybridwbc.report.calibration`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.utils.validation import check_is_fitted, column_or_1d

from hybridwbc.errors import ConfigError
from hybridwbc.models.parts import WBCEstimator, fit_with_groups, grouped_folds, trained_cnn

__all__ = [
    "CalibratedModel",
    "METHODS",
    "calibration_split",
    "expected_calibration_error",
    "brier_score",
    "calibration_metrics",
    "reliability_table",
    "risk_coverage",
]

#: Calibration methods :class:`CalibratedModel` accepts.
METHODS = ("sigmoid", "isotonic", "temperature")

_EPS = 1e-12


def _n_rows(X) -> int:
    if hasattr(X, "shape"):
        return X.shape[0]
    return len(X) if hasattr(X, "__len__") else np.asarray(X).shape[0]


def _rows(X, idx: np.ndarray):
    """Rows ``idx`` of ``X`` (an array, a sparse matrix, a DataFrame or a list), untouched otherwise."""
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    if hasattr(X, "shape"):
        return X[idx]
    return [X[i] for i in idx]


def _check_targets(X, y) -> tuple:
    """``(X, y)``: ``X`` indexable by rows, ``y`` a 1-D array of at least two classes, one entry per row of ``X``."""
    from sklearn.utils import assert_all_finite, indexable
    from sklearn.utils.multiclass import check_classification_targets

    y = column_or_1d(y, warn=True)
    if y.dtype.kind in "fc":
        assert_all_finite(y, input_name="y")
    check_classification_targets(y)
    n = len(y)
    if n == 0:
        raise ValueError("CalibratedModel received 0 samples; at least one per class is required.")
    if _n_rows(X) != n:
        raise ValueError(f"X has {_n_rows(X)} samples but y has {n}.")
    X, y = indexable(X, y)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(
            f"CalibratedModel needs at least 2 classes in y; received 1 class ({classes[0]!r})."
        )
    return X, y


def calibration_split(y, groups=None, size: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into a fitting part and a calibration part.

    Per class, about ``size`` of the rows (or, with ``groups``, of the groups
    whose majority label is that class) go to the calibration part, chosen by
    a seeded shuffle. A class with a single row (or group) stays entirely in
    the fitting part, so the fitted estimator sees every class.

    Parameters
    ----------
    y : array-like of shape (n,)
    groups : array-like of shape (n,), optional
        Subject ids; a group is never split.
    size : float in (0, 1)
    seed : int

    Returns
    -------
    fit_idx, cal_idx : ndarray of int64, sorted
    """
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    cal = np.zeros(len(y), dtype=bool)
    if groups is None:
        units = np.arange(len(y))
        unit_label = y
    else:
        groups = np.asarray(groups)
        if len(groups) != len(y):
            raise ValueError(f"groups has {len(groups)} entries but y has {len(y)}; they must match.")
        units, inv = np.unique(groups, return_inverse=True)
        unit_label = np.empty(len(units), dtype=y.dtype)
        for u in range(len(units)):
            vals, counts = np.unique(y[inv == u], return_counts=True)
            unit_label[u] = vals[np.argmax(counts)]
    for label in np.unique(unit_label):
        members = np.flatnonzero(unit_label == label)
        if len(members) < 2:
            continue
        rng.shuffle(members)
        if groups is None:
            k = int(np.clip(round(size * len(members)), 1, len(members) - 1))
            cal[members[:k]] = True
        else:
            n_rows = np.array([np.sum(inv == u) for u in members])
            target = size * n_rows.sum()
            taken = np.cumsum(n_rows)
            k = int(np.clip(np.searchsorted(taken, target) + 1, 1, len(members) - 1))
            cal[np.isin(inv, members[:k])] = True
    return np.flatnonzero(~cal), np.flatnonzero(cal)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _logits(estimator, X) -> np.ndarray:
    """Log-probabilities of ``estimator`` (or its decision function), shape (n, n_classes)."""
    if hasattr(estimator, "predict_proba"):
        return np.log(np.clip(np.asarray(estimator.predict_proba(X), dtype=np.float64), _EPS, 1.0))
    d = np.asarray(estimator.decision_function(X), dtype=np.float64)
    if d.ndim == 1:
        d = np.column_stack([-d / 2.0, d / 2.0])
    return d


def _fit_temperature(z: np.ndarray, y_idx: np.ndarray) -> float:
    """The temperature minimising the mean negative log-likelihood of ``softmax(z / T)``."""
    from scipy.optimize import minimize_scalar

    def nll(log_t):
        zt = z / np.exp(log_t)
        zt = zt - zt.max(axis=1, keepdims=True)
        logp = zt - np.log(np.exp(zt).sum(axis=1, keepdims=True))
        return -float(np.mean(logp[np.arange(len(y_idx)), y_idx]))

    res = minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x))


def _scores(estimator, X) -> np.ndarray:
    """What the one-vs-rest calibrators see: ``decision_function`` when there is one, else
    ``predict_proba``; shape (n, n_classes), or (n, 1) for a binary decision function."""
    if hasattr(estimator, "decision_function"):
        d = np.asarray(estimator.decision_function(X), dtype=np.float64)
    else:
        d = np.asarray(estimator.predict_proba(X), dtype=np.float64)
        if d.shape[1] == 2:
            d = d[:, 1]
    return d.reshape(len(d), -1)


def _platt(f: np.ndarray, pos: np.ndarray) -> tuple[float, float]:
    """Platt's sigmoid ``P(pos | f) = 1 / (1 + exp(a f + b))`` fitted by maximum likelihood with
    Platt's smoothed targets ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)``."""
    from scipy.optimize import minimize

    n_pos, n_neg = float(pos.sum()), float((~pos).sum())
    t = np.where(pos, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    scale = max(float(np.std(f)), 1e-12)
    g = f / scale

    def loss(ab):
        z = ab[0] * g + ab[1]
        # -[t log p + (1-t) log(1-p)] with p = 1/(1+e^z):  log p = -log1p(e^z), log(1-p) = z - log1p(e^z)
        l1 = np.logaddexp(0.0, z)
        val = np.sum(t * l1 + (1.0 - t) * (l1 - z))
        p = 1.0 / (1.0 + np.exp(np.clip(z, -500, 500)))
        grad_z = t - p  # d/dz of log1p(e^z) - (1 - t) z
        return val, np.array([np.sum(grad_z * g), np.sum(grad_z)])

    prior = np.log((n_neg + 1.0) / (n_pos + 1.0))
    res = minimize(loss, np.array([0.0, prior]), jac=True, method="L-BFGS-B")
    return float(res.x[0] / scale), float(res.x[1])


def _fit_ovr(scores: np.ndarray, y_idx: np.ndarray, n_classes: int, method: str) -> list:
    """One calibrator per class (one for a binary score column)."""
    from sklearn.isotonic import IsotonicRegression

    cols = [1] if scores.shape[1] == 1 else range(n_classes)
    out = []
    for j, k in enumerate(cols):
        pos = y_idx == k
        f = scores[:, j]
        if method == "sigmoid":
            out.append(("sigmoid", _platt(f, pos)))
        else:
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(f, pos.astype(np.float64))
            out.append(("isotonic", iso))
    return out


def _apply_ovr(calibrators: list, scores: np.ndarray, n_classes: int) -> np.ndarray:
    """Calibrated probabilities; one-vs-rest columns renormalised to sum to 1 (uniform if all 0)."""
    cols = []
    for j, (kind, c) in enumerate(calibrators):
        f = scores[:, j]
        if kind == "sigmoid":
            a, b = c
            cols.append(1.0 / (1.0 + np.exp(np.clip(a * f + b, -500, 500))))
        else:
            cols.append(c.predict(f))
    if len(cols) == 1:
        q = np.clip(cols[0], 0.0, 1.0)
        return np.column_stack([1.0 - q, q])
    p = np.column_stack(cols)
    total = p.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / n_classes)
    return p


class CalibratedModel(WBCEstimator, MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Fit a classifier on part of the training data and calibrate it on the rest.

    Parameters
    ----------
    estimator : scikit-learn classifier, default None
        Cloned and fitted on the fitting part. ``None`` means
        :class:`~sklearn.linear_model.LogisticRegression`. It may be a
        :class:`~sklearn.model_selection.GridSearchCV`; it then receives the
        fitting part's ``groups``. ``X`` is passed through untouched (the CNN's
        ``X`` is a column of file paths).
    method : {"sigmoid", "isotonic", "temperature"}, default "sigmoid"
    calibration_size : float in (0, 0.5], default 0.2
        Share of the training rows (or groups) held out to fit the calibrator (when ``cv`` is None).
    random_state : int, default 0
        Seed of the calibration split (or folds).
    cv : int, optional
        ``None``: one held-out calibration split. ``k >= 2``: calibrate on out-of-fold scores of
        ``k`` grouped, stratified folds (see :func:`hybridwbc.models.parts.grouped_folds`; lowered to
        the fewest groups of a class), then refit the estimator on all rows.

    Attributes
    ----------
    estimator_ : fitted classifier (fitted on the fitting part only; on all rows with ``cv``)
    calibrator_ : list of per-class calibrators, or None for ``temperature``
    temperature_ : float
        The fitted temperature (1.0 unless ``method="temperature"``).
    classes_ : ndarray
    fit_indices_, calibration_indices_ : ndarray of int
        Rows of the ``X`` given to :meth:`fit` used for each part (all rows for both with ``cv``).
    n_features_in_ : int
        Present when the wrapped estimator sets it.
    """

    def __init__(self, estimator=None, method: str = "sigmoid", calibration_size: float = 0.2,
                 random_state: int = 0, cv: int | None = None):
        self.estimator = estimator
        self.method = method
        self.calibration_size = calibration_size
        self.random_state = random_state
        self.cv = cv

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if self.estimator is not None:
            from sklearn.utils import get_tags

            inner = get_tags(self.estimator)
            tags.input_tags.allow_nan = inner.input_tags.allow_nan
            tags.input_tags.sparse = inner.input_tags.sparse
            tags.input_tags.string = inner.input_tags.string
        else:
            tags.input_tags.sparse = True
        return tags

    def fit(self, X, y, groups=None):
        """Carve the calibration split, fit the estimator on the rest, fit the calibrator.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,), optional
            Subject ids: the calibration split (or each fold) takes whole groups.

        Returns
        -------
        self

        Raises
        ------
        ConfigError
            If ``method``, ``calibration_size`` or ``cv`` is invalid.
        ValueError
            If ``y`` holds fewer than two classes, or no calibration split (or folds) can be carved.
        """
        if self.method not in METHODS:
            raise ConfigError(f"CalibratedModel.method must be one of {list(METHODS)}; received {self.method!r}.")
        if not 0.0 < float(self.calibration_size) <= 0.5:
            raise ConfigError(
                f"CalibratedModel.calibration_size must be in (0, 0.5]; received {self.calibration_size!r}."
            )
        if self.cv is not None and (isinstance(self.cv, bool) or int(self.cv) < 2):
            raise ConfigError(f"CalibratedModel.cv must be null or an integer of at least 2; received {self.cv!r}.")
        X, y = _check_targets(X, y)
        if self.cv is not None:
            return self._fit_crossfitted(X, y, groups)
        fit_idx, cal_idx = calibration_split(y, groups, self.calibration_size, self.random_state)
        if len(cal_idx) == 0:
            raise ValueError(
                f"Cannot carve a calibration split from {len(y)} samples: every class has a single sample "
                "(or group). Provide more training data."
            )
        base = self._fit_base(_rows(X, fit_idx), y[fit_idx], None if groups is None else np.asarray(groups)[fit_idx],
                              fit_idx)
        X_cal, y_cal = _rows(X, cal_idx), y[cal_idx]
        self.temperature_ = 1.0
        self.calibrator_ = None
        if self.method == "temperature":
            z = _logits(base, X_cal)
            y_idx = np.searchsorted(self.classes_, y_cal)
            self.temperature_ = _fit_temperature(z, y_idx)
        else:
            self.calibrator_ = _fit_ovr(_scores(base, X_cal), np.searchsorted(self.classes_, y_cal),
                                        len(self.classes_), self.method)
        self.fit_indices_, self.calibration_indices_ = fit_idx, cal_idx
        return self

    def _fit_crossfitted(self, X, y, groups):
        """Calibrate on out-of-fold scores of grouped folds, then refit the estimator on all rows."""
        groups = None if groups is None else np.asarray(groups)
        if groups is not None and len(groups) != len(y):
            raise ValueError(f"groups has {len(groups)} entries but y has {len(y)}; they must match.")
        classes = np.unique(y)
        oof = None
        for tr, te in grouped_folds(y, groups, int(self.cv), int(self.random_state)):
            part = self._fit_clone(_rows(X, tr), y[tr], None if groups is None else groups[tr], tr)
            if list(part.classes_) != list(classes):
                raise ValueError(
                    f"A calibration fold trained without class(es) {sorted(set(classes) - set(part.classes_))}: "
                    "too few subjects of that class for cross-fitted calibration. Fix: lower cv, or set cv to "
                    "null (one held-out calibration split).")
            z = _logits(part, _rows(X, te)) if self.method == "temperature" else _scores(part, _rows(X, te))
            oof = np.zeros((len(y), z.shape[1])) if oof is None else oof
            oof[te] = z
        self._fit_base(X, y, groups, np.arange(len(y)))
        y_idx = np.searchsorted(self.classes_, y)
        self.temperature_, self.calibrator_ = 1.0, None
        if self.method == "temperature":
            self.temperature_ = _fit_temperature(oof, y_idx)
        else:
            self.calibrator_ = _fit_ovr(oof, y_idx, len(self.classes_), self.method)
        self.fit_indices_ = self.calibration_indices_ = np.arange(len(y))
        return self

    def _fit_clone(self, X_fit, y_fit, groups_fit, fit_idx):
        """A clone of the estimator fitted on ``X_fit``; an inner search gets the groups."""
        from sklearn.linear_model import LogisticRegression

        base = clone(self.estimator) if self.estimator is not None else LogisticRegression()
        # an inner search gets the subjects; with none, each row is its own group for a search only (a CNN
        # given row ids would split its validation by row and key its cache by them)
        from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

        if groups_fit is None and isinstance(base, (GridSearchCV, RandomizedSearchCV)):
            groups_fit = fit_idx
        return fit_with_groups(base, X_fit, y_fit, groups_fit)

    def _fit_base(self, X_fit, y_fit, groups_fit, fit_idx):
        """Fit a clone of the estimator on the fitting part; sets ``estimator_``, ``classes_``, ``n_features_in_``."""
        base = self._fit_clone(X_fit, y_fit, groups_fit, fit_idx)
        self.estimator_ = base
        self.classes_ = np.asarray(base.classes_)
        if hasattr(base, "n_features_in_"):
            self.n_features_in_ = base.n_features_in_
        return base

    def parts(self) -> list:
        """The wrapped estimator."""
        return [self.estimator] if self.estimator is not None else []

    def trained_cnn(self):
        """The fitted CNN inside the fitted inner estimator, or ``None``."""
        return trained_cnn(getattr(self, "estimator_", None))

    def predict_proba(self, X) -> np.ndarray:
        """Calibrated probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        check_is_fitted(self)
        if self.calibrator_ is None:
            return _softmax(_logits(self.estimator_, X) / self.temperature_)
        return _apply_ovr(self.calibrator_, _scores(self.estimator_, X), len(self.classes_))

    def predict(self, X) -> np.ndarray:
        """The class of highest calibrated probability."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def predict_proba_uncalibrated(self, X) -> np.ndarray:
        """Probabilities of the wrapped estimator before calibration (``softmax`` of :func:`_logits`)."""
        check_is_fitted(self)
        return _softmax(_logits(self.estimator_, X))


# measures ------------------------------------------------------------------

def _prep(y_true, proba, classes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true class index (-1 if unknown), probabilities, confidence); checks the shapes."""
    proba = np.asarray(proba, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=object)
    classes = [str(c) for c in classes]
    if proba.ndim != 2 or proba.shape != (len(y_true), len(classes)):
        raise ValueError(
            f"proba must have shape (n_samples, n_classes) = ({len(y_true)}, {len(classes)}); "
            f"received {proba.shape}."
        )
    lookup = {c: j for j, c in enumerate(classes)}
    idx = np.array([lookup.get(str(v), -1) for v in y_true], dtype=np.int64)
    return idx, proba, proba.max(axis=1) if len(proba) else np.empty(0)


def reliability_table(y_true, proba, classes: Sequence[str], n_bins: int = 15) -> pd.DataFrame:
    """Per confidence bin: ``bin_low``, ``bin_high``, ``count``, ``confidence`` (mean) and ``accuracy``.

    Bins are equal-width on the top-label confidence in [0, 1]; bin ``b``
    holds confidences in ``(b/n_bins, (b+1)/n_bins]`` (the first also holds 0).
    Empty bins have ``count`` 0 and NaN means.
    """
    idx, proba, conf = _prep(y_true, proba, classes)
    correct = np.argmax(proba, axis=1) == idx if len(proba) else np.empty(0, bool)
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, int(n_bins) - 1)
    rows = []
    for b in range(int(n_bins)):
        m = which == b
        rows.append({"bin_low": edges[b], "bin_high": edges[b + 1], "count": int(m.sum()),
                     "confidence": float(conf[m].mean()) if m.any() else np.nan,
                     "accuracy": float(correct[m].mean()) if m.any() else np.nan})
    return pd.DataFrame(rows)


def expected_calibration_error(y_true, proba, classes: Sequence[str], n_bins: int = 15) -> float:
    """Top-label expected calibration error (see :func:`reliability_table` for the bins).

    Returns
    -------
    float in [0, 1]; NaN for no samples.
    """
    t = reliability_table(y_true, proba, classes, n_bins)
    n = t["count"].sum()
    if n == 0:
        return float("nan")
    t = t[t["count"] > 0]
    return float(np.sum(t["count"] / n * np.abs(t["accuracy"] - t["confidence"])))


def brier_score(y_true, proba, classes: Sequence[str]) -> float:
    """Multiclass Brier score ``mean_i sum_k (p_ik - [y_i = k])^2``, in [0, 2]."""
    idx, proba, _ = _prep(y_true, proba, classes)
    if not len(proba):
        return float("nan")
    onehot = np.zeros_like(proba)
    ok = idx >= 0
    onehot[np.flatnonzero(ok), idx[ok]] = 1.0
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def calibration_metrics(y_true, proba, classes: Sequence[str], n_bins: int = 15) -> dict:
    """``ece``, ``brier``, ``log_loss`` and ``aurc`` (area under the risk-coverage curve: mean
    error rate over coverages, lower is better) of one set of probabilities."""
    idx, p, _ = _prep(y_true, proba, classes)
    ok = idx >= 0
    nll = float(-np.mean(np.log(np.clip(p[np.flatnonzero(ok), idx[ok]], _EPS, 1.0)))) if ok.any() else np.nan
    rc = risk_coverage(y_true, proba, classes)
    return {"ece": expected_calibration_error(y_true, proba, classes, n_bins),
            "brier": brier_score(y_true, proba, classes), "log_loss": nll, "aurc": _aurc(y_true, proba, classes)
            if len(rc) else float("nan")}


def _aurc(y_true, proba, classes) -> float:
    idx, p, conf = _prep(y_true, proba, classes)
    order = np.argsort(-conf, kind="stable")
    wrong = (np.argmax(p, axis=1) != idx)[order]
    risks = np.cumsum(wrong) / np.arange(1, len(wrong) + 1)
    return float(np.mean(risks))


def risk_coverage(y_true, proba, classes: Sequence[str]) -> pd.DataFrame:
    """Coverage and accuracy of the cells kept at each confidence threshold.

    A cell is kept when its top-label confidence is at least ``threshold``
    (``predict ... min_confidence=<threshold>`` abstains on the others).

    Returns
    -------
    DataFrame
        Columns ``threshold`` (each distinct confidence, ascending, starting
        at 0), ``coverage`` (share kept, in [0, 1]) and ``accuracy`` (on the
        kept cells; NaN when none is kept); also ``n_kept``.
    """
    idx, p, conf = _prep(y_true, proba, classes)
    correct = (np.argmax(p, axis=1) == idx) if len(p) else np.empty(0, bool)
    thresholds = np.unique(np.concatenate([[0.0], conf]))
    order = np.argsort(conf, kind="stable")
    sconf, scorr = conf[order], correct[order]
    # rows kept at threshold t: those with conf >= t, i.e. positions from searchsorted(sconf, t, "left")
    suffix_correct = np.concatenate([np.cumsum(scorr[::-1])[::-1], [0]])
    start = np.searchsorted(sconf, thresholds, side="left")
    n_kept = len(conf) - start
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n_kept > 0, suffix_correct[start] / np.maximum(n_kept, 1), np.nan)
    n = max(len(conf), 1)
    return pd.DataFrame({"threshold": thresholds, "coverage": n_kept / n, "accuracy": acc,
                         "n_kept": n_kept.astype(np.int64)})
