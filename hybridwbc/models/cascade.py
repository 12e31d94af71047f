"""The two-stage white-cell classifier, with an optional ALL/HEM head for lymphoid cells.

Stage 1 (default: an RBF SVM) sees only its own columns, typically the
granularity and colour features, and decides among the *special* classes
(eosinophil, basophil) and ``"other"``. Stage 2 (default: a random forest),
fitted only on cells of the other classes, types them (neutrophil, monocyte,
lymphocyte, ...). An optional head, usually fitted elsewhere (on C-NMC) and
passed prefit, splits the lymphoid class into ``lymphocyte:all`` and
``lymphocyte:hem``.

Probabilities combine by the product rule, so every row sums to one over
the final classes::

    P(special s) = P1(s)
    P(other c)   = P1(other) * P2(c)
    P(lymphoid:k) = P(lymphoid) * Ph(k)   (Ph = 1/K where P(lymphoid) < 0.01)

Routing: a cell whose stage-1 verdict is a special class never reaches
stage 2 (its ``P1(other)`` mass is spread evenly over the other classes,
which cannot change the verdict); ``predict`` is the arg-max of
``predict_proba``.

A head that cannot answer a row (a saved head raises
:class:`~hybridwbc.errors.PartialPredictionError`: it cannot read the image,
finds no cell, or finds it outside its training domain) never gets a guessed
split: where the lymphoid class is the arg-max before the split, the row has no
answer and ``predict_proba`` raises ``PartialPredictionError`` naming the head;
elsewhere the lymphoid mass is split evenly, which cannot change the verdict.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from hybridwbc.errors import ConfigError, PartialPredictionError
from hybridwbc.models.parts import (
    SelectsByName,
    WBCEstimator,
    check_crossfit,
    fit_with_groups,
    grouped_folds,
    proba_over,
    trained_cnn,
)

__all__ = ["CascadeClassifier", "OTHER"]

OTHER = "other"


def _default_stage1(y, groups=None, seed: int = 0):
    """Standardised RBF SVM, sigmoid-calibrated on out-of-fold scores of three folds that never split a
    subject (``conf/head/svm_calibrated.yaml`` is the same with :class:`~hybridwbc.calibration.CalibratedModel`)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    svm = SVC(kernel="rbf", C=10.0, class_weight="balanced")
    folds = grouped_folds(y, groups, 3, seed)  # the rows' own folds: grouped, unlike cv=3
    return make_pipeline(StandardScaler(), CalibratedClassifierCV(svm, ensemble=False, cv=folds))


def _default_stage2():
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=200, class_weight="balanced", random_state=0)


