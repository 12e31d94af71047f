"""The CNN classifier that reads image files.

Both are scikit-learn classifiers whose ``X`` holds image paths (``(n, 1)``
object array, column 0), so :func:`hybridwbc.evaluate.predict_out_of_sample`
clones them and trains the backbone on each training split only: the
evaluation stays leak-free with no special case.

* :class:`CNNClassifier` (``classifier=cnn_softmax``): a backbone from
  :mod:`hybridwbc.cnn.build` plus a softmax head, trained through a
  ``tf.data`` pipeline that streams images from disk (:mod:`hybridwbc.cnn.training`).
* :class:`~hybridwbc.cnn.heads.EmbeddingClassifier` (``cnn_svm``, ``cnn_rf``, ``hybrid``), in
  :mod:`hybridwbc.cnn.heads`: a classical head on this CNN's embeddings.

Both follow :class:`hybridwbc.models.parts.WBCEstimator` (``validate``, ``trained_cnn``).
TensorFlow is imported lazily, so building these objects from a config is fast.
"""

from __future__ import annotations

import gc
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from hybridwbc.cnn.augment import augmentation_changes, augmentation_options
from hybridwbc.cnn.backbones import resolve_precision, validate_backbone, validate_progressive, weights_identity
from hybridwbc.cnn.paths import PathInputTags, split_paths
from hybridwbc.cnn.training import (
    carry_over,
    compile_model,
    fit_model,
    load_trained,
    store_trained,
    training_key,
    validation_split,
)
from hybridwbc.errors import ConfigError, ImageReadError
from hybridwbc.models.parts import WBCEstimator

__all__ = ["CNNClassifier"]

log = logging.getLogger(__name__)

LR_SCHEDULES = ("cosine", "plateau", "constant")


