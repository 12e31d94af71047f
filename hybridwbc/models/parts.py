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
design matrix's column names. This module imports neither TensorFlow nor the saved-model format.
"""

from __future__ import annotations

import numpy as np

__all__ = ["WBCEstimator", "SelectsByName", "validate", "trained_cnn", "proba_over", "takes_groups"]


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
