"""The path column that CNN estimators read: ``X`` holds image paths in column 0.

:func:`split_paths` splits such an ``X`` into paths and extra float columns (``classifier.input:
paths_features``); :class:`PathInputTags` gives the scikit-learn tags of estimators whose ``X`` holds
strings. Shared by :class:`~hybridwbc.cnn.estimators.CNNClassifier` and
:class:`~hybridwbc.cnn.heads.EmbeddingClassifier`.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["split_paths", "PathInputTags"]


def split_paths(X) -> tuple[list[str], np.ndarray]:
    """Split ``X`` into image paths (column 0) and the remaining float columns.

    Parameters
    ----------
    X : array-like of shape (n, 1 + n_extra)
        Image paths in column 0 (``classifier.input: paths`` or ``paths_features``).
        A 1-D sequence of paths is accepted too.

    Returns
    -------
    paths : list of str
    extra : ndarray of shape (n, n_extra), dtype float64

    Raises
    ------
    ValueError
        If column 0 does not hold strings (e.g. a feature table was passed).
    """
    X = np.asarray(X, dtype=object)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2 or X.shape[1] < 1:
        raise ValueError(f"X must be a (n, 1 + n_extra) array with image paths in column 0; received shape {X.shape}.")
    col = X[:, 0]
    if len(col) and not all(isinstance(p, (str, os.PathLike)) for p in col):
        raise ValueError(
            "Column 0 of X must hold image file paths (classifier.input: paths or paths_features); received "
            f"{type(col[0]).__name__} values. Fix: set classifier.input to paths for CNN classifiers."
        )
    paths = [os.fsdecode(p) for p in col]
    extra = np.asarray(X[:, 1:], dtype=np.float64) if X.shape[1] > 1 else np.empty((len(paths), 0))
    return paths, extra


class PathInputTags:
    """scikit-learn tags of estimators whose ``X`` holds image paths (strings) and that train a CNN."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = True
        return tags