class CNNClassifier(PathInputTags, WBCEstimator, ClassifierMixin, BaseEstimator):
    """A Keras CNN (backbone + softmax head) trained on image files.

    Parameters
    ----------
    backbone : str, default "compact"
        A key of :data:`hybridwbc.cnn.backbones.BACKBONES`.
    input_size : int, default 96
        Images are resized to ``input_size x input_size``.
    pooling : {"avg", "max"}, default "avg"
    weights : None, "imagenet" or str, default None
        Backbone initialisation: random, ImageNet (needs the internet), or a local weights file.
    backbone_params : dict, optional
        ``compact``: ``depth`` (blocks, default 4), ``width`` (filters of the first block, default 32),
        ``convs_per_block`` (default 2). Applications: constructor keyword arguments.
    dropout : float, default 0.2
        Dropout before the softmax layer.
    epochs : int, default 30
        Upper bound; early stopping usually ends sooner.
    batch_size : int, default 32
    learning_rate : float, default 2e-3
        Peak learning rate (Adam).
    lr_schedule : {"cosine", "plateau", "constant"}, default "cosine"
        Cosine decay over ``epochs`` with a one-epoch warm-up, or divide by 3 when the
        validation loss stalls.
    weight_decay : float, default 1e-4
        AdamW decoupled weight decay.
    patience : int, default 6
        Early stopping: epochs without improvement of the validation loss.
    validation_fraction : float, default 0.1
        Share of the *training* rows held out for early stopping, checkpointing and the BatchNorm
        re-estimation's check (stratified; grouped by the ``groups`` given to :meth:`fit`, i.e. by
        subject where subjects exist, else by content hash). ``0`` trains on all rows for ``epochs``.
    augment : bool, default True
        Flips, 90-degree rotations, small zoom and colour/stain jitter.
    augmentation : dict, optional
        The augmentation's amounts and the stain and acquisition ops (used when ``augment``): the fields of
        :class:`hybridwbc.config.AugmentConfig`, e.g. ``{"stain": 0.05, "blur_sigma": 1.0,
        "jpeg_quality_min": 60}``; a missing or ``null`` field keeps its default (the original augmentation,
        new ops off). Checked by :func:`hybridwbc.cnn.augment.augmentation_options`.
    class_weight : "balanced" or None, default "balanced"
    bn_momentum : float, default 0.9
        BatchNorm momentum; lower than Keras' 0.99 so the moving statistics keep up with
        short epochs (inference-mode accuracy is what ``val_accuracy`` reports).
    random_state : int, default 0
        Seeds Python, NumPy and TensorFlow (``keras.utils.set_random_seed``) and the splits.
    cache_dir : str, optional
        Embedding cache root (content hash + model identity); ``None`` disables caching.
    embed_batch_size : int, default 64
    steps_per_epoch : int, optional
        Cap on training steps per epoch (the training stream repeats); for quick or memory runs.
    disk_cache : bool, default True
        Stream decoded, resized training images from a temporary on-disk ``tf.data`` cache after the
        first epoch (saves re-decoding JPEGs; deleted after ``fit``).
    bn_recalibration : int, default 50
        Before each validation, re-estimate the BatchNorm moving statistics of the current weights from
        this many un-augmented training batches ("precise BN": cumulative averages over the batches,
        in training mode, no weight update). With a high learning rate the moving averages lag the
        weights and inference-mode accuracy swings from epoch to epoch; this removes that lag, so
        validation, early stopping, the checkpoint and the saved model all use matching statistics.
        ``0`` keeps Keras' moving averages.
    verbose : int, default 1
        ``1``: one progress bar per training and one closing line; ``2``: one line per epoch; ``0``: silent.
    deterministic : bool, default False
        Turn on TensorFlow's op determinism (``tf.config.experimental.enable_op_determinism``, for the whole
        process) before training, so a rerun with the same rows and ``random_state`` gives bit-identical
        weights. Without it the seeded data order and augmentation still repeat exactly, but multithreaded
        CPU kernels may sum gradients in a different order, so weights can differ in the last bits and the
        training path can drift. It may slow training.
    freeze : bool, default False
        Keep the backbone's starting weights (``weights``, e.g. a file from ``make pretrain``) fixed, BatchNorm
        statistics included, and train the head only: the embeddings are the pretrained backbone's.
    progressive_size : int, optional
        Progressive resizing: the first ``progressive_epochs`` epochs train on images resized to this smaller
        side (cheaper per image), then the same weights and optimizer state (learning-rate schedule, Adam
        moments) go on at ``input_size`` for the remaining epochs, as one training. Only the full-size epochs
        are checkpointed and early-stopped; the saved model takes ``input_size`` images. ``None``: off.
    progressive_epochs : int, default 0
        Epochs at ``progressive_size`` (fewer than ``epochs``; at least 1 when ``progressive_size`` is set).

    Attributes
    ----------
    classes_ : ndarray of str
    model_ : keras.Model
        Image -> class probabilities; the layer named ``embedding`` is the penultimate output.
    history_ : dict of str to list of float
        Per-epoch ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` (inference mode), ``lr``, ``epoch_s``.
    best_epoch_ : int
        1-based epoch whose weights were kept.
    val_accuracy_ : float or None
        Inference-mode accuracy of the kept weights on the validation rows.
    skipped_ : list of dict
        ``path`` and ``reason`` of training images that could not be decoded (skipped).
    fit_seconds_ : float
    n_embed_ : int
    """

    def __init__(self, backbone: str = "compact", input_size: int = 96, pooling: str = "avg", weights=None,
                 backbone_params: dict | None = None, dropout: float = 0.2, epochs: int = 30, batch_size: int = 32,
                 learning_rate: float = 2e-3, lr_schedule: str = "cosine", weight_decay: float = 1e-4,
                 patience: int = 6, validation_fraction: float = 0.1, augment: bool = True,
                 class_weight: str | None = "balanced", bn_momentum: float = 0.9, random_state: int = 0,
                 cache_dir: str | None = None, embed_batch_size: int = 64, steps_per_epoch: int | None = None,
                 disk_cache: bool = True, bn_recalibration: int = 50, verbose: int = 1, precision: str = "float32",
                 deterministic: bool = False, augmentation: dict | None = None, freeze: bool = False,
                 progressive_size: int | None = None, progressive_epochs: int = 0):
        self.backbone = backbone
        self.input_size = input_size
        self.pooling = pooling
        self.weights = weights
        self.backbone_params = backbone_params
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.weight_decay = weight_decay
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.augment = augment
        self.augmentation = augmentation
        self.deterministic = deterministic
        self.class_weight = class_weight
        self.bn_momentum = bn_momentum
        self.random_state = random_state
        self.cache_dir = cache_dir
        self.embed_batch_size = embed_batch_size
        self.steps_per_epoch = steps_per_epoch
        self.disk_cache = disk_cache
        self.bn_recalibration = bn_recalibration
        self.verbose = verbose
        self.precision = precision
        self.freeze = freeze
        self.progressive_size = progressive_size
        self.progressive_epochs = progressive_epochs

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check the settings without TensorFlow (called by :meth:`fit`; callable at composition).

        Raises
        ------
        ConfigError
            Unknown backbone, pooling or learning-rate schedule, too-small input size,
            an out-of-range number, or a bad ``augmentation`` mapping.
        """
        validate_backbone(self.backbone, self.input_size, self.pooling, self.backbone_params)
        resolve_precision(self.precision)
        augmentation_options(self.augmentation)
        if self.freeze and self.weights is None:
            raise ConfigError("backbone.freeze=true keeps the backbone's starting weights, but backbone.weights is "
                              "null (random). Fix: give a pretrained file, backbone.weights=<file>.weights.h5 "
                              "(make pretrain), or set backbone.freeze=false.")
        validate_progressive(self.backbone, self.input_size, self.pooling, self.backbone_params,
                             self.progressive_size, self.progressive_epochs, self.epochs)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"Unknown lr_schedule {self.lr_schedule!r}. Expected one of {list(LR_SCHEDULES)}.")
        if not 0.0 <= float(self.validation_fraction) < 0.5:
            raise ConfigError(f"validation_fraction must be in [0, 0.5); received {self.validation_fraction}.")
        if int(self.epochs) < 1 or int(self.batch_size) < 1:
            raise ConfigError(f"epochs and batch_size must be at least 1; received {self.epochs}, {self.batch_size}.")
        if self.class_weight not in (None, "balanced"):
            raise ConfigError(f"class_weight must be 'balanced' or null; received {self.class_weight!r}.")

    # ------------------------------------------------------------------ training
    def build_model(self, n_classes: int, input_size: int | None = None):
        """The untrained Keras model: image ``(input_size, input_size, 3)`` float32 in ``[0, 255]`` -> backbone ->
        ``embedding`` -> dropout -> softmax over ``n_classes`` (what :meth:`fit` trains; benches build it too).
        ``input_size`` overrides the estimator's (the low-resolution stage of progressive resizing)."""
        import keras

        from hybridwbc.cnn.build import build_backbone, dtype_policy

        size = int(input_size or self.input_size)
        with dtype_policy(resolve_precision(self.precision)):
            base = build_backbone(self.backbone, size, self.pooling, self.weights,
                                  dict(self.backbone_params or {}), bn_momentum=self.bn_momentum)
            base.name = "backbone"
            if self.freeze:  # inference mode too: BatchNorm keeps the pretrained statistics
                base.trainable = False
            inp = keras.Input((size, size, 3), name="image")
            emb = keras.layers.Identity(name="embedding")(base(inp))
            x = keras.layers.Dropout(self.dropout, name="dropout")(emb) if self.dropout else emb
            # the softmax in float32 under mixed precision (numerically safe loss)
            out = keras.layers.Dense(n_classes, activation="softmax", name="head", dtype="float32")(x)
            return keras.Model(inp, out, name=f"cnn_{self.backbone}")

    def fit(self, X, y, groups=None):
        """Train the backbone and head on image files (or reuse the model trained on the same rows).

        Parameters
        ----------
        X : array-like of shape (n, 1) (or more columns, ignored)
            Image paths in column 0.
        y : array-like of shape (n,)
        groups : array-like of shape (n,), optional
            Subject ids: the validation split takes whole groups, so early stopping and the kept
            checkpoint are judged on subjects the CNN never trained on. ``None``: grouped by content
            hash (exact duplicates stay together).

        Returns
        -------
        self
        """
        import keras

        import hybridwbc.cnn.build  # noqa: F401  (registers the Preprocess layer)
        from hybridwbc.data.manifest import file_sha256

        self.validate()
        t0 = time.perf_counter()
        paths, y, yi = self._fit_input(X, y, groups)
        keras.utils.set_random_seed(int(self.random_state))
        if self.deterministic:
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
        shas = np.array([file_sha256(p) or p for p in paths], dtype=object)
        val_groups = shas if groups is None else np.asarray(groups, dtype=object).astype(str)
        # the groups shape the validation split, so they are part of what names the training run
        key_groups = val_groups if groups is not None and float(self.validation_fraction) > 0 else None
        model_key = training_key(self.training_settings(), shas, y, key_groups) if self.cache_dir else None
        self.from_cache_ = False
        if self._load_cached_model(model_key):
            self.fit_seconds_ = time.perf_counter() - t0
            return self
        first, mon = self._train(paths, yi, val_groups)
        # the kept weights are the best full-size epoch's
        self.best_epoch_ = first + int(np.nanargmin(mon)) + 1 if mon else 0
        self.n_embed_ = int(self.model_.get_layer("embedding").output.shape[-1])
        self.n_features_in_ = 1
        self.fit_seconds_ = time.perf_counter() - t0
        if model_key is not None:
            state = {k: getattr(self, k) for k in self._STATE}
            state["classes_"] = [str(c) for c in self.classes_]
            store_trained(self._model_dir(model_key), self.model_, state)
        if self.verbose:
            va_txt = (f", inference-mode validation accuracy {self.val_accuracy_:.4f}"
                      if self.val_accuracy_ is not None else "")
            print(f"[cnn] kept epoch {self.best_epoch_} of {first + len(mon)}{va_txt}; "
                  f"trained in {self.fit_seconds_:.0f} s", flush=True)
        return self

    def _fit_input(self, X, y, groups):
        """Check ``fit``'s arguments and set ``classes_``; returns the paths, ``y`` and its class indices."""
        paths, _ = split_paths(X)
        y = np.asarray(y, dtype=object)
        if len(paths) != len(y):
            raise ValueError(f"X has {len(paths)} rows but y has {len(y)}.")
        if groups is not None and len(groups) != len(y):
            raise ValueError(f"groups has {len(groups)} entries but X has {len(y)} rows.")
        self.classes_ = np.array(sorted(set(y.tolist())), dtype=object)
        if len(self.classes_) < 2:
            raise ValueError(f"CNNClassifier needs at least two classes; received {list(self.classes_)}.")
        return paths, y, np.searchsorted(self.classes_.astype(str), y.astype(str)).astype(np.int64)

    def _train(self, paths, yi, val_groups):
        """Keras training (no cache): the validation split, class weights, the low-resolution epochs of
        progressive resizing if set, then the epochs at ``input_size``. Sets ``model_`` (the kept weights) and
        ``class_weights_``; returns the number of low-resolution epochs and the monitored values of the rest."""
        if float(self.validation_fraction) > 0:
            tr, va = validation_split(yi, val_groups, float(self.validation_fraction), int(self.random_state))
        else:
            tr, va = np.arange(len(paths)), np.empty(0, np.int64)
        n_classes = len(self.classes_)
        counts = np.bincount(yi[tr], minlength=n_classes).astype(float)
        if self.class_weight == "balanced":
            cw = len(tr) / (n_classes * np.maximum(counts, 1.0))
        else:
            cw = np.ones(n_classes)
        self.class_weights_ = {str(c): float(w) for c, w in zip(self.classes_, cw)}
        # training batches drop the remainder (one shape per step), so an epoch is floor(n / batch) steps
        steps = int(self.steps_per_epoch) if self.steps_per_epoch else max(1, len(tr) // int(self.batch_size))
        model = self.build_model(n_classes)
        compile_model(model, self.lr_schedule, self.learning_rate, self.weight_decay, steps, self.epochs)
        first = 0
        if self.progressive_size is not None:  # low-resolution epochs first, then go on at input_size
            first = int(self.progressive_epochs)
            small = self.build_model(n_classes, int(self.progressive_size))
            compile_model(small, self.lr_schedule, self.learning_rate, self.weight_decay, steps, self.epochs)
            fit_model(self, small, paths, yi, tr, va, cw, steps, size=int(self.progressive_size), epochs=first,
                      keep_best=False)
            carry_over(small, model)
            del small
            gc.collect()  # Keras models hold reference cycles: free the small model's memory now
        has_val = fit_model(self, model, paths, yi, tr, va, cw, steps, initial_epoch=first)
        self.model_ = model
        self._set_embedder()
        return first, self.history_.get("val_loss" if has_val else "loss", [])[first:]

    def trained_cnn(self):
        """This CNN once fitted, else ``None``."""
        return self if hasattr(self, "model_") else None

    # ------------------------------------------------------------------ trained-model cache
    _STATE = ("classes_", "class_weights_", "history_", "best_epoch_", "val_accuracy_", "skipped_", "n_embed_",
              "n_features_in_", "fit_seconds_")

    def training_settings(self) -> dict:
        """The settings that affect training, under fixed names: the trained-model cache key hashes this dict.

        The names are an identity, frozen when the cache was introduced (``seed`` is
        :attr:`random_state`), so renaming a parameter never silently orphans the cache.
        """
        return {"augment": self.augment, "backbone": self.backbone, "backbone_params": self.backbone_params,
                "batch_size": self.batch_size, "bn_momentum": self.bn_momentum,
                "bn_recalibration": self.bn_recalibration, "class_weight": self.class_weight,
                "disk_cache": self.disk_cache, "dropout": self.dropout, "epochs": self.epochs,
                "input_size": self.input_size, "learning_rate": self.learning_rate, "lr_schedule": self.lr_schedule,
                "patience": self.patience, "pooling": self.pooling, "seed": self.random_state,
                "steps_per_epoch": self.steps_per_epoch, "validation_fraction": self.validation_fraction,
                "weight_decay": self.weight_decay, "weights": weights_identity(self.weights),
                # only when not float32, so the keys of models trained before the setting existed still match
                **({"precision": p} if (p := resolve_precision(self.precision)) != "float32" else {}),
                **({"deterministic": True} if self.deterministic else {}),
                **({"freeze": True} if self.freeze else {}),
                **({"progressive": [int(self.progressive_size), int(self.progressive_epochs)]}
                   if self.progressive_size is not None else {}),
                # only what differs from the default augmentation, and only when augmenting (same reason)
                **({"augmentation": a} if self.augment and (a := augmentation_changes(self.augmentation)) else {})}

    def _model_dir(self, key: str) -> Path:
        return Path(os.fsdecode(self.cache_dir)) / "cnn_models" / key

    def _load_cached_model(self, key: str | None) -> bool:
        """Reuse a model trained earlier on the same rows with the same settings (no Keras training)."""
        found = load_trained(self._model_dir(key), verbose=bool(self.verbose)) if key is not None else None
        if found is None:
            return False
        model, state = found
        for k in self._STATE:
            setattr(self, k, state.get(k))
        self.classes_ = np.asarray(self.classes_, dtype=object)
        self.model_ = model
        self._set_embedder()
        self.from_cache_ = True
        return True

    # ------------------------------------------------------------------ inference
    def _set_embedder(self) -> None:
        import keras

        self._embedder = keras.Model(self.model_.input, self.model_.get_layer("embedding").output)
        self._cache_key = None

    def cache_key(self) -> str:
        """Identity of the fitted embedding model: weights hash + input size + preprocessing."""
        check_is_fitted(self, "model_")
        if getattr(self, "_cache_key", None) is None:
            from hybridwbc.cnn.build import model_identity

            self._cache_key = model_identity(self._embedder, self.input_size, f"{self.backbone}:{self.pooling}")
        return self._cache_key

    def embed(self, paths, shas=None):
        """Embeddings of image files, through the cache; unreadable files are skipped and listed.

        Returns
        -------
        hybridwbc.cnn.embed.EmbeddingResult
        """
        from hybridwbc.cnn.embed import extract_embeddings

        check_is_fitted(self, "model_")
        cache = os.path.join(os.fsdecode(self.cache_dir), "embeddings") if self.cache_dir else None
        return extract_embeddings(self._embedder, list(paths), self.input_size, shas=shas, cache_dir=cache,
                                  key=self.cache_key() if cache else None, batch_size=int(self.embed_batch_size))

    def _embed_all(self, X) -> np.ndarray:
        paths, _ = split_paths(X)
        res = self.embed(paths)
        if len(res.skipped):
            raise ImageReadError(
                f"{len(res.skipped)} of {len(paths)} images could not be decoded, e.g. "
                f"{res.skipped['path'].iloc[0]!r} ({res.skipped['reason'].iloc[0]}). Remove them before predicting."
            )
        return res.X

    def transform(self, X) -> np.ndarray:
        """Penultimate-layer embeddings, ``(n, n_embed)`` float32 (cached by content hash + model identity).

        Raises
        ------
        ImageReadError
            If any image cannot be decoded (rows cannot be dropped here).
        """
        return self._embed_all(X)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities ``(n, n_classes)``: the softmax head applied to the (cached) embeddings."""
        E = self._embed_all(X).astype(np.float64)
        W, b = (np.asarray(w, dtype=np.float64) for w in self.model_.get_layer("head").get_weights())
        z = E @ W + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """Predicted class labels."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def explain(self, images, target=None):
        """Grad-CAM heat maps of RGB images of any size for the predicted class or the ``target`` label(s)
        (:func:`hybridwbc.cnn.explain.explain_images`); returns a :class:`~hybridwbc.cnn.explain.CamResult`."""
        from hybridwbc.cnn.explain import explain_images

        check_is_fitted(self, "model_")
        return explain_images(self, images, target)

    # ------------------------------------------------------------------ persistence
    def save_keras(self, folder) -> Path:
        """Write the trained model as ``<folder>/cnn.keras`` (the ``embedding`` layer is the backbone output)."""
        check_is_fitted(self, "model_")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "cnn.keras"
        self.model_.save(path)
        return path

    def __getstate__(self):
        state = dict(self.__dict__)
        model = state.pop("model_", None)
        state.pop("_embedder", None)
        state.pop("_cache_key", None)
        if model is not None:
            with tempfile.TemporaryDirectory(prefix="hybridwbc-pickle-") as tmp:
                p = os.path.join(tmp, "cnn.keras")
                model.save(p)
                state["_keras_bytes"] = Path(p).read_bytes()
        return state

    def __setstate__(self, state):
        blob = state.pop("_keras_bytes", None)
        state.setdefault("progressive_size", None)  # estimators pickled before progressive resizing existed
        state.setdefault("progressive_epochs", 0)
        self.__dict__.update(state)
        if blob is not None:
            import keras

            import hybridwbc.cnn.build  # noqa: F401  (registers the Preprocess layer)

            with tempfile.TemporaryDirectory(prefix="hybridwbc-pickle-") as tmp:
                p = os.path.join(tmp, "cnn.keras")
                Path(p).write_bytes(blob)
                self.model_ = keras.models.load_model(p, compile=False)
            self._set_embedder()


def __getattr__(name: str):
    """``EmbeddingClassifier`` lived here before :mod:`hybridwbc.cnn.heads`: models saved then still load."""
    if name == "EmbeddingClassifier":
        from hybridwbc.cnn.heads import EmbeddingClassifier

        return EmbeddingClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
