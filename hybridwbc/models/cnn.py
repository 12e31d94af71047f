"""CNN classifiers that read image files: the end-to-end CNN and classical heads on its embeddings.

Both are scikit-learn classifiers whose ``X`` holds image paths (``(n, 1)``
object array, column 0), so :func:`hybridwbc.evaluate.predict_out_of_sample`
clones them and trains the backbone on each training split only: the
evaluation stays leak-free with no special case.

* :class:`CNNClassifier` (``classifier=cnn_softmax``): a backbone from
  :mod:`hybridwbc.features.cnn` plus a softmax head, trained through a
  ``tf.data`` pipeline that streams images from disk.
* :class:`EmbeddingClassifier` (``cnn_svm``, ``cnn_rf``, ``hybrid``): trains a
  :class:`CNNClassifier` on the training rows, then fits any scikit-learn
  classifier on its penultimate-layer embeddings, joined with any further
  columns of ``X`` (handcrafted features, for ``hybrid``).

TensorFlow is imported lazily, so building these objects from a config is fast.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from hybridwbc.errors import ConfigError, ImageReadError

__all__ = ["CNNClassifier", "EmbeddingClassifier", "split_paths", "recalibrate_batchnorm"]

log = logging.getLogger(__name__)

LR_SCHEDULES = ("cosine", "plateau", "constant")


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


def _validation_split(y: np.ndarray, groups: np.ndarray, fraction: float, seed: int):
    """Stratified split grouped by content hash (duplicates stay together); ``(train, val)`` indices."""
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    k = max(2, int(round(1.0 / fraction)))
    _, counts = np.unique(y, return_counts=True)
    if counts.min() >= k:
        tr, va = next(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y, groups))
    else:
        tr, va = next(GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed).split(y, y, groups))
    return np.sort(tr), np.sort(va)


class _PathInputTags:
    """scikit-learn tags of estimators whose ``X`` holds image paths (strings) and that train a CNN."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = True
        return tags


