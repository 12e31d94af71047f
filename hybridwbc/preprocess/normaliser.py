"""The fitted image normaliser: colour (Reinhard, Macenko, grey world) then scale, one image at a time.

:class:`ImageNormaliser` is a scikit-learn transformer. :meth:`~ImageNormaliser.fit` learns the
reference from *training* images only (Reinhard: the mean Lab moments; Macenko: the stain matrix of
the pooled training pixels and the typical 99th-percentile stain concentrations; grey world: the mean
RGB channel means); :meth:`~ImageNormaliser.transform_image` applies it to any image. The fitted
state is pickled with the model (inside :class:`hybridwbc.features.preprocessed.PreprocessedFeaturizer`),
and :meth:`~ImageNormaliser.state_key` (settings + fitted reference) is part of every feature cache key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from hybridwbc.errors import ConfigError, DataLayoutError, ImageReadError
from hybridwbc.preprocess import colour
from hybridwbc.preprocess.scale import measure_cell, normalise_cell_scale, rescale_mpp
from hybridwbc.segment import Segmenter

__all__ = ["ImageNormaliser", "METHODS", "SCALES", "VERSION"]

#: Colour methods (``preprocess.method``).
METHODS = ("none", "reinhard", "macenko", "greyworld")
#: Scale methods (``preprocess.scale``): measured cell or nucleus diameter, or micrometres per pixel.
SCALES = ("none", "cell", "nucleus", "mpp")
#: Bump when the arithmetic changes: part of :meth:`ImageNormaliser.state_key`.
VERSION = 2


class ImageNormaliser(TransformerMixin, BaseEstimator):
    """Colour then scale normalisation of RGB images, fitted on training images only.

    Parameters
    ----------
    method : {"none", "reinhard", "macenko", "greyworld"}
    fit_images : int, default 200
        Training images drawn (seeded) to fit the reference.
    seed : int
    io, beta, alpha : float
        Macenko: background intensity, least optical density of a stained pixel, angle percentile.
    rescale : bool, default True
        Macenko: scale each image's stain concentrations to the reference 99th percentiles (``False``:
        keep them, change only the stain colours).
    scale : {"none", "cell", "nucleus", "mpp"}
        ``cell`` / ``nucleus``: crop so the measured diameter spans ``fraction`` of a ``side``-pixel
        square; ``mpp``: resize from ``um_per_px`` to ``target_um_per_px``.
    side : int, default 360
    fraction : float, default 0.37 (a PBC cell's share of its crop)
    um_per_px, target_um_per_px : float, optional
    segmenter : Segmenter
        Measures the cell for ``scale=cell|nucleus``.
    """

    def __init__(self, method: str = "none", fit_images: int = 200, seed: int = 0, io: float = 240.0,
                 beta: float = 0.15, alpha: float = 1.0, rescale: bool = True, scale: str = "none", side: int = 360,
                 fraction: float = 0.37, um_per_px: float | None = None, target_um_per_px: float | None = None,
                 segmenter: Segmenter = Segmenter()):
        self.method = method
        self.fit_images = fit_images
        self.seed = seed
        self.io = io
        self.beta = beta
        self.alpha = alpha
        self.rescale = rescale
        self.scale = scale
        self.side = side
        self.fraction = fraction
        self.um_per_px = um_per_px
        self.target_um_per_px = target_um_per_px
        self.segmenter = segmenter

    # settings ---------------------------------------------------------
    def validate(self) -> None:
        """Check the settings before any image is read.

        Raises
        ------
        ConfigError
            Naming the ``preprocess.<key>``, what was received and what is expected.
        """
        method, scale = self.method, self.scale
        if method not in METHODS:
            raise ConfigError(f"preprocess.method must be one of {METHODS}; received {method!r}. "
                              "Fix: choose preprocess=none|reinhard|macenko|greyworld.")
        if scale not in SCALES:
            raise ConfigError(f"preprocess.scale must be one of {SCALES}; received {scale!r}.")
        if int(self.fit_images) < 1 or int(self.side) < 16 or not 0 < float(self.fraction) <= 1:
            raise ConfigError(
                "preprocess needs fit_images >= 1, side >= 16 and 0 < fraction <= 1; received "
                f"fit_images={self.fit_images}, side={self.side}, fraction={self.fraction}.")
        if scale == "mpp" and not (self.um_per_px and self.target_um_per_px
                                   and self.um_per_px > 0 and self.target_um_per_px > 0):
            raise ConfigError(
                "preprocess.scale=mpp needs positive preprocess.um_per_px (your camera's micrometres per pixel) "
                f"and preprocess.target_um_per_px (the training images'); received {self.um_per_px!r} and "
                f"{self.target_um_per_px!r}.")

    @property
    def active(self) -> bool:
        """Whether this normaliser changes images at all."""
        return self.method != "none" or self.scale != "none"

    # fitting ----------------------------------------------------------
    def fit(self, X: Iterable[np.ndarray], y=None):
        """Learn the colour reference from training images.

        Parameters
        ----------
        X : iterable of ndarray of shape (H, W, 3), dtype uint8
            Training images only.

        Raises
        ------
        ConfigError
            Invalid settings, or no image to fit a colour method on.
        """
        self.validate()
        images = list(X)
        method = self.method
        if method != "none" and not images:
            raise ConfigError(f"preprocess.method={method} needs training images to fit its reference; "
                              "received none. Fix: fit on the training split's images.")
        fitters = {"reinhard": self._fit_reinhard, "greyworld": self._fit_greyworld, "macenko": self._fit_macenko}
        self.reference_ = fitters[method](images) if method in fitters else {}
        self.n_fit_images_ = len(images) if method != "none" else 0
        self.version_ = VERSION
        return self

    def _fit_reinhard(self, images: list) -> dict:
        moments = [colour.lab_moments(im) for im in images]
        return {"lab_mean": np.mean([m for m, _ in moments], 0), "lab_std": np.mean([s for _, s in moments], 0)}

    def _fit_greyworld(self, images: list) -> dict:
        return {"rgb_mean": np.mean([colour.channel_means(im) for im in images], 0)}

    def _fit_macenko(self, images: list) -> dict:
        rng = np.random.default_rng(int(self.seed))
        ods = [colour.optical_density(im, self.io).reshape(-1, 3) for im in images]
        pool = []
        for od in ods:
            kept = od[colour.stained(od, self.beta)]
            pool.append(kept[rng.choice(len(kept), min(len(kept), 4000), replace=False)] if len(kept) else kept)
        stains = colour.macenko_stains(np.vstack(pool), self.beta, self.alpha)
        peaks = [np.percentile(colour.stain_concentrations(od, stains), 99.0, axis=0) for od in ods]
        return {"stains": stains, "max_conc": np.median(np.asarray(peaks), axis=0)}

    def fit_files(self, paths: Sequence[str]):
        """:meth:`fit` on at most ``fit_images`` of ``paths`` (a seeded draw); unreadable files are passed over.

        Raises
        ------
        DataLayoutError
            A colour method and none of the drawn files could be read.
        """
        from hybridwbc.data.io import read_image

        self.validate()
        paths = [str(p) for p in paths]
        rng = np.random.default_rng(int(self.seed))
        pick = sorted(rng.choice(len(paths), min(len(paths), int(self.fit_images)), replace=False)) if paths else []
        images = []
        for i in pick:
            try:
                images.append(read_image(paths[i]))
            except ImageReadError:
                continue
        if self.method != "none" and not images:
            raise DataLayoutError(f"preprocess could not be fitted: none of the {len(pick)} training images drawn "
                                  "could be read. Fix: check the data folder (python -m hybridwbc.data check --read).")
        return self.fit(images)

    # applying ---------------------------------------------------------
    def transform_image(self, image: np.ndarray) -> np.ndarray:
        """Normalise one image: colour (fitted reference), then scale.

        Parameters
        ----------
        image : ndarray of shape (H, W, 3), dtype uint8

        Returns
        -------
        ndarray of shape (H', W', 3), dtype uint8
            ``(side, side, 3)`` with ``scale=cell|nucleus``; resized with ``scale=mpp``; else (H, W, 3).

        Raises
        ------
        ConfigError
            If the normaliser is not fitted, or was fitted by another :data:`VERSION` of the arithmetic.
        NoCellFoundError
            Macenko finds too few stained pixels, or the scale step finds no cell.
        """
        if not hasattr(self, "reference_"):
            raise ConfigError("ImageNormaliser is not fitted: call fit (on training images) before transform_image.")
        if getattr(self, "version_", None) != VERSION:  # a model saved by other preprocess arithmetic
            raise ConfigError(
                f"This model's image normaliser was fitted by preprocess version {getattr(self, 'version_', None)}; "
                f"this code applies version {VERSION}, so its images would differ from those it was trained on. "
                "Fix: retrain the model with this version of hybridwbc (or use the version that trained it).")
        method, scale = self.method, self.scale
        ref = self.reference_
        if method == "reinhard":
            image = colour.reinhard(image, ref["lab_mean"], ref["lab_std"])
        elif method == "greyworld":
            image = colour.grey_world(image, ref["rgb_mean"])
        elif method == "macenko":
            image = colour.macenko(image, ref["stains"], ref["max_conc"] if self.rescale else None, self.io,
                                   self.beta, self.alpha)
        if scale in ("cell", "nucleus"):
            diameter, centroid = measure_cell(image, self.segmenter, scale)
            image = normalise_cell_scale(image, diameter, centroid, int(self.side), float(self.fraction))
        elif scale == "mpp":
            image = rescale_mpp(image, float(self.um_per_px), float(self.target_um_per_px))
        return image

    def transform(self, X: Iterable[np.ndarray]) -> list:
        """:meth:`transform_image` of each image: a list of ``uint8`` arrays (sizes may differ)."""
        return [self.transform_image(im) for im in X]

    def describe(self) -> dict:
        """Settings and fitted reference as JSON-ready values (model description, cache keys)."""
        params = {k: v for k, v in self.get_params(deep=False).items() if k != "segmenter"}
        params["segmenter"] = self.segmenter.settings() if params.get("scale") in ("cell", "nucleus") else None
        ref = {k: np.round(np.asarray(v, np.float64), 9).tolist() for k, v in getattr(self, "reference_", {}).items()}
        return {"version": VERSION, "params": params, "reference": ref,
                "n_fit_images": int(getattr(self, "n_fit_images_", 0))}

    def state_key(self) -> str:
        """A short hash of :meth:`describe`: equal keys normalise every image identically."""
        blob = json.dumps(self.describe(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
