"""The small interface hybridwbc's composite estimators share, and probabilities over a fixed class list.

:class:`WBCEstimator` is a mixin with two questions a run asks of any estimator, instead of
poking at attributes:

* :meth:`~WBCEstimator.validate`: check the settings before any training (an unknown backbone,
  a too-small input size); a composite forwards to its :meth:`~WBCEstimator.parts`;
* :meth:`~WBCEstimator.trained_cnn`: the fitted :class:`~hybridwbc.cnn.estimators.CNNClassifier`
  inside a fitted estimator, or ``None`` (the CNN itself, an embedding classifier's CNN, a
  cascade's embedder, a calibrated model's inner estimator's).

:func:`validate` and :func:`trained_cnn` ask any estimator, also a plain scikit-learn one (which
has nothing to check and no CNN). :class:`SelectsByName` marks the estimators that take the
design matrix's column names. :func:`fit_with_groups` passes subject ids to whatever takes them, and
:func:`grouped_folds` gives the stratified, grouped inner folds of cross-fitting and cross-validated
calibration. This module imports neither TensorFlow nor the saved-model format.
"""

from __future__ import annotations

import numpy as np

__all__ = ["WBCEstimator", "SelectsByName", "validate", "trained_cnn", "proba_over", "takes_groups", "fit_with_groups",
           "check_crossfit", "grouped_folds"]


class WBCEstimator:
    """Mixin: config-time checks forwarded through composites, and the trained CNN inside, if any."""

    def parts(self) -> list:
        """The unfitted estimators this one is made of (constructor parameters); ``[]`` by default."""
        return []

    def validate(self) -> None:
        """Check the settings without training anything; by default, :func:`validate` each part.

        Raises
        ------
        ConfigError
            From a part whose settings are invalid.
        """
        for part in self.parts():
            validate(part)

    def trained_cnn(self):
        """The fitted CNN classifier inside this fitted estimator, or ``None``."""
        return None


class SelectsByName:
    """Mixin of estimators that select columns of ``X`` by name prefix.

    They take ``feature_names`` (the names of ``X``'s columns) as a constructor parameter;
    :func:`hybridwbc.config.build_estimator` passes the design matrix's names to every config
    node whose ``_target_`` is such a class.
    """


def validate(estimator) -> None:
    """``estimator.validate()`` for a :class:`WBCEstimator`; nothing for any other estimator (or ``None``)."""
    if isinstance(estimator, WBCEstimator):
        estimator.validate()


def trained_cnn(estimator):
    """The fitted CNN classifier inside ``estimator`` (a :class:`WBCEstimator`), else ``None``."""
    return estimator.trained_cnn() if isinstance(estimator, WBCEstimator) else None


def proba_over(estimator, X, classes) -> np.ndarray:
    """Probabilities of a fitted ``estimator`` over ``classes``, in that order; shape (n, len(classes)).

    A class ``classes`` lists that the estimator does not know gets 0; an estimator without
    ``predict_proba`` gets a one-hot of ``predict``.
    """
    classes = list(classes)
    out = np.zeros((len(X), len(classes)))
    idx = {c: i for i, c in enumerate(classes)}
    if hasattr(estimator, "predict_proba"):
        p = estimator.predict_proba(X)
        for j, c in enumerate(estimator.classes_):
            out[:, idx[c]] = p[:, j]
    else:
        for r, c in enumerate(estimator.predict(X)):
            out[r, idx[c]] = 1.0
    return out


def takes_groups(estimator) -> bool:
    """Whether ``estimator.fit`` takes ``groups``: a grid or randomised search, or a ``fit(X, y, groups=...)``."""
    import inspect

    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

    return isinstance(estimator, (GridSearchCV, RandomizedSearchCV)) or \
        "groups" in inspect.signature(estimator.fit).parameters


def fit_with_groups(estimator, X, y, groups=None):
    """Fit ``estimator``, passing ``groups`` to whatever takes them; returns the fitted estimator.

    A grid search, or an estimator whose ``fit`` has a ``groups`` argument (a
    :class:`~hybridwbc.calibration.CalibratedModel`, the CNN estimators, the cascade), gets ``groups``,
    so its inner splits never share a subject; so does the last step of a
    :class:`~sklearn.pipeline.Pipeline`. With ``groups=None`` this is ``estimator.fit(X, y)``.
    """
    from sklearn.pipeline import Pipeline

    if groups is not None and isinstance(estimator, Pipeline) and takes_groups(estimator.steps[-1][1]):
        return estimator.fit(X, y, **{f"{estimator.steps[-1][0]}__groups": groups})
    if groups is not None and takes_groups(estimator):
        return estimator.fit(X, y, groups=groups)
    return estimator.fit(X, y)


def check_crossfit(value) -> None:
    """Check a ``crossfit`` setting: 0 (off) or at least 2 inner folds.

    Raises
    ------
    ConfigError
        Naming the value received.
    """
    from hybridwbc.errors import ConfigError

    if isinstance(value, bool) or int(value) < 0 or int(value) == 1:
        raise ConfigError(f"crossfit must be 0 (off) or at least 2 (inner folds); received {value!r}.")


def grouped_folds(y, groups, n_splits: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold splits that never split a group: the inner folds of cross-fitting.

    Parameters
    ----------
    y : array-like of shape (n,)
    groups : array-like of shape (n,), optional
        Subject ids (or content hashes); ``None``: each row is its own group.
    n_splits : int
        At least 2. Lowered to the number of groups of the class with the fewest, so every
        training fold sees every class.
    seed : int, default 0

    Returns
    -------
    list of (train, test) sorted index arrays; the test parts partition ``range(n)``.

    Raises
    ------
    ValueError
        If ``n_splits < 2``, or a class has fewer than two groups (no fold could train on it).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(y, dtype=object).astype(str)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups, dtype=object).astype(str)
    if int(n_splits) < 2:
        raise ValueError(f"Cross-fitting needs at least 2 folds; received {n_splits}.")
    per_class = {c: len(set(groups[y == c])) for c in np.unique(y)}
    fewest = min(per_class.values())
    if fewest < 2:
        cls = str(min(per_class, key=per_class.get))
        raise ValueError(
            f"Cannot cross-fit: class {cls!r} has {fewest} subject/image group among the training rows, so "
            "some fold would train without it. Fix: add data for that class, or turn cross-fitting off.")
    k = min(int(n_splits), fewest)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=int(seed))
    return [(np.sort(tr), np.sort(te)) for tr, te in splitter.split(np.zeros(len(y)), y, groups)]
