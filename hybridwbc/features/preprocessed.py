"""A featurizer behind a fitted image normaliser: the one place a normalised image enters the features.

:class:`PreprocessedFeaturizer` wraps any :class:`~hybridwbc.features.base.ImageFeaturizer` and a fitted
:class:`~hybridwbc.preprocess.ImageNormaliser`: :meth:`~PreprocessedFeaturizer.featurize` normalises the
image, then featurizes it. Every path that featurizes an image (the run's feature table, ``predict``,
the pyfunc model and serving, ``analyze``'s crops) calls ``featurize``, and the saved model pickles this
featurizer with the normaliser's fitted reference, so training and inference apply the same arithmetic.
The cache key joins the inner featurizer's key and the normaliser's :meth:`state_key` (settings and
fitted reference). Stages that would sit beside it later (stain augmentation for the CNN's training
stream, a pretrained backbone) read the normalised image through :meth:`normalise`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from hybridwbc.features.base import ImageFeaturizer

__all__ = ["PreprocessedFeaturizer"]


class PreprocessedFeaturizer(ImageFeaturizer):
    """``featurizer.featurize(preprocess.transform_image(image))``.

    Parameters
    ----------
    featurizer : ImageFeaturizer
    preprocess : ImageNormaliser
        Fitted (on training images only).
    """

    version = 1

    def __init__(self, featurizer=None, preprocess=None):
        self.featurizer = featurizer
        self.preprocess = preprocess

    def normalise(self, image: np.ndarray) -> np.ndarray:
        """The normalised image ((H, W, 3) uint8 in; (H', W', 3) uint8 out): what the featurizer reads."""
        return self.preprocess.transform_image(image)

    def featurize(self, image: np.ndarray) -> np.ndarray:
        """Features of the normalised image: ``(n_features,) float64``."""
        return self.featurizer.featurize(self.normalise(image))

    def feature_names(self) -> list[str]:
        return list(self.featurizer.feature_names())

    def fit(self, X=None, y=None):
        """Fit (validate) the inner featurizer; the normaliser is fitted before, on training images."""
        self.featurizer.fit()
        return super().fit()

    @property
    def segment(self):
        """``segment(image)``: the inner featurizer's segmentation of the normalised image (its ``.image`` is
        that image); absent (``AttributeError``) where the inner featurizer does not segment."""
        inner = self.featurizer.segment

        def segment(image):
            return inner(self.normalise(image))

        return segment

    def cache_key(self) -> str:
        blob = f"{type(self).__qualname__}/{self.version}/{self.featurizer.cache_key()}/{self.preprocess.state_key()}"
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
