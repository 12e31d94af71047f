"""A model saved by another run, used as an already-fitted classifier.

The ALL/HEM head learns from C-NMC while the white-cell stages learn from PBC,
so the two are trained in separate experiments and composed afterwards.
:class:`SavedModelClassifier` wraps a run's ``model/`` folder (a hash-checked
:class:`~hybridwbc.serve.pipeline.WBCPipeline`: its own featurizer and classifier)
as a scikit-learn classifier whose ``X`` is a column of image paths, so it can
be a prefit stage of :class:`~hybridwbc.models.cascade.CascadeClassifier`
(``head=..., head_columns=["path"]``). It is never refitted: ``clone`` returns
it as it is, and pickling keeps only the folder, which is reloaded (and its
hashes checked again) on first use.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

__all__ = ["SavedModelClassifier", "load_saved_classifier"]


class SavedModelClassifier(ClassifierMixin, BaseEstimator):
    """A saved hybridwbc model as a fitted classifier on image paths.

    Parameters
    ----------
    model_dir : str or os.PathLike
        The ``model/`` folder of a hybridwbc run.

    Attributes
    ----------
    pipeline_ : WBCPipeline
    classes_ : ndarray of shape (n_classes,), dtype object
    model_sha256_ : str
        SHA-256 of the folder's ``model.json`` when first loaded; a reload
        (after unpickling) refuses a folder whose ``model.json`` differs.
    n_features_in_ : int
        Always 1 (the path column).
    """

    def __init__(self, model_dir=None):
        self.model_dir = model_dir

    def fit(self, X=None, y=None):
        """Load the saved model (``X`` and ``y`` are ignored: it was fitted by its own run).

        Raises
        ------
        ModelLoadError
            If the folder is not a saved model or a file's hash differs.
        """
        from hybridwbc.data.manifest import file_sha256
        from hybridwbc.errors import ModelLoadError
        from hybridwbc.serve.pipeline import META_FILE, WBCPipeline

        folder = Path(os.fspath(self.model_dir))
        pipeline = WBCPipeline.load(folder)
        sha = file_sha256(folder / META_FILE)
        expected = self.__dict__.get("model_sha256_")
        if expected is not None and sha != expected:
            raise ModelLoadError(
                f"The saved model in {str(folder)!r} changed since this classifier was composed with it "
                f"({META_FILE} SHA-256 {sha[:12]}..., expected {expected[:12]}...). Fix: restore that model, "
                "or compose again with the new one."
            )
        self.pipeline_, self.model_sha256_ = pipeline, sha
        self.classes_ = np.asarray(pipeline.classes_, dtype=object)
        self.n_features_in_ = 1
        return self

    def __sklearn_clone__(self):
        return self  # fitted by another run: cloning must not forget it

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("pipeline_", None)  # the folder is the model; reloaded and re-checked on use
        return state

    def _loaded(self):
        if "pipeline_" not in self.__dict__:
            self.fit()
        return self.pipeline_

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of the images whose paths are ``X[:, 0]``.

        Parameters
        ----------
        X : array-like of shape (n_samples, 1) or (n_samples,), str paths

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), dtype float64

        Raises
        ------
        PartialPredictionError
            If the saved model cannot answer some images: it cannot read them,
            finds no cell, or finds them outside its training domain. Its
            ``reasons`` name this model's folder and say why; its ``proba``
            holds the other rows' answers (NaN for those). It never invents
            probabilities for an image it has no opinion on.
        """
        from hybridwbc.errors import PartialPredictionError

        pipe = self._loaded()
        paths = [os.fspath(p) for p in np.asarray(X, dtype=object).reshape(len(X), -1)[:, 0]]
        frame = pipe.predict_paths(paths)
        proba = frame[[f"p_{c}" for c in pipe.classes_]].to_numpy(dtype=np.float64)
        bad = (frame["status"] != "ok").to_numpy() | ~np.isfinite(proba).all(axis=1)
        if bad.any():
            proba[bad] = np.nan
            where = f"saved model {os.fspath(self.model_dir)!r}"
            raise PartialPredictionError({int(i): f"{where}: {frame['status'].iloc[i]}: {frame['error'].iloc[i]}"
                                          for i in np.flatnonzero(bad)}, proba)
        return proba

    def predict(self, X) -> np.ndarray:
        """Arg-max of :meth:`predict_proba`; shape (n_samples,)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def load_saved_classifier(model_dir) -> SavedModelClassifier:
    """``SavedModelClassifier(model_dir)``, loaded; a Hydra ``_target_`` for a prefit stage.

    Raises
    ------
    ModelLoadError
        If ``model_dir`` is not a saved hybridwbc model.
    """
    return SavedModelClassifier(model_dir).fit()