class CascadeClassifier(SelectsByName, WBCEstimator, ClassifierMixin, BaseEstimator):
    """Two-stage classifier: stage 1 picks the special classes, stage 2 types the rest.

    Parameters
    ----------
    stage1 : classifier, optional
        Fitted on all rows with labels mapped to ``special_classes`` + ``"other"``.
        Default: standardised RBF SVM.
    stage2 : classifier, optional
        Fitted on the rows of the other classes only. Default: random forest.
    special_classes : sequence, default ("eosinophil", "basophil")
        Classes decided by stage 1. Absent classes are ignored; with none
        present the cascade reduces to stage 2, with only special classes to stage 1.
    stage1_columns, stage2_columns, head_columns : sequence of int or str, optional
        Columns of ``X`` each stage sees (``None``: all). Strings are column-name
        prefixes resolved against ``feature_names``.
    feature_names : sequence of str, optional
        Names of the columns of ``X``; needed only for string column selectors (the run passes
        the design matrix's names when it builds the estimator).
    head : classifier, optional
        Applied to rows of ``head_class``; its classes split that class into
        ``f"{head_class}:{k}"``.
    head_class : str, default "lymphocyte"
    head_prefit : bool, default True
        Use ``head`` as already fitted (e.g. on C-NMC); otherwise fit it on the
        ``head_class`` rows, whose labels must then be given as
        ``f"{head_class}:{k}"`` in ``y``.
    embedder : transformer, optional
        Fitted on *all* training rows (every class) with ``fit(X[:, embedder_columns], y)``;
        stage 2 then sees ``embedder.transform(...)`` instead of ``X[:, stage2_columns]``.
        With a CNN (:class:`~hybridwbc.cnn.estimators.CNNClassifier`) this is the CNN trained
        for the whole task, shared through its cache with ``cnn_softmax`` and friends.
    embedder_columns : sequence of int or str, optional
        Columns fed to the embedder (``None``: all), e.g. ``["path"]``.
    stage1_embeddings : bool, default False
        Append the embedder's output to stage 1's columns, so stage 1 sees the
        granularity and colour features *and* what the CNN learnt about granules.
    crossfit : int, default 0
        ``k >= 2``: the stages are fitted on out-of-fold embeddings (each of ``k`` stratified
        folds, grouped by the ``groups`` given to :meth:`fit`, else by row, is embedded by a clone
        of the embedder fitted on the other folds), so they never see the embedding of a row the
        embedder was trained on; ``embedder_`` (fitted on all rows) embeds at predict time. ``0``: off.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Final classes, sorted.
    stage1_ : fitted classifier or None
    stage2_ : fitted classifier or None
    head_ : fitted classifier or None
    embedder_ : fitted transformer or None
    n_features_in_ : int
    """

    def __init__(self, stage1=None, stage2=None, special_classes: Sequence = ("eosinophil", "basophil"),
                 stage1_columns=None, stage2_columns=None, feature_names=None, head=None,
                 head_class: str = "lymphocyte", head_columns=None, head_prefit: bool = True,
                 embedder=None, embedder_columns=None, stage1_embeddings: bool = False, crossfit: int = 0):
        self.stage1 = stage1
        self.stage2 = stage2
        self.special_classes = special_classes
        self.stage1_columns = stage1_columns
        self.stage2_columns = stage2_columns
        self.feature_names = feature_names
        self.head = head
        self.head_class = head_class
        self.head_columns = head_columns
        self.head_prefit = head_prefit
        self.embedder = embedder
        self.embedder_columns = embedder_columns
        self.stage1_embeddings = stage1_embeddings
        self.crossfit = crossfit

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    def parts(self) -> list:
        """Stage 1, stage 2, the embedder and the head (those set)."""
        return [p for p in (self.stage1, self.stage2, self.embedder, self.head) if p is not None]

    def validate(self) -> None:
        """Check ``crossfit`` and each part's settings.

        Raises
        ------
        ConfigError
            ``crossfit`` is neither 0 nor at least 2, or a part's settings are invalid.
        """
        check_crossfit(self.crossfit)
        super().validate()

    def trained_cnn(self):
        """The fitted CNN inside: the embedder's, else stage 2's; ``None`` without one."""
        return trained_cnn(getattr(self, "embedder_", None)) or trained_cnn(getattr(self, "stage2_", None))

    # column selection ---------------------------------------------------
    def _columns(self, spec, n_features: int) -> np.ndarray:
        if spec is None:
            return np.arange(n_features)
        spec = list(spec)
        if all(isinstance(s, (int, np.integer)) for s in spec):
            cols = np.asarray(spec, dtype=int)
            if cols.size == 0 or cols.min() < 0 or cols.max() >= n_features:
                raise ConfigError(f"Column indices {spec} are out of range for X with {n_features} columns.")
            return cols
        if self.feature_names is None:
            raise ConfigError(
                f"Column selector {spec} uses names, but feature_names is not set. Pass feature_names "
                "(the names of X's columns) or select columns by index."
            )
        names = list(self.feature_names)
        if len(names) != n_features:
            raise ConfigError(f"feature_names has {len(names)} names but X has {n_features} columns.")
        cols = [i for i, n in enumerate(names) if any(str(n).startswith(str(p)) for p in spec)]
        if not cols:
            raise ConfigError(
                f"Column selector {spec} matches none of the {n_features} feature names "
                f"(e.g. {names[:5]}). Fix the prefixes."
            )
        return np.asarray(cols, dtype=int)

    # fitting ------------------------------------------------------------
    def fit(self, X, y, groups=None):
        """Fit stage 1 on all rows and stage 2 on the rows of the other classes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,), optional
            Subject ids, passed to every part whose ``fit`` takes them (the embedder's validation
            split, the stages' inner calibration or search) and to the cross-fitting folds.
        """
        self.validate()
        X, y = validate_data(self, X, y, dtype=None, ensure_all_finite=not self._object_input(X))
        check_classification_targets(y)
        y = np.asarray(y)
        groups = None if groups is None else np.asarray(groups, dtype=object)
        if groups is not None and len(groups) != len(y):
            raise ValueError(f"groups has {len(groups)} entries but X has {len(y)} rows.")
        head_prefix = f"{self.head_class}:"
        base_y = np.array([str(v).split(":", 1)[0] if isinstance(v, str) and v.startswith(head_prefix) else v
                           for v in y], dtype=y.dtype if y.dtype.kind != "U" else object)
        special = [c for c in np.unique(base_y) if c in set(self.special_classes)]
        rest = [c for c in np.unique(base_y) if c not in set(special)]
        self.cols1_ = self._columns(self.stage1_columns, X.shape[1])
        self.cols2_ = self._columns(self.stage2_columns, X.shape[1])
        self.special_ = np.asarray(special, dtype=object)
        self.rest_ = np.asarray(rest, dtype=object)
        if self.stage1_embeddings and self.embedder is None:
            raise ConfigError(
                "stage1_embeddings=True needs an embedder (e.g. embedder: ${backbone}); set one "
                "or set stage1_embeddings to false."
            )
        self.embedder_ = None
        if self.embedder is not None and (len(rest) >= 2 or (self.stage1_embeddings and special)):
            self.colse_ = self._columns(self.embedder_columns, X.shape[1])
            self.embedder_ = fit_with_groups(clone(self.embedder), X[:, self.colse_], base_y, groups)
        emb = None  # every row's embedding, once: out of fold with crossfit
        if self.embedder_ is not None:
            emb = self._out_of_fold(X, base_y, groups) if int(self.crossfit) >= 2 else self._embed(X)
        sub = (lambda rows: None) if groups is None else (lambda rows: groups[rows])
        if special:
            y1 = np.where(np.isin(base_y, special), base_y.astype(object), OTHER) if rest else base_y
            stage1 = clone(self.stage1) if self.stage1 is not None else _default_stage1(y1, groups)
            self.stage1_ = fit_with_groups(stage1, self._stage1_input(X, emb), y1, groups)
        else:
            self.stage1_ = None
        if len(rest) >= 2:
            keep = np.isin(base_y, rest)
            self.stage2_ = fit_with_groups(clone(self.stage2 if self.stage2 is not None else _default_stage2()),
                                           self._stage2_input(X[keep], None if emb is None else emb[keep]),
                                           base_y[keep], sub(keep))
        else:
            self.stage2_ = None
        self.head_ = None
        head_classes = []
        if self.head is not None and self.head_class in rest:
            self.colsh_ = self._columns(self.head_columns, X.shape[1])
            if self.head_prefit:
                check_is_fitted(self.head)
                self.head_ = self.head
            else:
                rows = np.array([isinstance(v, str) and v.startswith(head_prefix) for v in y])
                if not rows.any():
                    raise ConfigError(
                        f"head_prefit=False but y has no '{head_prefix}<k>' labels to fit the head on. "
                        "Label the head's rows so, or pass a prefit head."
                    )
                labels = np.array([v.split(":", 1)[1] for v in y[rows]], dtype=object)
                self.head_ = fit_with_groups(clone(self.head), X[rows][:, self.colsh_], labels, sub(rows))
            head_classes = [f"{self.head_class}:{k}" for k in self.head_.classes_]
        final = self._final_classes(special, rest, head_classes)
        self.classes_ = np.asarray(final, dtype=y.dtype if y.dtype.kind != "U" else object)
        if y.dtype.kind in "iub":
            self.classes_ = self.classes_.astype(y.dtype)
        return self

    def attach_head(self, head, head_columns=None) -> "CascadeClassifier":
        """A copy of this fitted cascade whose ``head_class`` cells the prefit ``head`` splits.

        Nothing is refitted: the stages are shared with this cascade. This is
        how a head trained in another experiment (ALL/HEM on C-NMC) joins
        white-cell stages trained on PBC (see :mod:`hybridwbc.serve.compose`).

        Parameters
        ----------
        head : fitted classifier
            E.g. :class:`~hybridwbc.serve.prefit.SavedModelClassifier`.
        head_columns : sequence of int or str, optional
            Columns of ``X`` the head sees, e.g. ``["path"]``.

        Returns
        -------
        CascadeClassifier
            Final classes: those of this cascade with ``head_class`` replaced
            by ``f"{head_class}:{k}"`` for each class ``k`` of the head.

        Raises
        ------
        ConfigError
            If this cascade has no ``head_class`` among the classes its stage 2 types.
        """
        import copy

        check_is_fitted(self)
        check_is_fitted(head)
        if self.head_class not in set(self.rest_.tolist()):
            raise ConfigError(
                f"Cannot attach a head for {self.head_class!r}: this cascade's stage 2 types "
                f"{sorted(map(str, self.rest_))}. Fix: train the cascade on data with {self.head_class!r} cells, "
                "or set head_class to one of those."
            )
        new = copy.copy(self)
        new.head, new.head_columns, new.head_prefit = head, head_columns, True
        new.colsh_ = new._columns(head_columns, self.n_features_in_)
        new.head_ = head
        head_classes = [f"{self.head_class}:{k}" for k in head.classes_]
        new.classes_ = np.asarray(self._final_classes(self.special_, self.rest_, head_classes), dtype=object)
        return new

    def _final_classes(self, special, rest, head_classes) -> list:
        """Sorted final classes: special and rest, with ``head_class`` replaced by ``head_classes`` if any."""
        final = [c for c in list(special) + list(rest) if not (head_classes and c == self.head_class)]
        return sorted(final + list(head_classes), key=str)

    def _embed(self, X) -> np.ndarray:
        return np.asarray(self.embedder_.transform(X[:, self.colse_]), dtype=np.float64)

    def _out_of_fold(self, X, base_y, groups) -> np.ndarray:
        """Each inner fold's embeddings from a clone of the embedder fitted on the other folds; (n, n_embed)."""
        seed = int(getattr(self.embedder, "random_state", 0) or 0)
        out = None
        for tr, te in grouped_folds(base_y, groups, int(self.crossfit), seed):
            part = fit_with_groups(clone(self.embedder), X[tr][:, self.colse_], base_y[tr],
                                   None if groups is None else groups[tr])
            e = np.asarray(part.transform(X[te][:, self.colse_]), dtype=np.float64)
            out = np.zeros((len(base_y), e.shape[1])) if out is None else out
            out[te] = e
        return out

    def _stage1_input(self, X, emb=None) -> np.ndarray:
        """What stage 1 sees: ``X[:, stage1_columns]``, plus the embeddings if asked."""
        own = X[:, self.cols1_]
        if self.stage1_embeddings:
            emb = self._embed(X) if emb is None else emb
            return np.hstack([np.asarray(own, dtype=np.float64), emb])
        return own

    def _stage2_input(self, X, emb=None) -> np.ndarray:
        """What stage 2 sees: the embedder's output, else ``X[:, stage2_columns]``."""
        if self.embedder_ is not None:
            return self._embed(X) if emb is None else emb
        return X[:, self.cols2_]

    @staticmethod
    def _object_input(X) -> bool:
        return getattr(X, "dtype", None) is not None and X.dtype == object

    # prediction -----------------------------------------------------------
    def predict_proba(self, X) -> np.ndarray:
        """Probabilities over ``classes_`` by the product rule; rows sum to 1.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), dtype float64

        Raises
        ------
        PartialPredictionError
            If the head cannot answer rows whose verdict it decides (see the module docstring);
            ``proba`` holds the other rows, ``reasons`` name the head.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=None, ensure_all_finite=not self._object_input(X))
        n = X.shape[0]
        classes = list(self.classes_)
        col = {c: i for i, c in enumerate(classes)}
        out = np.zeros((n, len(classes)))
        special, rest = list(self.special_), list(self.rest_)
        # embed every row once when stage 1 needs the embeddings too
        emb = self._embed(X) if self.stage1_embeddings and self.embedder_ is not None else None
        if self.stage1_ is not None:
            p1 = proba_over(self.stage1_, self._stage1_input(X, emb), special + ([OTHER] if rest else []))
        else:
            p1 = np.zeros((n, len(special) + 1))
            p1[:, -1] = 1.0
        for j, s in enumerate(special):
            out[:, col[s]] = p1[:, j]
        if rest:
            p_other = p1[:, -1]
            routed = np.argmax(p1, axis=1) == p1.shape[1] - 1  # stage 1 says "other"
            p2 = np.full((n, len(rest)), 1.0 / len(rest))
            if self.stage2_ is not None and routed.any():
                p2[routed] = proba_over(self.stage2_, self._stage2_input(
                    X[routed], None if emb is None else emb[routed]), rest)
            elif self.stage2_ is None:
                p2[:] = 1.0
            rest_p = p_other[:, None] * p2
            failed = {}
            for j, c in enumerate(rest):
                if self.head_ is not None and c == self.head_class:
                    ph, failed = self._head_proba(X, rest_p[:, j])
                    for k, hc in enumerate(self.head_.classes_):
                        out[:, col[f"{self.head_class}:{hc}"]] = rest_p[:, j] * ph[:, k]
                else:
                    out[:, col[c]] = rest_p[:, j]
            if failed:
                self._raise_decisive(failed, out / out.sum(axis=1, keepdims=True), p1[:, :len(special)], rest_p,
                                     rest.index(self.head_class))
        return out / out.sum(axis=1, keepdims=True)

    def _head_proba(self, X, mass) -> tuple[np.ndarray, dict]:
        """The head's probabilities ``(n, K)`` over ``head_.classes_`` and ``{row: reason}`` where it had none.

        The head runs where the lymphoid class holds at least 1% (elsewhere its mass is split
        evenly: it cannot be the arg-max there); a saved head featurizes anew. Rows it cannot
        answer get ``1/K`` here and are returned with the head's reason.
        """
        K = len(self.head_.classes_)
        ph = np.full((len(mass), K), 1.0 / K)
        rows = np.flatnonzero(mass >= 0.01)
        failed = {}
        if len(rows):
            try:
                ph[rows] = proba_over(self.head_, X[rows][:, self.colsh_], list(self.head_.classes_))
            except PartialPredictionError as exc:
                part = np.asarray(exc.proba, dtype=np.float64)
                ph[rows] = np.where(np.isfinite(part), part, 1.0 / K)
                failed = {int(rows[k]): reason for k, reason in exc.reasons.items()}
        return ph, failed

    def _raise_decisive(self, failed: dict, proba, p_special, rest_p, j: int) -> None:
        """Raise for the rows of ``failed`` where ``head_class`` (column ``j`` of ``rest_p``) is the arg-max."""
        others = np.hstack([p_special, np.delete(rest_p, j, axis=1)])
        best_other = others.max(axis=1) if others.shape[1] else np.zeros(len(rest_p))
        decisive = {i: r for i, r in failed.items() if rest_p[i, j] >= best_other[i]}
        if decisive:
            proba = proba.copy()
            proba[list(decisive)] = np.nan
            raise PartialPredictionError({i: f"the {self.head_class!r} head ({type(self.head_).__name__}) cannot "
                                             f"split this {self.head_class} cell: {r}" for i, r in decisive.items()},
                                         proba)

    def predict(self, X) -> np.ndarray:
        """Arg-max of :meth:`predict_proba`; shape (n_samples,)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def stage_views(self, X, y, names=None) -> list[tuple]:
        """Each fitted stage with what it sees of ``X`` and the labels it answers, for per-stage analyses
        (permutation importance on held-out rows).

        Parameters
        ----------
        X : array-like of shape (n, n_features)
        y : array-like of shape (n,)
            True labels of the rows (``lymphocyte:<k>`` counts as ``lymphocyte``).
        names : sequence of str, optional
            Names of ``X``'s columns; default ``feature_names``.

        Returns
        -------
        list of ``(name, stage, X_stage, y_stage, column_names, rows)``
            ``"stage1"`` on every row with labels mapped to the special classes and ``"other"``;
            ``"stage2"`` on the rows of the other classes; ``rows``: the positions in ``X`` of the stage's
            rows. Columns are named after ``feature_names``
            (``x<i>`` without them); embedding columns ``embedding__<i>``. Stages not fitted are left out.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=None, ensure_all_finite=not self._object_input(X))
        y = np.asarray([str(v).split(":", 1)[0] for v in np.asarray(y)], dtype=object)
        names = names if names is not None else self.feature_names
        names = [str(n) for n in names] if names is not None else [f"x{i}" for i in range(X.shape[1])]
        emb = self._embed(X) if self.embedder_ is not None else None
        emb_names = [] if emb is None else [f"embedding__{i}" for i in range(emb.shape[1])]
        out = []
        if self.stage1_ is not None:
            y1 = np.where(np.isin(y, self.special_), y, OTHER) if len(self.rest_) else y
            cols = [names[i] for i in self.cols1_] + (emb_names if self.stage1_embeddings else [])
            out.append(("stage1", self.stage1_, self._stage1_input(X, emb), y1, cols, np.arange(len(y))))
        if self.stage2_ is not None:
            keep = np.isin(y, self.rest_)
            cols = emb_names if emb is not None else [names[i] for i in self.cols2_]
            out.append(("stage2", self.stage2_, self._stage2_input(X[keep], None if emb is None else emb[keep]),
                        y[keep], cols, np.flatnonzero(keep)))
        return out

    def route(self, X) -> np.ndarray:
        """Which stage decided each row: ``"stage1"`` (a special class) or ``"stage2"``.

        Returns
        -------
        ndarray of shape (n_samples,), dtype object
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=None, ensure_all_finite=not self._object_input(X))
        if self.stage1_ is None:
            return np.full(X.shape[0], "stage2", dtype=object)
        special = list(self.special_)
        p1 = proba_over(self.stage1_, self._stage1_input(X), special + ([OTHER] if len(self.rest_) else []))
        other = (np.argmax(p1, axis=1) == len(special)) & bool(len(self.rest_))
        return np.where(other, "stage2", "stage1").astype(object)
