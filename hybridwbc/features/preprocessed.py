"""A featurizer behind a fitted image normaliser: the one place a normalised image enters the features.

:class:`PreprocessedFeaturizer` wraps any :class:`~hybridwbc.features.base.ImageFeaturizer` and a fitted
:class:`~hybridwbc.preprocess.ImageNormaliser`: :meth:`~PreprocessedFeaturizer.featurize` normalises the
image, then featurizes it. Every path that featurizes an image (the run's feature table, ``predict``,
the pyfunc model and serving, ``analyze``'s crops) calls ``featurize``, and the saved model pickles this
featurizer with the normaliser's fitted reference, so training and inference apply the same arithmetic.
The cache key joins the inner featurizer's key and the normaliser's :meth:`state_key` (settings and
fitted reference). Methods that read image files themselves (a CNN) read the normalised image written
losslessly as PNG (:meth:`normalised_files` for a run, content-addressed in the cache; :meth:`normalised_file`
at prediction), so they too see exactly what training saw. Stages that would sit beside it later (stain
augmentation of the CNN's training stream, a pretrained backbone) read the normalised image the same way.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from hybridwbc.data.atomic import atomic_path
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

    def normalised_file(self, image: np.ndarray, path: str | os.PathLike) -> str:
        """Write the normalised ``image`` ((H, W, 3) uint8) to ``path`` as a lossless PNG (atomically); ``path``."""
        from PIL import Image

        with atomic_path(path) as tmp:
            Image.fromarray(self.normalise(image)).save(tmp, format="PNG", compress_level=1)
        return str(path)

    def normalised_files(self, paths, shas, folder: str | os.PathLike,
                         progress: bool = False) -> tuple[np.ndarray, dict]:
        """The normalised copy of each image, made once: ``<folder>/<cache key>/<sha[:2]>/<sha>.png``.

        Parameters
        ----------
        paths, shas : sequences of str, length n
            Image files and their content hashes.
        folder : path-like
            Cache root.
        progress : bool, default False
            Show a progress bar over the images still to normalise.

        Returns
        -------
        files : ndarray of shape (n,), object
            The PNG of each image (an image that could not be read or normalised: a path that does not exist).
        failed : dict
            ``{row: reason}`` of those images.
        """
        from tqdm.auto import tqdm

        from hybridwbc.data.io import read_image
        from hybridwbc.errors import HybridWBCError

        base = Path(folder) / self.cache_key()
        files = np.array([str(base / sha[:2] / f"{sha}.png") for sha in shas], dtype=object)
        todo = [i for i, target in enumerate(files) if not Path(target).is_file()]
        failed = {}
        for i in tqdm(todo, desc="normalise", unit="img", disable=not progress, mininterval=1.0):
            try:
                self.normalised_file(read_image(paths[i]), files[i])
            except HybridWBCError as exc:
                failed[i] = f"{type(exc).__name__}: {exc}"
        return files, failed

    def cache_key(self) -> str:
        blob = f"{type(self).__qualname__}/{self.version}/{self.featurizer.cache_key()}/{self.preprocess.state_key()}"
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
