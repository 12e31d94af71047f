"""A classical head on a CNN's embeddings, the CNN trained on the same training rows.

:class:`EmbeddingClassifier` (``classifier=cnn_svm``, ``cnn_rf``, ``hybrid``): ``X`` holds image paths
in column 0 (then, for ``hybrid``, handcrafted features), as for
:class:`~hybridwbc.cnn.estimators.CNNClassifier`, so evaluation clones it and trains its CNN on each
training split only. With ``crossfit=k`` the head learns from out-of-fold embeddings. TensorFlow is
imported lazily, by the CNN.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from hybridwbc.cnn.paths import PathInputTags, split_paths
from hybridwbc.errors import ConfigError
from hybridwbc.models.parts import WBCEstimator, check_crossfit, fit_with_groups, grouped_folds

__all__ = ["EmbeddingClassifier"]


class EmbeddingClassifier(PathInputTags, WBCEstimator, ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier on the embeddings of a CNN trained on the same training rows.

    ``fit`` clones and trains ``cnn`` on the training rows, embeds them with the
    trained backbone (``training=False``) and fits a clone of ``head`` on the
    embeddings, joined with any further columns of ``X`` (handcrafted features:
    the ``hybrid`` classifier). ``predict`` embeds, joins, and asks the head.

    With ``crossfit=k`` the head never sees the embedding of an image the embedding CNN was
    trained on: the training rows are split into ``k`` folds (stratified, grouped by subject
    where ``groups`` are given, else by content hash), and each fold is embedded by a CNN
    trained on the other ``k - 1``. The head is fitted on these out-of-fold embeddings, as it
    will meet unseen images at predict time, where the CNN trained on all training rows
    (``cnn_``) embeds. Trained CNNs are cached by rows and settings, so this costs ``k``
    extra trainings once.

    Parameters
    ----------
    cnn : CNNClassifier
    head : scikit-learn classifier
        E.g. an SVM pipeline or a random forest. Gets ``groups`` if its ``fit`` takes them
        (a :class:`~hybridwbc.calibration.CalibratedModel`: grouped inner calibration).
    crossfit : int, default 0
        ``0``: the head sees the embeddings of the CNN trained on the same rows;
        ``k >= 2``: out-of-fold embeddings from ``k`` inner CNNs (see above).

    Attributes
    ----------
    cnn_ : CNNClassifier (fitted on all training rows)
    head_ : fitted head
    classes_ : ndarray
    history_ : dict
        The CNN's per-epoch history.
    n_extra_ : int
        Handcrafted columns joined to the embeddings.
    crossfit_folds_ : int
        Inner folds used (0 without cross-fitting).
    """

    def __init__(self, cnn=None, head=None, crossfit: int = 0):
        self.cnn = cnn
        self.head = head
        self.crossfit = crossfit

    def _design(self, E: np.ndarray, extra: np.ndarray) -> np.ndarray:
        return np.hstack([np.asarray(E, dtype=np.float64), extra]) if extra.shape[1] else np.asarray(E, np.float64)

    def validate(self) -> None:
        """Check ``crossfit`` and the parts' settings without TensorFlow.

        Raises
        ------
        ConfigError
            ``crossfit`` is neither 0 nor at least 2, or a part's settings are invalid.
        """
        check_crossfit(self.crossfit)
        super().validate()

    def fit(self, X, y, groups=None):
        """Train the CNN, then the head on its (out-of-fold, with ``crossfit``) embeddings. Returns ``self``.

        Parameters
        ----------
        X : array-like of shape (n, 1 + n_extra)
            Image paths in column 0, then any extra (handcrafted) columns.
        y : array-like of shape (n,)
        groups : array-like of shape (n,), optional
            Subject ids, passed on to the CNN's validation split, the cross-fitting folds and the
            head's inner calibration or search.
        """
        if self.cnn is None or self.head is None:
            raise ConfigError("EmbeddingClassifier needs both cnn and head; received "
                              f"cnn={self.cnn!r}, head={self.head!r}.")
        self.validate()
        paths, extra = split_paths(X)
        y = np.asarray(y, dtype=object)
        groups = None if groups is None else np.asarray(groups, dtype=object)
        self.cnn_ = fit_with_groups(clone(self.cnn), paths, y, groups)
        if int(self.crossfit) >= 2:
            E, keep, skipped = self._out_of_fold(paths, y, groups)
        else:
            res = self.cnn_.embed(paths)
            E, keep, skipped = res.X, res.index, res.skipped.to_dict("records")
            self.crossfit_folds_ = 0
        self.head_ = fit_with_groups(clone(self.head), self._design(E, extra[keep]), y[keep],
                                     None if groups is None else groups[keep])
        self.classes_ = np.asarray(self.head_.classes_)
        self.n_extra_ = int(extra.shape[1])
        self.n_features_in_ = 1 + self.n_extra_
        self.skipped_ = skipped
        return self

    def _out_of_fold(self, paths: list, y: np.ndarray, groups):
        """Embeddings of each inner fold by a CNN trained on the other folds: ``(E, kept rows, skipped)``."""
        from hybridwbc.data.manifest import file_sha256

        inner = groups if groups is not None else np.array([file_sha256(p) or p for p in paths], dtype=object)
        folds = grouped_folds(y, inner, int(self.crossfit), int(getattr(self.cnn, "random_state", 0) or 0))
        E = np.zeros((len(paths), int(self.cnn_.n_embed_)))
        ok = np.zeros(len(paths), dtype=bool)
        skipped: list = []
        for tr, te in folds:
            cnn = fit_with_groups(clone(self.cnn), [paths[i] for i in tr], y[tr],
                                  None if groups is None else groups[tr])
            res = cnn.embed([paths[i] for i in te])
            E[te[res.index]] = res.X
            ok[te[res.index]] = True
            skipped += res.skipped.to_dict("records")
        self.crossfit_folds_ = len(folds)
        keep = np.flatnonzero(ok)
        return E[keep], keep, skipped

    @property
    def history_(self) -> dict:
        check_is_fitted(self, "cnn_")
        return self.cnn_.history_

    def transform(self, X) -> np.ndarray:
        """The head's input: embeddings joined with the extra columns."""
        check_is_fitted(self, "head_")
        _, extra = split_paths(X)
        if extra.shape[1] != self.n_extra_:
            raise ValueError(
                f"X has {extra.shape[1]} handcrafted column(s); the model was fitted with {self.n_extra_}.")
        return self._design(self.cnn_.transform(X), extra)

    def stage_views(self, X, y, names=None) -> list[tuple]:
        """The head with what it sees of ``X``, for per-stage analyses (permutation importance on held-out rows).

        Parameters
        ----------
        X : array-like of shape (n, 1 + n_extra)
        y : array-like of shape (n,)
        names : sequence of str, optional
            Names of ``X``'s columns (``path`` first); the extra columns are ``x<i>`` without them.

        Returns
        -------
        list of one ``("head", head, X_head, y, column_names, rows)``
            Embedding columns are named ``embedding__<i>``, then the extra columns; ``rows`` is every row.
        """
        Z = self.transform(X)
        extra = list(names)[1:] if names is not None else [f"x{i}" for i in range(self.n_extra_)]
        cols = [f"embedding__{i}" for i in range(Z.shape[1] - self.n_extra_)] + [str(n) for n in extra]
        return [("head", self.head_, Z, np.asarray(y, dtype=object), cols, np.arange(len(Z)))]

    def predict_proba(self, X) -> np.ndarray:
        return self.head_.predict_proba(self.transform(X))

    def predict(self, X) -> np.ndarray:
        return self.head_.predict(self.transform(X))

    def parts(self) -> list:
        """The CNN and the head."""
        return [self.cnn, self.head]

    def trained_cnn(self):
        """The fitted CNN (``cnn_``), else ``None``."""
        return getattr(self, "cnn_", None)
