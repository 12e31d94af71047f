"""The contract every image featurizer follows.

A featurizer maps one RGB image to one fixed-length float vector. It is a
scikit-learn transformer (so it can be cloned, and its settings are its
``get_params()``), but it learns nothing: ``fit`` only validates settings.
The feature table layer (:mod:`hybridwbc.features.table`) calls
:meth:`ImageFeaturizer.featurize` once per image, in parallel, and caches the
vector on disk under the image's content hash plus :meth:`cache_key`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

__all__ = ["ImageFeaturizer", "jsonable"]


class ImageFeaturizer(TransformerMixin, BaseEstimator):
    """Base class: one image in, one feature vector out.

    Subclasses implement :meth:`featurize` and :meth:`feature_names`. Both must
    depend only on the constructor parameters (scikit-learn convention), so
    that :meth:`cache_key` identifies the output exactly.

    ``featurize`` raises :class:`~hybridwbc.errors.NoCellFoundError` when an
    image holds no plausible cell; the table layer records such images as
    skipped rather than guessing.
    """

    #: Bump in a subclass when its arithmetic changes, to invalidate caches (an int, or a
    #: string that also names the versions of the stages it builds on).
    version: int | str = 1

    def featurize(self, image: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Compute the features of one image.

        Parameters
        ----------
        image : ndarray of shape (H, W, 3), dtype uint8
            RGB image.

        Returns
        -------
        features : ndarray of shape (n_features,), dtype float64
        """
        raise NotImplementedError

    def feature_names(self) -> list[str]:  # pragma: no cover - abstract
        """Names of the features, in the order :meth:`featurize` returns them."""
        raise NotImplementedError

    # scikit-learn API -------------------------------------------------
    def fit(self, X=None, y=None):
        """Validate settings; nothing is learned. Returns ``self``."""
        self.n_features_out_ = len(self.feature_names())
        return self

    def transform(self, X: Sequence[np.ndarray]) -> np.ndarray:
        """Featurize a sequence of images.

        Parameters
        ----------
        X : sequence of ndarray of shape (H, W, 3), dtype uint8

        Returns
        -------
        features : ndarray of shape (n_images, n_features), dtype float64
        """
        rows = [np.asarray(self.featurize(image), dtype=np.float64) for image in X]
        if not rows:
            return np.empty((0, len(self.feature_names())), dtype=np.float64)
        return np.vstack(rows)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Feature names as an object array, as scikit-learn expects."""
        return np.asarray(self.feature_names(), dtype=object)

    def cache_key(self) -> str:
        """A short hash of the class, its version and its parameters.

        Two featurizers with equal keys produce identical vectors for the
        same image, so cached vectors can be shared between runs.
        """
        params = {k: jsonable(v) for k, v in sorted(self.get_params(deep=False).items())}
        blob = json.dumps(
            {"cls": f"{type(self).__module__}.{type(self).__qualname__}", "v": self.version, "params": params},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def jsonable(value: Any):
    """A JSON-ready copy of ``value``, for cache keys and model descriptions.

    A featurizer becomes ``{"key": <its cache key>}``; a dataclass (e.g. a
    :class:`~hybridwbc.segment.Segmenter`) its class name and fields; a mapping
    a dict with ``str`` keys in sorted order; a list or tuple a list; an ndarray
    or a NumPy scalar its Python value; anything else JSON cannot hold its ``repr``.
    """
    if isinstance(value, ImageFeaturizer):
        return {"key": value.cache_key()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"class": type(value).__qualname__,
                **{f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)
