"""A fitted pipeline (featurizer + classifier) that is saved, verified, loaded and applied to image files.

A saved model is a folder holding ``pipeline.joblib`` and ``model.json``. The
JSON records the classes, the feature names, the library versions and the
SHA-256 of every file in the folder; :meth:`WBCPipeline.load` refuses a folder
whose files do not match those hashes, before unpickling anything.

:meth:`WBCPipeline.predict_sources` predicts images given as paths or as
encoded bytes, with a bound on decoded pixels and optional abstention
(``min_confidence``: the label becomes ``uncertain``); one bad image, or a
featurizer or classifier failure on it, becomes an error row and never costs
the other rows their predictions. :mod:`hybridwbc.serve.pyfunc` wraps the pipeline
as an MLflow pyfunc model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from hybridwbc.data.atomic import atomic_path
from hybridwbc.data.manifest import file_sha256
from hybridwbc.errors import ConfigError, ModelLoadError, PartialPredictionError
from hybridwbc.features.base import jsonable
from hybridwbc.features.table import design_matrix
from hybridwbc.models.parts import trained_cnn
from hybridwbc.serve.results import OUT_OF_DOMAIN, UNCERTAIN, check_max_pixels, check_min_confidence, result_frame
from hybridwbc.serve.workers import resolve_n_jobs

__all__ = ["WBCPipeline", "design_matrix", "verify_files", "require_file", "result_frame", "check_min_confidence",
           "check_max_pixels", "UNCERTAIN", "OUT_OF_DOMAIN", "MODEL_FILE", "META_FILE", "CARD_FILE"]

MODEL_FILE = "pipeline.joblib"
META_FILE = "model.json"
#: The model card a run writes beside the model (hybridwbc.report.card); not hashed: it describes, never runs.
CARD_FILE = "MODEL_CARD.md"


def require_file(folder, name: str, what: str, fix: str) -> Path:
    """``folder / name``, which must be a file: the one check that a folder holds a saved model.

    Raises
    ------
    ModelLoadError
        ``No <name> file in <folder> (<name> is missing): this is not <what>. Fix: <fix>``.
    """
    path = Path(folder) / name
    if not path.is_file():
        raise ModelLoadError(f"No {name} file in {str(folder)!r} ({name} is missing): this is not {what}. Fix: {fix}")
    return path


def verify_files(folder: Path, files: dict, listing: str) -> None:
    """Check each ``name -> sha256`` of ``files`` (listed in ``listing``) against the files in ``folder``.

    Raises
    ------
    ModelLoadError
        If a listed file is missing or its SHA-256 differs.
    """
    for name, expected in files.items():
        p = Path(folder) / name
        if not p.is_file():
            raise ModelLoadError(f"Model file {str(p)!r} listed in {listing} is missing. Re-save the model.")
        if file_sha256(p) != expected:
            raise ModelLoadError(
                f"Model file {str(p)!r} does not match the SHA-256 recorded when it was saved; refusing to "
                "load it (it was modified or corrupted). Fix: use the original model folder."
            )


class WBCPipeline:
    """Featurizer and fitted classifier, applied together to image files.

    Parameters
    ----------
    featurizer : ImageFeaturizer
    estimator : fitted scikit-learn classifier
    info : dict, optional
        Free-form provenance (experiment, MLflow run id, config) saved in ``model.json``.
    input_kind : {"features", "paths", "paths_features"}
        What the estimator takes as ``X`` (see :func:`design_matrix`).
    domain : fitted ApplicabilityDomain, optional
        Fitted on the estimator's training rows (:mod:`hybridwbc.models.domain`); a row outside
        it gets ``status="out_of_domain"`` and the label ``uncertain``. ``None``: no check
        (models saved before the check existed).
    """

    def __init__(self, featurizer, estimator, info: dict | None = None, input_kind: str = "features",
                 domain=None):
        self.featurizer = featurizer
        self.estimator = estimator
        self.info = dict(info or {})
        self.input_kind = input_kind
        self.domain = domain

    @property
    def classes_(self) -> list[str]:
        return [str(c) for c in self.estimator.classes_]

    def predict_paths(self, paths: Sequence[str | bytes | os.PathLike], n_jobs: int | None = None, progress=False,
                      min_confidence: float = 0.0, max_pixels: int | None = None) -> pd.DataFrame:
        """Predict image files; a file that cannot be read or holds no cell gets an error row.

        Parameters
        ----------
        paths : sequence of str, bytes or os.PathLike
            Image files. A ``bytes`` path (a file name that is not valid
            UTF-8) is accepted and shown with :func:`os.fsdecode`.
        n_jobs : int, default None
            Worker processes for reading and featurizing: ``None`` or ``-1`` all cores
            (:mod:`hybridwbc.serve.workers`), ``1`` this process only.
        progress : bool, default False
        min_confidence : float in [0, 1], default 0
            Abstain below it: the row's label is ``"uncertain"`` (its
            probabilities are still reported; ``status`` stays ``ok``). A row
            outside the model's applicability domain is labelled ``uncertain``
            whatever its confidence, with ``status="out_of_domain"``.
        max_pixels : int, optional
            Largest ``width * height`` decoded (default
            :data:`hybridwbc.data.io.DEFAULT_MAX_PIXELS`); larger images are
            refused from their header, as an error row.

        Returns
        -------
        DataFrame
            One row per input path, in input order, with columns ``path``,
            ``label``, ``confidence``, ``p_<class>`` per class, ``status``
            (``ok``, ``out_of_domain`` or ``error``) and ``error`` (the reason
            of an error or of an out-of-domain row).
        """
        paths = [os.fsdecode(p) for p in paths]
        return self.predict_sources(paths, names=paths, n_jobs=n_jobs, progress=progress,
                                    min_confidence=min_confidence, max_pixels=max_pixels)

    def predict_sources(self, sources: Sequence[str | os.PathLike | bytes], names: Sequence[str] | None = None,
                        n_jobs: int | None = None, progress: bool = False, min_confidence: float = 0.0,
                        max_pixels: int | None = None) -> pd.DataFrame:
        """Predict images given as file paths or as the encoded bytes of image files.

        Every image is decoded with :func:`hybridwbc.data.io.read_image`
        (header checked against ``max_pixels`` before decoding), featurized,
        then the estimator predicts the images that were featurized, in one
        batch; if that batch fails, image by image, so one bad image never
        costs the others their predictions. Whatever goes wrong with one image
        (unreadable, too large, too small, no cell, a featurizer or estimator
        failure, a composite's part that cannot answer it) becomes an error row
        with the reason. Rows outside the model's applicability domain
        (:attr:`domain`) get ``status="out_of_domain"``, label ``uncertain``
        and their probabilities.

        Parameters
        ----------
        sources : sequence of str, os.PathLike or bytes
            A ``str``/``PathLike`` is a file path; ``bytes``, ``bytearray`` or
            ``memoryview`` are an image file's encoded bytes.
        names : sequence of str, optional
            The ``path`` column of the output; defaults to the path, or
            ``image[<i>]`` for encoded bytes.
        n_jobs, progress, min_confidence, max_pixels
            As in :meth:`predict_paths`.

        Returns
        -------
        DataFrame
            As :meth:`predict_paths`.

        Raises
        ------
        ConfigError
            If ``min_confidence`` is outside [0, 1], ``max_pixels`` is not
            positive, abstention is asked for while a class is named
            ``uncertain``, or ``n_jobs`` is 0 or below -1.
        """
        from hybridwbc.data.io import DEFAULT_MAX_PIXELS

        min_confidence = check_min_confidence(min_confidence)
        max_pixels = check_max_pixels(DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
        classes = self.classes_
        if min_confidence > 0 and UNCERTAIN in classes:
            raise ConfigError(
                f"Cannot abstain with min_confidence={min_confidence}: the model has a class named {UNCERTAIN!r}, "
                "the label abstention uses. Fix: use min_confidence=0 (no abstention)."
            )
        sources = list(sources)
        n = len(sources)
        if names is None:
            names = [f"image[{i}]" if _is_bytes(s) else os.fsdecode(s) for i, s in enumerate(sources)]
        names = [os.fsdecode(x) if isinstance(x, bytes) else str(x) for x in names]
        vectors, errors = _featurize_sources(self.featurizer, sources, max_pixels, resolve_n_jobs(n_jobs), progress)
        proba = np.full((n, len(classes)), np.nan)
        outside: dict = {}
        ok_rows = sorted(vectors)
        if ok_rows:
            self._predict_rows(sources, ok_rows, vectors, proba, errors, outside, max_pixels)
        ok = np.zeros(n, bool)
        ok[[i for i in ok_rows if i not in errors]] = True
        return result_frame(names, classes, proba, ok, errors, min_confidence, outside)

    def _predict_rows(self, sources, rows, vectors, proba, errors, outside, max_pixels: int) -> None:
        """Fill ``proba[rows]``, recording failed rows in ``errors`` and rows outside the domain in ``outside``.

        A batch that fails is retried without the rows a :class:`PartialPredictionError` names, then
        row by row, so one bad image never costs the others their predictions.
        """
        import tempfile

        from hybridwbc.errors import HybridWBCError

        with tempfile.TemporaryDirectory(prefix="hybridwbc-predict-") as tmp:
            paths = {}
            if self.input_kind != "features":  # estimators that read the image files themselves
                normalised = getattr(self.featurizer, "normalised_file", None)  # what training read, if fitted
                for i in rows:
                    try:
                        paths[i] = normalised(_read_one(sources[i], max_pixels), os.path.join(tmp, f"{i}.png")) \
                            if normalised is not None else _as_file(sources[i], tmp, i)
                    except HybridWBCError as exc:  # e.g. the file changed since it was featurized: an error row
                        errors[i] = f"{type(exc).__name__}: {exc}"
                rows = [i for i in rows if i not in errors]
            feats = {i: vectors[i] for i in rows}

            def X_of(idx):
                return design_matrix(self.input_kind, [paths.get(i, "") for i in idx],
                                     np.vstack([feats[i] for i in idx]))

            def run(idx):
                p = np.asarray(self.estimator.predict_proba(X_of(idx)), dtype=np.float64)
                if p.shape != (len(idx), len(self.classes_)) or not np.all(np.isfinite(p)):
                    raise ValueError(f"predict_proba returned shape {p.shape} or non-finite values")
                return p

            todo = list(rows)
            for _ in range(2):  # the batch, then once more without the rows a PartialPredictionError named
                try:
                    proba[todo] = run(todo)
                    todo = []
                except PartialPredictionError as exc:  # the rows it names are errors; the others keep their answer
                    errors.update({todo[k]: f"{type(exc).__name__}: {r}" for k, r in exc.reasons.items()})
                    keep = [k for k, i in enumerate(todo) if i not in errors]
                    p = np.asarray(exc.proba, dtype=np.float64)
                    if p.shape == (len(todo), len(self.classes_)) and np.all(np.isfinite(p[keep])):
                        proba[[todo[k] for k in keep]] = p[keep]
                        keep = []
                    todo = [todo[k] for k in keep]
                except Exception:  # noqa: BLE001 - isolate the row that fails, keep the others
                    break
                if not todo:
                    break
            for i in todo:
                try:
                    proba[i] = run([i])[0]
                except PartialPredictionError as exc:
                    errors[i] = f"{type(exc).__name__}: {exc.reasons.get(0, exc)}"
                except Exception as exc:  # noqa: BLE001
                    errors[i] = f"{type(exc).__name__}: the classifier failed on this image ({exc})"
            answered = [i for i in rows if i not in errors]
            if self.domain is not None and answered:
                self._check_domain(answered, X_of, errors, outside)

    def _check_domain(self, rows, X_of, errors, outside) -> None:
        """Record in ``outside`` the ``rows`` beyond :attr:`domain`; a row the check cannot measure is an error."""
        from hybridwbc.models.domain import domain_representation

        try:
            d = self.domain.distance(domain_representation(self.estimator, X_of(rows)))
        except Exception as exc:  # noqa: BLE001 - never answer a row the check could not measure
            for i in rows:
                errors[i] = f"{type(exc).__name__}: the applicability-domain check failed on this image ({exc})"
            return
        limit = float(self.domain.threshold_)
        for i, di in zip(rows, d):
            if not di <= limit:
                outside[i] = (f"outside the model's training domain: distance {di:.3g} to its nearest training "
                              f"cells > threshold {limit:.3g} (the {self.domain.quantile:g} quantile of "
                              "training distances); the answer would be a guess, send the cell to a human")

    # persistence ------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``pipeline.joblib``, ``cnn.keras`` where the estimator holds a trained CNN
        (:func:`hybridwbc.models.parts.trained_cnn`), and ``model.json`` (with the SHA-256 of every
        file) into ``folder`` (created)."""
        import joblib

        from hybridwbc.tracking import library_versions

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model_path = folder / MODEL_FILE
        with atomic_path(model_path) as tmp:
            joblib.dump(self, tmp)
        files = {MODEL_FILE: file_sha256(model_path)}  # the domain, if any, is pickled in it
        cnn = trained_cnn(self.estimator)
        if cnn is not None:
            files["cnn.keras"] = file_sha256(Path(cnn.save_keras(folder)))
        meta = {
            "format": "hybridwbc-pipeline/1",
            "classes": self.classes_,
            "feature_names": list(self.featurizer.feature_names()),
            "featurizer": type(self.featurizer).__name__,
            "featurizer_params": {k: repr(v) for k, v in self.featurizer.get_params().items()},
            "estimator": type(self.estimator).__name__,
            "input_kind": self.input_kind,
            "preprocess": self.featurizer.preprocess.describe() if hasattr(self.featurizer, "preprocess") else None,
            "domain": self.domain.describe() if getattr(self, "domain", None) is not None else None,
            "versions": library_versions(),
            "info": jsonable(self.info),
            "files": files,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "WBCPipeline":
        """Load a saved pipeline after checking its files against the recorded hashes.

        Raises
        ------
        ModelLoadError
            If the folder, ``model.json`` or a listed file is missing, or a hash differs.
        """
        import joblib

        folder = Path(folder)
        meta_path = require_file(folder, META_FILE, "a saved hybridwbc model (the model/ folder of a run, "
                                 "outputs/<date>/<time>/model)", "pass model=<that folder>.")
        try:
            meta = json.loads(meta_path.read_text())
            files = dict(meta["files"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{str(meta_path)!r} is not a valid hybridwbc model description ({exc}).") from exc
        verify_files(folder, files, META_FILE)
        obj = joblib.load(folder / MODEL_FILE)
        if not isinstance(obj, cls):
            raise ModelLoadError(f"{str(folder / MODEL_FILE)!r} holds a {type(obj).__name__}, not a WBCPipeline.")
        obj.__dict__.setdefault("domain", None)  # saved before the applicability domain existed
        return obj


def _is_bytes(x) -> bool:
    return isinstance(x, (bytes, bytearray, memoryview))


def _read_one(source, max_pixels: int):
    from hybridwbc.data.io import read_image
    from hybridwbc.errors import ImageReadError

    if _is_bytes(source):
        return read_image(bytes(source), max_pixels=max_pixels)
    path = os.fsdecode(source)
    if os.path.islink(path) and not os.path.exists(path):
        raise ImageReadError(f"Cannot read image {path!r}: a broken symbolic link or a symlink loop. "
                             "Fix: point it at an image file.")
    if os.path.isdir(path):
        raise ImageReadError(f"Cannot read image {path!r}: it is a folder, not an image file.")
    return read_image(path, max_pixels=max_pixels)


def _featurize_one(featurizer, source, max_pixels: int):
    """(vector or None, reason or None) for one image; never raises an ``Exception``."""
    from hybridwbc.errors import HybridWBCError

    try:
        vec = np.asarray(featurizer.featurize(_read_one(source, max_pixels)), dtype=np.float64)
    except HybridWBCError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - one image never stops a batch
        return None, f"{type(exc).__name__}: featurizing this image failed ({exc})"
    if vec.ndim != 1 or not np.all(np.isfinite(vec)):
        return None, "non-finite feature values"
    return vec, None


def _featurize_batch(featurizer, batch, max_pixels):
    return [(i, *_featurize_one(featurizer, s, max_pixels)) for i, s in batch]


def _featurize_sources(featurizer, sources, max_pixels: int, n_jobs: int = 1, progress: bool = False
                       ) -> tuple[dict, dict]:
    """Featurize every source: ({row: vector}, {row: reason})."""
    from tqdm.auto import tqdm

    featurizer.fit()
    todo = list(enumerate(sources))
    size = max(1, min(32, len(todo) // max(1, 4 * n_jobs)))
    chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
    if n_jobs == 1 or len(chunks) < 2:
        results = (_featurize_batch(featurizer, c, max_pixels) for c in chunks)
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(_featurize_batch)(featurizer, c, max_pixels) for c in chunks)
    vectors, errors = {}, {}
    with tqdm(total=len(todo), desc="predict", unit="img", disable=not progress, mininterval=1.0) as bar:
        for out in results:
            for i, vec, reason in out:
                if vec is None:
                    errors[i] = reason
                else:
                    vectors[i] = vec
            bar.update(len(out))
    return vectors, errors


def _as_file(source, folder: str, i: int) -> str:
    """A file path for ``source``: the path itself, or the bytes written to ``folder``."""
    if not _is_bytes(source):
        return os.fsdecode(source)
    data = bytes(source)
    suffix = ".png" if data[:8] == b"\x89PNG\r\n\x1a\n" else ".bmp" if data[:2] == b"BM" else \
        ".tif" if data[:4] in (b"II*\x00", b"MM\x00*") else ".jpg"
    path = os.path.join(folder, f"{i}{suffix}")
    with open(path, "wb") as fh:
        fh.write(data)
    return path