class CNNClassifier(_PathInputTags, ClassifierMixin, BaseEstimator):
    """A Keras CNN (backbone + softmax head) trained on image files.

    Parameters
    ----------
    backbone : str, default "compact"
        A key of :data:`hybridwbc.features.backbones.BACKBONES`.
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
        Share of the *training* rows held out for early stopping and checkpointing
        (stratified, grouped by content hash). ``0`` trains on all rows for ``epochs``.
    augment : bool, default True
        Flips, 90-degree rotations, small zoom and colour/stain jitter.
    class_weight : "balanced" or None, default "balanced"
    bn_momentum : float, default 0.9
        BatchNorm momentum; lower than Keras' 0.99 so the moving statistics keep up with
        short epochs (inference-mode accuracy is what ``val_accuracy`` reports).
    seed : int, default 0
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
        ``1`` prints one progress line per epoch.

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
                 class_weight: str | None = "balanced", bn_momentum: float = 0.9, seed: int = 0,
                 cache_dir: str | None = None, embed_batch_size: int = 64, steps_per_epoch: int | None = None,
                 disk_cache: bool = True, bn_recalibration: int = 50, verbose: int = 1):
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
        self.class_weight = class_weight
        self.bn_momentum = bn_momentum
        self.seed = seed
        self.cache_dir = cache_dir
        self.embed_batch_size = embed_batch_size
        self.steps_per_epoch = steps_per_epoch
        self.disk_cache = disk_cache
        self.bn_recalibration = bn_recalibration
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check the settings without TensorFlow (called by :meth:`fit`; callable at composition).

        Raises
        ------
        ConfigError
            Unknown backbone, pooling or learning-rate schedule, too-small input size,
            or an out-of-range number.
        """
        from hybridwbc.features.backbones import validate_backbone

        validate_backbone(self.backbone, self.input_size, self.pooling, self.backbone_params)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"Unknown lr_schedule {self.lr_schedule!r}. Expected one of {list(LR_SCHEDULES)}.")
        if not 0.0 <= float(self.validation_fraction) < 0.5:
            raise ConfigError(f"validation_fraction must be in [0, 0.5); received {self.validation_fraction}.")
        if int(self.epochs) < 1 or int(self.batch_size) < 1:
            raise ConfigError(f"epochs and batch_size must be at least 1; received {self.epochs}, {self.batch_size}.")
        if self.class_weight not in (None, "balanced"):
            raise ConfigError(f"class_weight must be 'balanced' or null; received {self.class_weight!r}.")

    # ------------------------------------------------------------------ training
    def _build(self, n_classes: int):
        import keras

        from hybridwbc.features.cnn import build_backbone

        base = build_backbone(self.backbone, self.input_size, self.pooling, self.weights,
                              dict(self.backbone_params or {}), bn_momentum=self.bn_momentum)
        base.name = "backbone"
        inp = keras.Input((self.input_size, self.input_size, 3), name="image")
        emb = keras.layers.Identity(name="embedding")(base(inp))
        x = keras.layers.Dropout(self.dropout, name="dropout")(emb) if self.dropout else emb
        out = keras.layers.Dense(n_classes, activation="softmax", name="head")(x)
        return keras.Model(inp, out, name=f"cnn_{self.backbone}")

    def fit(self, X, y):
        """Train the backbone and head on image files.

        Parameters
        ----------
        X : array-like of shape (n, 1) (or more columns, ignored)
            Image paths in column 0.
        y : array-like of shape (n,)

        Returns
        -------
        self
        """
        import keras

        from hybridwbc.data.manifest import file_sha256
        from hybridwbc.features.cnn import augment_microscopy, image_dataset

        self.validate()
        t0 = time.perf_counter()
        paths, _ = split_paths(X)
        y = np.asarray(y, dtype=object)
        if len(paths) != len(y):
            raise ValueError(f"X has {len(paths)} rows but y has {len(y)}.")
        self.classes_ = np.array(sorted(set(y.tolist())), dtype=object)
        if len(self.classes_) < 2:
            raise ValueError(f"CNNClassifier needs at least two classes; received {list(self.classes_)}.")
        yi = np.searchsorted(self.classes_.astype(str), y.astype(str)).astype(np.int64)
        keras.utils.set_random_seed(int(self.seed))
        shas = np.array([file_sha256(p) or p for p in paths], dtype=object)
        model_key = self._model_key(shas, y)
        self.from_cache_ = False
        if self._load_cached_model(model_key):
            self.fit_seconds_ = time.perf_counter() - t0
            return self
        if float(self.validation_fraction) > 0:
            tr, va = _validation_split(yi, shas, float(self.validation_fraction), int(self.seed))
        else:
            tr, va = np.arange(len(paths)), np.empty(0, np.int64)
        n_classes = len(self.classes_)
        counts = np.bincount(yi[tr], minlength=n_classes).astype(float)
        if self.class_weight == "balanced":
            cw = len(tr) / (n_classes * np.maximum(counts, 1.0))
        else:
            cw = np.ones(n_classes)
        self.class_weights_ = {str(c): float(w) for c, w in zip(self.classes_, cw)}
        size, bs = int(self.input_size), int(self.batch_size)
        steps = int(self.steps_per_epoch) if self.steps_per_epoch else int(np.ceil(len(tr) / bs))

        model = self._build(n_classes)
        total = max(1, steps * int(self.epochs))
        lr = float(self.learning_rate)
        if self.lr_schedule == "cosine":
            warm = min(steps, total // 4)
            sched = keras.optimizers.schedules.CosineDecay(lr / 10.0, max(1, total - warm), alpha=0.01,
                                                           warmup_target=lr if warm else None, warmup_steps=warm)
        else:
            sched = lr
        opt = keras.optimizers.AdamW(learning_rate=sched, weight_decay=float(self.weight_decay))
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])

        train_paths = [paths[i] for i in tr]
        val_paths = [paths[i] for i in va]
        seen: set[int] = set()
        seen_val: set[int] = set()
        work = tempfile.mkdtemp(prefix="hybridwbc-cnn-")
        use_disk = bool(self.disk_cache) and not self.steps_per_epoch
        try:
            train_ds = image_dataset(
                train_paths, size, bs, labels=yi[tr], weights=cw[yi[tr]], shuffle_seed=int(self.seed),
                augment=augment_microscopy(size) if self.augment else None,
                record=lambda i: seen.update(int(k) for k in i),
                disk_cache=os.path.join(work, "train") if use_disk else None, repeat=bool(self.steps_per_epoch))
            val_ds = image_dataset(val_paths, size, int(self.embed_batch_size), labels=yi[va],
                                   record=lambda i: seen_val.update(int(k) for k in i)) if len(va) else None
            ckpt = os.path.join(work, "best.weights.h5")
            monitor = "val_loss" if val_ds is not None else "loss"
            recal_ds = None
            if int(self.bn_recalibration) > 0 and _bn_layers(model):
                rng = np.random.default_rng(int(self.seed))
                pick = rng.permutation(len(train_paths))[: int(self.bn_recalibration) * bs]
                recal_ds = image_dataset([train_paths[k] for k in pick], size, bs,
                                         disk_cache=os.path.join(work, "recal") if use_disk else None)
            callbacks = [
                _EpochLog(self, [(train_paths, seen, not self.steps_per_epoch), (val_paths, seen_val, True)],
                          int(self.epochs), val_ds=val_ds, recal_ds=recal_ds),
                keras.callbacks.ModelCheckpoint(ckpt, monitor=monitor, save_best_only=True, save_weights_only=True),
            ]
            if val_ds is not None and self.patience:
                callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=int(self.patience)))
            if self.lr_schedule == "plateau":
                callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=1 / 3,
                                                                   patience=max(1, int(self.patience) // 2)))
            self.skipped_ = []
            with warnings.catch_warnings():
                # ignore_errors() leaves the stream's length unknown (a bad file is dropped), so Keras
                # learns the epoch length at the end of the first epoch and says so; that is expected.
                warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
                model.fit(train_ds, epochs=int(self.epochs), shuffle=False,
                          steps_per_epoch=steps if self.steps_per_epoch else None, callbacks=callbacks, verbose=0)
                if os.path.isfile(ckpt):
                    model.load_weights(ckpt)
                self.val_accuracy_ = None
                if val_ds is not None:
                    self.val_accuracy_ = float(model.evaluate(val_ds, verbose=0, return_dict=True)["accuracy"])
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self.model_ = model
        self._set_embedder()
        mon = self.history_.get("val_loss" if val_ds is not None else "loss", [])
        self.best_epoch_ = int(np.nanargmin(mon)) + 1 if mon else 0
        self.n_embed_ = int(model.get_layer("embedding").output.shape[-1])
        self.n_features_in_ = 1
        self.fit_seconds_ = time.perf_counter() - t0
        self._store_cached_model(model_key)
        if self.verbose:
            va_txt = f", inference-mode validation accuracy {self.val_accuracy_:.4f}" if self.val_accuracy_ is not None else ""
            print(f"[cnn] kept epoch {self.best_epoch_} of {len(mon)}{va_txt}; trained in {self.fit_seconds_:.0f} s",
                  flush=True)
        return self

    # ------------------------------------------------------------------ trained-model cache
    _STATE = ("classes_", "class_weights_", "history_", "best_epoch_", "val_accuracy_", "skipped_", "n_embed_",
              "n_features_in_", "fit_seconds_")

    def _model_key(self, shas, y) -> str | None:
        """Key of a training run: the ordered training images (content hashes) and labels, the
        settings that affect training, and the TensorFlow/Keras versions."""
        if not self.cache_dir:
            return None
        import hashlib
        import json

        import keras
        import tensorflow as tf

        params = {k: v for k, v in self.get_params().items() if k not in ("cache_dir", "embed_batch_size", "verbose")}
        blob = json.dumps({"params": params, "data": [[str(a), str(b)] for a, b in zip(shas, y)],
                           "versions": [tf.__version__, keras.__version__], "v": 1}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def _model_dir(self, key: str) -> Path:
        return Path(os.fsdecode(self.cache_dir)) / "cnn_models" / key

    def _load_cached_model(self, key: str | None) -> bool:
        """Reuse a model trained earlier on the same rows with the same settings (no Keras training)."""
        import json

        import keras

        if key is None:
            return False
        folder = self._model_dir(key)
        if not (folder / "cnn.keras").is_file() or not (folder / "state.json").is_file():
            return False
        try:
            state = json.loads((folder / "state.json").read_text())
            model = keras.models.load_model(folder / "cnn.keras", compile=False)
        except Exception as exc:  # a corrupt entry is retrained, never fatal
            log.warning("Ignoring unreadable cached CNN in %s (%s); training again.", folder, exc)
            return False
        for k in self._STATE:
            setattr(self, k, state.get(k))
        self.classes_ = np.asarray(self.classes_, dtype=object)
        self.model_ = model
        self._set_embedder()
        self.from_cache_ = True
        if self.verbose:
            print(f"[cnn] reusing the model trained on these same rows with these settings: {folder}", flush=True)
        return True

    def _store_cached_model(self, key: str | None) -> None:
        import json

        if key is None:
            return
        folder = self._model_dir(key)
        if folder.is_dir():
            return
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        try:
            self.model_.save(tmp / "cnn.keras")
            state = {k: getattr(self, k) for k in self._STATE}
            state["classes_"] = [str(c) for c in self.classes_]
            (tmp / "state.json").write_text(json.dumps(state, default=float))
            os.replace(tmp, folder)
        except OSError as exc:
            log.warning("Could not store the trained CNN in the cache (%s).", exc)
            shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------------ inference
    def _set_embedder(self) -> None:
        import keras

        self._embedder = keras.Model(self.model_.input, self.model_.get_layer("embedding").output)
        self._cache_key = None

    def cache_key(self) -> str:
        """Identity of the fitted embedding model: weights hash + input size + preprocessing."""
        check_is_fitted(self, "model_")
        if getattr(self, "_cache_key", None) is None:
            from hybridwbc.features.cnn import model_identity

            self._cache_key = model_identity(self._embedder, self.input_size, f"{self.backbone}:{self.pooling}")
        return self._cache_key

    def embed(self, paths, shas=None):
        """Embeddings of image files, through the cache; unreadable files are skipped and listed.

        Returns
        -------
        hybridwbc.features.cnn.EmbeddingResult
        """
        from hybridwbc.features.cnn import extract_embeddings

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
        self.__dict__.update(state)
        if blob is not None:
            import keras

            import hybridwbc.features.cnn  # noqa: F401  (registers the Preprocess layer)

            with tempfile.TemporaryDirectory(prefix="hybridwbc-pickle-") as tmp:
                p = os.path.join(tmp, "cnn.keras")
                Path(p).write_bytes(blob)
                self.model_ = keras.models.load_model(p, compile=False)
            self._set_embedder()



def _bn_layers(model) -> list:
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            out.append(layer)
        elif isinstance(layer, keras.Model):
            out.extend(_bn_layers(layer))
    return out


def recalibrate_batchnorm(model, dataset) -> int:
    """Re-estimate every BatchNorm layer's moving mean and variance for the current weights.

    Runs ``model(x, training=True)`` over the batches of ``dataset`` (images, ...) with each layer's
    momentum set to ``t / (t + 1)`` at batch ``t``, so the moving statistics become the plain average of
    the per-batch statistics; no weight is updated. Momentum is restored afterwards. Returns the number
    of batches used.
    """
    layers = _bn_layers(model)
    old = [layer.momentum for layer in layers]
    t = 0
    try:
        for batch in dataset:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            for layer in layers:
                layer.momentum = t / (t + 1.0)
            model(x, training=True)
            t += 1
    finally:
        for layer, m in zip(layers, old):
            layer.momentum = m
    return t


class _EpochLog:
    """Keras callback: one progress line per epoch, ``history_``, and skipped-file reports."""

    def __new__(cls, *args, **kwargs):
        import keras

        class _CB(keras.callbacks.Callback):
            def __init__(self, est, streams, epochs, val_ds=None, recal_ds=None):
                super().__init__()
                self.est, self.streams, self.epochs = est, streams, epochs
                self.val_ds, self.recal_ds = val_ds, recal_ds
                est.history_ = {k: [] for k in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_s")}

            def on_epoch_begin(self, epoch, logs=None):
                self.t = time.perf_counter()
                for _, seen, _ in self.streams:
                    seen.clear()

            def on_epoch_end(self, epoch, logs=None):
                from hybridwbc.features.cnn import _reason

                if logs is None:
                    logs = {}
                if self.recal_ds is not None:
                    recalibrate_batchnorm(self.model, self.recal_ds)
                if self.val_ds is not None:
                    val = self.model.evaluate(self.val_ds, verbose=0, return_dict=True)
                    logs.update({"val_" + k: float(v) for k, v in val.items()})
                opt = self.model.optimizer
                lr = float(np.asarray(opt.learning_rate if not callable(getattr(opt, "_learning_rate", None))
                                      else opt._learning_rate(opt.iterations)))
                h = self.est.history_
                for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
                    h[k].append(float(logs.get(k, np.nan)))
                h["lr"].append(lr)
                h["epoch_s"].append(time.perf_counter() - self.t)
                known = {d["path"] for d in self.est.skipped_}
                for paths, seen, check in self.streams:
                    if not check:
                        continue
                    for k in range(len(paths)):
                        if k not in seen and paths[k] not in known:
                            reason = _reason(paths[k])
                            self.est.skipped_.append({"path": paths[k], "reason": reason})
                            log.warning("Training image %s could not be decoded and was skipped: %s", paths[k], reason)
                if self.est.verbose:
                    val = (f"  val_loss {h['val_loss'][-1]:.4f}  val_acc {h['val_accuracy'][-1]:.4f}"
                           if "val_loss" in logs else "")
                    skipped = f"  skipped {len(self.est.skipped_)}" if self.est.skipped_ else ""
                    print(f"[cnn] epoch {epoch + 1}/{self.epochs}  loss {h['loss'][-1]:.4f}  "
                          f"acc {h['accuracy'][-1]:.4f}{val}  lr {lr:.2e}  {h['epoch_s'][-1]:.0f}s{skipped}",
                          flush=True)

        return _CB(*args, **kwargs)


class EmbeddingClassifier(_PathInputTags, ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier on the embeddings of a CNN trained on the same training rows.

    ``fit`` clones and trains ``cnn`` on the training rows, embeds them with the
    trained backbone (``training=False``) and fits a clone of ``head`` on the
    embeddings, joined with any further columns of ``X`` (handcrafted features:
    the ``hybrid`` classifier). ``predict`` embeds, joins, and asks the head.

    Parameters
    ----------
    cnn : CNNClassifier
    head : scikit-learn classifier
        E.g. an SVM pipeline or a random forest.

    Attributes
    ----------
    cnn_ : CNNClassifier (fitted)
    head_ : fitted head
    classes_ : ndarray
    history_ : dict
        The CNN's per-epoch history.
    n_extra_ : int
        Handcrafted columns joined to the embeddings.
    """

    def __init__(self, cnn=None, head=None):
        self.cnn = cnn
        self.head = head

    def _design(self, E: np.ndarray, extra: np.ndarray) -> np.ndarray:
        return np.hstack([np.asarray(E, dtype=np.float64), extra]) if extra.shape[1] else np.asarray(E, np.float64)

    def fit(self, X, y):
        """Train the CNN, then the head on its embeddings (plus extra columns). Returns ``self``."""
        if self.cnn is None or self.head is None:
            raise ConfigError("EmbeddingClassifier needs both cnn and head; received "
                              f"cnn={self.cnn!r}, head={self.head!r}.")
        paths, extra = split_paths(X)
        y = np.asarray(y, dtype=object)
        self.cnn_ = clone(self.cnn).fit(paths, y)
        res = self.cnn_.embed(paths)
        keep = res.index
        self.head_ = clone(self.head).fit(self._design(res.X, extra[keep]), y[keep])
        self.classes_ = np.asarray(self.head_.classes_)
        self.n_extra_ = int(extra.shape[1])
        self.n_features_in_ = 1 + self.n_extra_
        self.skipped_ = res.skipped.to_dict("records")
        return self

    @property
    def history_(self) -> dict:
        check_is_fitted(self, "cnn_")
        return self.cnn_.history_

    def transform(self, X) -> np.ndarray:
        """The head's input: embeddings joined with the extra columns."""
        check_is_fitted(self, "head_")
        _, extra = split_paths(X)
        if extra.shape[1] != self.n_extra_:
            raise ValueError(f"X has {extra.shape[1]} handcrafted column(s); the model was fitted with {self.n_extra_}.")
        return self._design(self.cnn_.transform(X), extra)

    def predict_proba(self, X) -> np.ndarray:
        return self.head_.predict_proba(self.transform(X))

    def predict(self, X) -> np.ndarray:
        return self.head_.predict(self.transform(X))

    def save_keras(self, folder) -> Path:
        """Write the trained backbone as ``<folder>/cnn.keras``."""
        check_is_fitted(self, "cnn_")
        return self.cnn_.save_keras(folder)

