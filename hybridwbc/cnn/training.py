"""Training a Keras CNN on image files: validation split, optimiser, callbacks, BatchNorm re-estimation, cache.

What :meth:`hybridwbc.cnn.estimators.CNNClassifier.fit` calls, in order:

* :func:`validation_split`: stratified, grouped by subject where subjects are given, else by content
  hash (duplicates stay together);
* :func:`compile_model`: AdamW with a cosine (one-epoch warm-up), plateau or constant learning rate;
* :func:`fit_model`: the ``tf.data`` streams, one :class:`EpochLog` line per epoch (inference-mode
  validation after :func:`recalibrate_batchnorm`), best-weights checkpoint and early stopping;
* the trained-model cache: :func:`training_key` names a training run (the ordered training images
  and labels, the settings that affect training, the TensorFlow/Keras versions), and
  :func:`load_trained` / :func:`store_trained` reuse a model trained earlier on the same rows.

TensorFlow and Keras are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
import weakref
from pathlib import Path

import numpy as np

from hybridwbc.cnn.augment import augmentation_options
from hybridwbc.cnn.images import augment_microscopy, image_dataset, unreadable_reason
from hybridwbc.data.atomic import atomic_path

__all__ = ["validation_split", "compile_model", "fit_model", "bn_layers", "recalibrate_batchnorm", "validate_model",
           "compiled_steps", "EpochLog", "TRAINING_VERSION", "carry_over",
           "training_key", "load_trained", "store_trained"]

log = logging.getLogger(__name__)


def validation_split(y: np.ndarray, groups: np.ndarray, fraction: float, seed: int):
    """Stratified split that never splits a group (subjects, else content hashes); ``(train, val)`` indices."""
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    k = max(2, int(round(1.0 / fraction)))
    groups = np.asarray(groups, dtype=object).astype(str)
    fewest = min(len(set(groups[y == c])) for c in np.unique(y))  # groups of the class with the fewest
    if fewest >= k:  # stratified folds need k groups of every class; with fewer subjects, a grouped shuffle
        tr, va = next(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y, groups))
    else:
        tr, va = next(GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed).split(y, y, groups))
    return np.sort(tr), np.sort(va)


def compile_model(model, lr_schedule: str, learning_rate: float, weight_decay: float, steps: int, epochs: int):
    """Compile ``model`` with AdamW and the learning-rate schedule (cosine: warm-up over the first epoch)."""
    import keras

    total = max(1, steps * int(epochs))
    lr = float(learning_rate)
    if lr_schedule == "cosine":
        warm = min(steps, total // 4)
        sched = keras.optimizers.schedules.CosineDecay(lr / 10.0, max(1, total - warm), alpha=0.01,
                                                       warmup_target=lr if warm else None, warmup_steps=warm)
    else:
        sched = lr
    opt = keras.optimizers.AdamW(learning_rate=sched, weight_decay=float(weight_decay))
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def fit_model(est, model, paths, yi, tr, va, cw, steps, size=None, epochs=None, initial_epoch=0,
              keep_best=True) -> bool:
    """Train a compiled ``model`` on ``paths[tr]`` (validation on ``paths[va]``) with ``est``'s settings.

    Sets ``est.history_``, ``est.skipped_`` and ``est.val_accuracy_``; the kept weights are the
    checkpoint of the best epoch. Returns whether there was a validation stream.
    ``size`` (default ``est.input_size``) is the image side of this stage; epochs ``initial_epoch`` to
    ``epochs`` (default ``est.epochs``) run. ``keep_best=False`` (the low-resolution stage of progressive
    resizing) keeps the last weights, with no checkpoint and no early stopping.
    """
    size, bs = int(size or est.input_size), int(est.batch_size)
    epochs = int(epochs or est.epochs)
    # a later stage draws its own data order and augmentation (a new stream with the first stage's seed would
    # replay the first stage's epochs); a single-stage training keeps random_state itself
    seed = int(est.random_state) if not initial_epoch else \
        int(np.random.SeedSequence([int(est.random_state), int(initial_epoch)]).generate_state(1)[0] >> 1)
    train_paths = [paths[i] for i in tr]
    val_paths = [paths[i] for i in va]
    seen: set[int] = set()
    seen_val: set[int] = set()
    work = tempfile.mkdtemp(prefix="hybridwbc-cnn-")
    use_disk = bool(est.disk_cache) and not est.steps_per_epoch
    try:
        train_ds = image_dataset(
            train_paths, size, bs, labels=yi[tr], weights=cw[yi[tr]], shuffle_seed=seed,
            augment=augment_microscopy(size, **augmentation_options(est.augmentation)) if est.augment else None,
            record=lambda i: seen.update(int(k) for k in i),
            disk_cache=os.path.join(work, "train") if use_disk else None, repeat=bool(est.steps_per_epoch),
            drop_remainder=True)
        val_ds = image_dataset(val_paths, size, int(est.embed_batch_size), labels=yi[va],
                               record=lambda i: seen_val.update(int(k) for k in i)) if len(va) else None
        ckpt = os.path.join(work, "best.weights.h5")
        recal_ds = None
        if int(est.bn_recalibration) > 0 and bn_layers(model) and not getattr(est, "freeze", False):
            rng = np.random.default_rng(int(est.random_state))
            pick = rng.permutation(len(train_paths))[: int(est.bn_recalibration) * bs]
            recal_ds = image_dataset([train_paths[k] for k in pick], size, bs,
                                     disk_cache=os.path.join(work, "recal") if use_disk else None)
        streams = [(train_paths, seen, not est.steps_per_epoch), (val_paths, seen_val, True)]
        callbacks = _callbacks(est, streams, ckpt if keep_best else None, val_ds, recal_ds, epochs, initial_epoch, size)
        if not initial_epoch:  # a later stage reads the same files: its skipped ones are already listed
            est.skipped_ = []
        with warnings.catch_warnings():
            # ignore_errors() leaves the stream's length unknown (a bad file is dropped), so Keras
            # learns the epoch length at the end of the first epoch and says so; that is expected.
            warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
            model.fit(train_ds, epochs=epochs, initial_epoch=int(initial_epoch), shuffle=False,
                      steps_per_epoch=steps if est.steps_per_epoch else None, callbacks=callbacks, verbose=0)
            if keep_best and os.path.isfile(ckpt):
                model.load_weights(ckpt)
            est.val_accuracy_ = None
            if val_ds is not None and keep_best:
                est.val_accuracy_ = validate_model(model, val_ds)["accuracy"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
        # how often each compiled step was traced (once each), then drop the steps: they hold the model;
        # a low-resolution stage's steps are named with their side (validate@64)
        tag = "" if keep_best else f"@{size}"
        est.tracing_counts_ = {**(getattr(est, "tracing_counts_", {}) if initial_epoch else {}),
                               **{name + tag: int(f.experimental_get_tracing_count())
                                  for name, f in compiled_steps(model).items()}}
        _STEPS.pop(model, None)
    return val_ds is not None


def _callbacks(est, streams, ckpt, val_ds, recal_ds, epochs, initial_epoch=0, size=None) -> list:
    """Epoch log, best-weights checkpoint and early stopping (unless ``ckpt`` is ``None``), and the plateau
    schedule if asked."""
    import keras

    monitor = "val_loss" if val_ds is not None else "loss"
    callbacks = [EpochLog(est, streams, int(epochs), val_ds=val_ds, recal_ds=recal_ds, initial=int(initial_epoch),
                          size=size)]
    if ckpt is not None:
        callbacks.append(keras.callbacks.ModelCheckpoint(ckpt, monitor=monitor, save_best_only=True,
                                                         save_weights_only=True))
    if ckpt is not None and val_ds is not None and est.patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=int(est.patience)))
    if est.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=1 / 3,
                                                           patience=max(1, int(est.patience) // 2)))
    return callbacks


def carry_over(src, dst) -> None:
    """Continue ``src``'s training in ``dst``: the same layers built for another input size (progressive
    resizing). Copies the weights and the optimizer's state (step count, Adam moments), so the learning-rate
    schedule and the moments go on as in one training. ``dst`` must be compiled.

    Raises
    ------
    ValueError
        If the two models' weights or optimizer variables do not match in number or shape.
    """
    a, b = src.get_weights(), dst.get_weights()
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        raise ValueError(f"Cannot continue training of {src.name!r} in {dst.name!r}: their weights differ "
                         f"({len(a)} vs {len(b)} arrays). Progressive resizing needs a backbone whose weights do "
                         "not depend on the input size (global pooling).")
    dst.set_weights(a)
    dst.optimizer.build(dst.trainable_variables)
    va, vb = src.optimizer.variables, dst.optimizer.variables
    if len(va) != len(vb) or any(tuple(x.shape) != tuple(y.shape) for x, y in zip(va, vb)):
        raise ValueError(f"Cannot carry the optimizer state of {src.name!r} over to {dst.name!r}: "
                         f"{len(va)} vs {len(vb)} variables. Compile both models the same way.")
    for x, y in zip(va, vb):
        y.assign(x)


def bn_layers(model) -> list:
    """Every BatchNormalization layer of ``model``, nested models included."""
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            out.append(layer)
        elif isinstance(layer, keras.Model):
            out.extend(bn_layers(layer))
    return out


def recalibrate_batchnorm(model, dataset) -> int:
    """Re-estimate every BatchNorm layer's moving mean and variance for the current weights.

    Runs ``model(x, training=True)`` over the batches of ``dataset`` (images, ...) and sets each
    layer's moving statistics to the plain average of the per-batch statistics; no weight is updated.
    The pass is one compiled ``tf.function`` per model (traced once, reused at every epoch): inside it
    each layer's momentum is 0, so after a batch its moving statistics are that batch's, which are
    summed into accumulators; momentum is restored afterwards. Returns the number of batches used.
    """
    layers = bn_layers(model)
    if not layers:
        return 0
    step, sums = _recalibration_step(model, layers)
    for acc in sums:
        acc.assign(acc * 0.0)
    old = [layer.momentum for layer in layers]
    t = 0
    try:
        for layer in layers:
            layer.momentum = 0.0
        for batch in dataset:
            step(batch[0] if isinstance(batch, (tuple, list)) else batch)
            t += 1
    finally:
        for layer, m in zip(layers, old):
            layer.momentum = m
    if t:
        for k, layer in enumerate(layers):
            layer.moving_mean.assign(sums[2 * k] / t)
            layer.moving_variance.assign(sums[2 * k + 1] / t)
    return t


#: The compiled steps (validation, BatchNorm re-estimation) of each model in training, traced once per model;
#: not attributes of the model, where Keras would track the accumulators as the model's weights. The steps
#: refer to their model, so :func:`fit_model` drops its model's entry when training ends.
_STEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def compiled_steps(model) -> dict:
    """The compiled steps made for ``model`` so far (``validate``, ``recalibrate``): name -> ``tf.function``."""
    steps = dict(_STEPS.get(model, {}))
    if "recalibrate" in steps:
        steps["recalibrate"] = steps["recalibrate"][0]
    return steps


def validate_model(model, dataset) -> dict:
    """Inference-mode ``loss`` (mean sparse categorical cross-entropy) and ``accuracy`` of ``model`` over
    ``dataset`` (batches of ``(images, labels)``), as ``model.evaluate`` reports them, through one compiled
    step per model whose batch dimension is unknown, so a last partial batch is not a second trace."""
    import keras
    import tensorflow as tf

    step = _STEPS.get(model, {}).get("validate")
    if step is None:
        shape = [None, *model.inputs[0].shape[1:]]

        @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32), tf.TensorSpec([None], tf.int64)])
        def step(x, y):
            p = tf.cast(model(x, training=False), tf.float32)
            loss = keras.losses.sparse_categorical_crossentropy(y, p)
            hit = tf.cast(tf.equal(tf.argmax(p, axis=1), y), tf.float32)
            return tf.reduce_sum(loss), tf.reduce_sum(hit), tf.cast(tf.shape(x)[0], tf.float32)

        _STEPS.setdefault(model, {})["validate"] = step
    loss = hit = n = 0.0
    for batch in dataset:
        a, b, c = step(batch[0], tf.cast(batch[1], tf.int64))
        loss, hit, n = loss + float(a), hit + float(b), n + float(c)
    return {"loss": loss / n if n else float("nan"), "accuracy": hit / n if n else float("nan")}


def _recalibration_step(model, layers):
    """``(step, sums)``: a compiled forward pass in training mode that adds each BatchNorm layer's new
    moving mean and variance to ``sums``; built once per model and kept on it."""
    import tensorflow as tf

    cached = _STEPS.get(model, {}).get("recalibrate")
    if cached is not None:
        return cached
    sums = []
    for layer in layers:
        sums += [tf.Variable(tf.zeros_like(layer.moving_mean), trainable=False),
                 tf.Variable(tf.zeros_like(layer.moving_variance), trainable=False)]

    @tf.function(input_signature=[tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)])
    def step(x):
        model(x, training=True)
        for k, layer in enumerate(layers):
            sums[2 * k].assign_add(layer.moving_mean)
            sums[2 * k + 1].assign_add(layer.moving_variance)

    _STEPS.setdefault(model, {})["recalibrate"] = (step, sums)
    return step, sums


class EpochLog:
    """Keras callback: ``history_``, skipped-file reports, and progress: one bar per training (``verbose=1``,
    closed when training ends) or one line per epoch (``verbose=2``)."""

    def __new__(cls, *args, **kwargs):
        import keras

        class _CB(keras.callbacks.Callback):
            def __init__(self, est, streams, epochs, val_ds=None, recal_ds=None, initial=0, size=None):
                super().__init__()
                self.est, self.streams, self.epochs, self.size = est, streams, epochs, size
                self.val_ds, self.recal_ds = val_ds, recal_ds
                if not initial:  # a later stage of progressive resizing appends to the first stage's history
                    keys = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_s")
                    if getattr(est, "progressive_size", None) is not None:
                        keys += ("input_size",)  # each epoch's image side
                    est.history_ = {k: [] for k in keys}
                self.bar = None
                if est.verbose == 1:
                    from tqdm.auto import tqdm

                    self.bar = tqdm(total=epochs - initial, desc="cnn", unit="epoch", leave=False, mininterval=1.0)

            def on_train_end(self, logs=None):
                if self.bar is not None:
                    self.bar.close()

            def on_epoch_begin(self, epoch, logs=None):
                self.t = time.perf_counter()
                for _, seen, _ in self.streams:
                    seen.clear()

            def on_epoch_end(self, epoch, logs=None):
                if logs is None:
                    logs = {}
                if self.recal_ds is not None:
                    recalibrate_batchnorm(self.model, self.recal_ds)
                if self.val_ds is not None:
                    logs.update({"val_" + k: v for k, v in validate_model(self.model, self.val_ds).items()})
                opt = self.model.optimizer
                lr = float(np.asarray(opt.learning_rate if not callable(getattr(opt, "_learning_rate", None))
                                      else opt._learning_rate(opt.iterations)))
                h = self.est.history_
                for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
                    h[k].append(float(logs.get(k, np.nan)))
                h["lr"].append(lr)
                h["epoch_s"].append(time.perf_counter() - self.t)
                if "input_size" in h:
                    h["input_size"].append(int(self.size or self.est.input_size))
                self._report_skipped()
                if self.bar is not None:
                    self.bar.set_postfix(loss=f"{h['loss'][-1]:.3f}", val_acc=f"{h['val_accuracy'][-1]:.3f}",
                                         refresh=False)
                    self.bar.update(1)
                elif self.est.verbose:
                    self._print(epoch, logs, lr)

            def _report_skipped(self):
                known = {d["path"] for d in self.est.skipped_}
                for paths, seen, check in self.streams:
                    if not check:
                        continue
                    for k in range(len(paths)):
                        if k not in seen and paths[k] not in known:
                            reason = unreadable_reason(paths[k])
                            self.est.skipped_.append({"path": paths[k], "reason": reason})
                            log.warning("Training image %s could not be decoded and was skipped: %s", paths[k], reason)

            def _print(self, epoch, logs, lr):
                h = self.est.history_
                val = (f"  val_loss {h['val_loss'][-1]:.4f}  val_acc {h['val_accuracy'][-1]:.4f}"
                       if "val_loss" in logs else "")
                skipped = f"  skipped {len(self.est.skipped_)}" if self.est.skipped_ else ""
                print(f"[cnn] epoch {epoch + 1}/{self.est.epochs}  loss {h['loss'][-1]:.4f}  "
                      f"acc {h['accuracy'][-1]:.4f}{val}  lr {lr:.2e}  {h['epoch_s'][-1]:.0f}s{skipped}",
                      flush=True)

        return _CB(*args, **kwargs)


#: Version of the training arithmetic, in every trained-model cache key: bump it when the same settings and rows
#: would train a different model. 2: training batches drop the remainder; the learning-rate schedule spans the
#: steps actually run. 3: augmentation draws stateless random numbers seeded by (random_state, position in the pass).
TRAINING_VERSION = 3


def training_key(settings: dict, shas, y, groups=None) -> str:
    """Key of a training run: the ordered training images (content hashes) and labels, the groups of
    the validation split when they are subjects (``None`` when it groups by content hash: the key of
    such a run is unchanged), the settings that affect training (a frozen dict: its field names are the
    key's identity, not the estimator's parameter names), and the TensorFlow/Keras versions."""
    import keras
    import tensorflow as tf

    rows = [[str(a), str(b)] for a, b in zip(shas, y)] if groups is None else \
        [[str(a), str(b), str(g)] for a, b, g in zip(shas, y, groups)]
    blob = json.dumps({"params": settings, "data": rows,
                       "versions": [tf.__version__, keras.__version__], "v": TRAINING_VERSION},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def load_trained(folder: Path, verbose: bool = False):
    """``(model, state)`` of a model trained earlier and stored in ``folder``, or ``None``.

    A missing or unreadable entry is ``None`` (it is retrained, never fatal).
    """
    import keras

    import hybridwbc.cnn.build  # noqa: F401  (registers the Preprocess layer)

    if not (folder / "cnn.keras").is_file() or not (folder / "state.json").is_file():
        return None
    try:
        state = json.loads((folder / "state.json").read_text())
        model = keras.models.load_model(folder / "cnn.keras", compile=False)
    except Exception as exc:  # a corrupt entry is retrained, never fatal
        log.warning("Ignoring unreadable cached CNN in %s (%s); training again.", folder, exc)
        return None
    if verbose:
        print(f"[cnn] reusing the model trained on these same rows with these settings: {folder}", flush=True)
    return model, state


def store_trained(folder: Path, model, state: dict) -> None:
    """Store a trained model and its fitted state in ``folder``, atomically (kept if it already exists)."""
    if folder.is_dir():
        return
    try:
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            model.save(tmp / "cnn.keras")
            (tmp / "state.json").write_text(json.dumps(state, default=float))
    except OSError as exc:  # e.g. another process stored the same model first
        log.warning("Could not store the trained CNN in the cache (%s).", exc)
