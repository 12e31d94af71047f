"""Keras CNN backbones and the embedding extractor.

* **Registry.** :data:`BACKBONES` names the backbones: ``compact`` (our own
  small VGG-style CNN, width and depth configurable) and wrapped
  ``keras.applications`` models (``mobilenetv3small``, ``efficientnetb0``,
  ``resnet50``). :func:`build_backbone` returns a functional model that takes
  RGB images as float32 in ``[0, 255]`` and returns one pooled embedding per
  image; each application's own ``preprocess_input`` runs inside the model
  (a small serialisable :class:`Preprocess` layer), so a saved ``.keras`` file
  needs nothing else. :func:`validate_backbone` checks a name and an input size
  without importing TensorFlow's model code, for composition-time checks.
* **Weights.** ``None`` (random init, train from scratch), ``"imagenet"``
  (downloaded by Keras; offline this raises one
  :class:`~hybridwbc.errors.WeightsUnavailableError` line that says how to pass
  a local file) or the path of a local weights file.
* **Pipeline.** :func:`image_dataset` streams files from disk through
  ``tf.data`` (parallel read + decode + resize). A file that fails to decode is
  dropped inside the pipeline (``ignore_errors``) and reported; the pass goes on.
* **Embeddings.** :func:`extract_embeddings` runs a model over files in
  batches through that pipeline and caches each vector in a
  :class:`~hybridwbc.features.cache.FeatureCache` keyed by the image's content
  hash plus :func:`model_identity` (weights hash, input size, preprocessing).
  Cached images never reach Keras.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import pandas as pd

from hybridwbc.errors import ConfigError, ImageReadError, WeightsUnavailableError
from hybridwbc.features.backbones import BACKBONES, POOLINGS, BackboneSpec, validate_backbone

__all__ = [
    "BACKBONES", "BackboneSpec", "validate_backbone", "build_backbone", "Preprocess", "image_dataset",
    "decode_resize", "augment_microscopy", "model_identity", "weights_sha256", "EmbeddingResult", "extract_embeddings",
]

log = logging.getLogger(__name__)

#: Version of the decode/resize arithmetic in :func:`decode_resize`; part of every embedding cache key.
DECODE_VERSION = "jpeg-dct-antialias-bilinear-uint8/1"

#: Decoded images held for shuffling after the on-disk training cache (bounds memory: ~28 MB at 96 px).
SHUFFLE_BUFFER = 1024

#: Suffixes TensorFlow's ``decode_image`` reads natively; others go through :func:`read_image`.
NATIVE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


# ---------------------------------------------------------------------------------------------- Keras models
@keras.saving.register_keras_serializable(package="hybridwbc")
class Preprocess(keras.layers.Layer):
    """The backbone's own input preprocessing, as a serialisable layer.

    Input: RGB float32 in ``[0, 255]``. ``scale_0_1`` divides by 255; the
    application names call that application's ``preprocess_input``.
    """

    def __init__(self, mode: str = "scale_0_1", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, x):
        if self.mode == "scale_0_1":
            return x / 255.0
        module = getattr(keras.applications, self.mode)
        return module.preprocess_input(x)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _compact(input_size: int, depth: int = 4, width: int = 32, convs_per_block: int = 2,
             bn_momentum: float = 0.9, name: str = "compact") -> keras.Model:
    """VGG-style CNN: ``depth`` blocks of ``convs_per_block`` 3x3 conv-BN-ReLU, each block ends
    with 2x2 max pooling; the filter count doubles per block (capped at 8 x ``width``)."""
    inp = keras.Input((input_size, input_size, 3), name="pixels")
    x = inp
    for b in range(int(depth)):
        filters = int(width) * min(2 ** b, 8)
        for c in range(int(convs_per_block)):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"b{b}_conv{c}")(x)
            x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"b{b}_bn{c}")(x)
            x = keras.layers.Activation("relu", name=f"b{b}_relu{c}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"b{b}_pool")(x)
    return keras.Model(inp, x, name=name)


def _set_bn_momentum(model: keras.Model, momentum: float) -> None:
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
        elif isinstance(layer, keras.Model):
            _set_bn_momentum(layer, momentum)


def _imagenet_hint(spec: BackboneSpec) -> str:
    return (f"Pass a local file instead: weights=/path/to/{spec.application.lower()}_notop.weights.h5 "
            f"(the file keras.applications.{spec.application}(include_top=False) loads), or weights=null "
            "to train from scratch.")


def build_backbone(name: str, input_size: int, pooling: str = "avg", weights: str | None = None,
                   params: dict | None = None, bn_momentum: float = 0.9) -> keras.Model:
    """Build a backbone: ``(S, S, 3)`` float32 RGB in ``[0, 255]`` -> ``(n_embed,)`` pooled embedding.

    Parameters
    ----------
    name : str
        A key of :data:`BACKBONES`.
    input_size : int
    pooling : {"avg", "max"}
    weights : None, "imagenet" or str
        ``None``: random init; ``"imagenet"``: Keras's download; else a local weights file.
    params : dict, optional
        ``compact``: ``depth``, ``width``, ``convs_per_block``. Others: keyword arguments
        of the ``keras.applications`` constructor (e.g. ``alpha``).
    bn_momentum : float, default 0.9
        BatchNorm momentum (lower tracks the batch statistics faster when epochs are short).

    Raises
    ------
    ConfigError
        From :func:`validate_backbone`, or ``imagenet`` asked of ``compact``.
    WeightsUnavailableError
        ImageNet weights cannot be downloaded, or a local weights file is missing or does not fit.
    """
    params = dict(params or {})
    spec = validate_backbone(name, input_size, pooling, params)
    size = int(input_size)
    inp = keras.Input((size, size, 3), name="image")
    local = None
    if weights not in (None, "imagenet"):
        local = Path(os.fsdecode(weights)).expanduser()
        if not local.is_file():
            raise WeightsUnavailableError(
                f"Backbone weights file {str(local)!r} does not exist. Expected a Keras weights file "
                "(.weights.h5 / .h5); received weights={weights!r}. Fix the path, or set weights=null."
            )
    if spec.application is None:
        if weights == "imagenet":
            raise ConfigError(
                f"Backbone {spec.name!r} has no ImageNet weights; received weights='imagenet'. "
                "Use weights=null (train from scratch) or a local weights file."
            )
        base = _compact(size, bn_momentum=bn_momentum, **params)
        if local is not None:
            _load_local(base, local, spec)
    else:
        ctor = getattr(keras.applications, spec.application)
        kwargs = dict(include_top=False, input_shape=(size, size, 3), pooling=None, **params)
        if weights == "imagenet":
            try:
                base = ctor(weights="imagenet", **kwargs)
            except Exception as exc:  # urllib / OSError / keras' own "URL fetch failure" Exception
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise WeightsUnavailableError(
                    f"ImageNet weights for {spec.application} could not be downloaded ({first[:160]}). "
                    + _imagenet_hint(spec)
                ) from None
        else:
            base = ctor(weights=None, **kwargs)
            if local is not None:
                _load_local(base, local, spec)
        if weights is None:
            _set_bn_momentum(base, bn_momentum)
    x = Preprocess(spec.preprocess, name="preprocess")(inp)
    x = base(x)
    pool = keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
    x = pool(name="pool")(x)
    return keras.Model(inp, x, name=f"backbone_{spec.name}")


def _load_local(model: keras.Model, path: Path, spec: BackboneSpec) -> None:
    try:
        model.load_weights(str(path))
    except Exception as exc:
        raise WeightsUnavailableError(
            f"Cannot load backbone weights from {str(path)!r} into {spec.name!r}: "
            f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__}. "
            "Expected a weights file saved from the same architecture with include_top=False."
        ) from None


def weights_sha256(model: keras.Model) -> str:
    """SHA-256 of a model's weight values (in layer order)."""
    h = hashlib.sha256()
    for w in model.get_weights():
        a = np.ascontiguousarray(w)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def model_identity(model: keras.Model, input_size: int, preprocess: str, extra: dict | None = None) -> str:
    """Cache key of an embedding model: hash of its weights, input size and preprocessing."""
    blob = json.dumps({"weights": weights_sha256(model), "input_size": int(input_size), "preprocess": preprocess,
                       "decode": DECODE_VERSION,
                       "out": [int(d) for d in model.output_shape[1:]], **(extra or {})}, sort_keys=True)
    return "cnn-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- tf.data pipeline
def _python_reader(size: int):
    """A ``tf.numpy_function`` reader for formats TensorFlow cannot decode (TIFF...)."""
    from PIL import Image

    from hybridwbc.data.io import read_image

    def read(path: bytes) -> tuple[np.ndarray, np.bool_]:
        try:
            img = read_image(path.decode())
        except ImageReadError as exc:
            log.warning("%s", exc)
            return np.zeros((size, size, 3), np.uint8), np.bool_(False)
        img = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))
        return img, np.bool_(True)

    return read


def decode_resize(path, size: int, native: bool = True):
    """Graph function: file path -> ``(size, size, 3)`` float32 RGB in ``[0, 255]``.

    A file TensorFlow cannot decode raises inside the pipeline; callers drop it
    with ``ignore_errors`` and report it.
    """
    import tensorflow as tf

    if native:
        raw = tf.io.read_file(path)

        def jpeg():
            # Decode JPEGs at 1/2, 1/4 or 1/8 scale in the DCT domain when the target is that small:
            # several times faster than a full decode, and an antialiased reduction in itself.
            hw = tf.io.extract_jpeg_shape(raw)
            side = tf.minimum(hw[0], hw[1])
            cases = [(side // r >= size, (lambda r=r: tf.io.decode_jpeg(raw, channels=3, ratio=r))) for r in (8, 4, 2)]
            return tf.case(cases, default=lambda: tf.io.decode_jpeg(raw, channels=3), exclusive=False)

        img = tf.cond(tf.io.is_jpeg(raw), jpeg,
                      lambda: tf.io.decode_image(raw, channels=3, expand_animations=False, dtype=tf.uint8))
        img.set_shape([None, None, 3])
    else:
        img, ok = tf.numpy_function(_python_reader(size), [path], [tf.uint8, tf.bool], stateful=False)
        tf.debugging.assert_equal(ok, True, message="image could not be read")
        img.set_shape([size, size, 3])
    img = tf.image.resize(tf.cast(img, tf.float32), (size, size), method="bilinear", antialias=True)
    return tf.clip_by_value(img, 0.0, 255.0)


def augment_microscopy(size: int, scale: float = 0.1, shift: float = 0.03, brightness: float = 0.08,
                       contrast: float = 0.1, saturation: float = 0.1, hue: float = 0.02, stain: float = 0.05):
    """Graph function for one ``(size, size, 3)`` float32 image in ``[0, 255]``: microscopy augmentation.

    Cells have no up, down or handedness: random horizontal and vertical flips
    and 90-degree rotations. Small zoom in ``[1 - scale, 1 + scale]`` with a
    small shift (reflect padding, so no black borders). Colour/stain jitter:
    brightness, contrast, saturation, hue, and a per-channel gain in
    ``[1 - stain, 1 + stain]`` (stain intensity varies between slides).
    """
    import tensorflow as tf

    pad = int(np.ceil(size * (scale + shift)))

    def aug(x):
        x = tf.image.random_flip_left_right(x)
        x = tf.image.random_flip_up_down(x)
        x = tf.image.rot90(x, k=tf.random.uniform([], 0, 4, dtype=tf.int32))
        if scale > 0 or shift > 0:
            padded = tf.pad(x, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
            full = float(size + 2 * pad)
            side = size * tf.random.uniform([], 1.0 - scale, 1.0 + scale) / full
            cy = 0.5 + tf.random.uniform([], -shift, shift) * size / full
            cx = 0.5 + tf.random.uniform([], -shift, shift) * size / full
            box = tf.stack([cy - side / 2, cx - side / 2, cy + side / 2, cx + side / 2])[None]
            x = tf.image.crop_and_resize(padded[None], box, [0], [size, size])[0]
        x = x / 255.0
        x = tf.image.random_brightness(x, brightness)
        x = tf.image.random_contrast(x, 1.0 - contrast, 1.0 + contrast)
        x = tf.image.random_saturation(x, 1.0 - saturation, 1.0 + saturation)
        x = tf.image.random_hue(x, hue)
        x = x * tf.random.uniform([1, 1, 3], 1.0 - stain, 1.0 + stain)
        return tf.clip_by_value(x, 0.0, 1.0) * 255.0

    return aug


def _all_native(paths: Sequence[str]) -> bool:
    return all(str(p).lower().endswith(NATIVE_SUFFIXES) for p in paths)


def image_dataset(paths: Sequence[str], size: int, batch_size: int, labels: np.ndarray | None = None,
                  weights: np.ndarray | None = None, shuffle_seed: int | None = None,
                  augment: Callable | None = None, record: Callable | None = None,
                  disk_cache: str | None = None, repeat: bool = False):
    """A ``tf.data`` pipeline streaming image files from disk.

    Batched elements are ``(images, index)`` or, with ``labels``,
    ``(images, labels[, weights])``. Reading, decoding and resizing run in
    parallel; a file that fails to decode is dropped inside the pipeline
    (``ignore_errors``), so a pass goes on, and its index never appears.

    Parameters
    ----------
    paths : sequence of str
    size : int
        Output side in pixels.
    batch_size : int
    labels : ndarray of int, optional
    weights : ndarray of float, optional
        Per-sample weights (class weights), only with ``labels``.
    shuffle_seed : int, optional
        Shuffle the file order on each pass (training).
    augment : callable, optional
        Graph function applied to one ``(size, size, 3)`` float32 image after decoding.
    record : callable, optional
        Called (from the pipeline) with each batch's ``int64`` row indices, so a
        caller can tell which files were dropped.
    disk_cache : str, optional
        File prefix for ``Dataset.cache``: decoded, resized ``uint8`` images are
        written to disk on the first pass and streamed from there afterwards
        (the data set is never held in memory).
    repeat : bool, default False
        Repeat forever (for a fixed number of steps per epoch).
    """
    import tensorflow as tf

    paths = [str(p) for p in paths]
    native = _all_native(paths)
    idx = np.arange(len(paths), dtype=np.int64)
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(paths, dtype=str), idx))
    if shuffle_seed is not None:  # file order: cheap, whole-data-set shuffle before decoding
        ds = ds.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
    decode = lambda p, i: (tf.cast(tf.round(decode_resize(p, size, native)), tf.uint8), i)  # noqa: E731
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors(log_warning=False)
    if disk_cache:
        ds = ds.cache(disk_cache)
    if repeat:
        ds = ds.repeat()
    if shuffle_seed is not None and disk_cache:  # the cache replays one order: mix it again, in a bounded buffer
        ds = ds.shuffle(min(len(paths), SHUFFLE_BUFFER), seed=shuffle_seed + 1, reshuffle_each_iteration=True)
    if augment is not None:
        ds = ds.map(lambda x, i: (augment(tf.cast(x, tf.float32)), i), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
    else:
        ds = ds.map(lambda x, i: (tf.cast(x, tf.float32), i))
    ds = ds.batch(batch_size)
    if record is not None:
        def _rec(i):
            record(i)
            return i

        ds = ds.map(lambda x, i: (x, tf.ensure_shape(tf.numpy_function(_rec, [i], tf.int64, stateful=True), [None])))
    if labels is not None:
        lab = tf.constant(np.asarray(labels, dtype=np.int64))
        if weights is not None:
            wt = tf.constant(np.asarray(weights, dtype=np.float32))
            ds = ds.map(lambda x, i: (x, tf.gather(lab, i), tf.gather(wt, i)))
        else:
            ds = ds.map(lambda x, i: (x, tf.gather(lab, i)))
    return ds.prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------------------- extraction
@dataclass
class EmbeddingResult:
    """Embeddings of the images that could be read.

    Attributes
    ----------
    X : ndarray of shape (n_kept, n_embed), dtype float32
    index : ndarray of shape (n_kept,), dtype int64
        Positions in the input ``paths``.
    skipped : DataFrame
        ``path`` and ``reason`` of files that could not be decoded.
    n_cached : int
        Vectors read from the cache (these images never reached Keras).
    n_computed : int
    """

    X: np.ndarray
    index: np.ndarray
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))
    n_cached: int = 0
    n_computed: int = 0


def _reason(path: str) -> str:
    from hybridwbc.data.io import read_image

    try:
        read_image(path)
    except ImageReadError as exc:
        return f"ImageReadError: {exc}"
    return "TensorFlow could not decode the file"


def _run_model(model: keras.Model, paths: list[str], size: int, batch_size: int):
    """Embeddings of ``paths`` through the pipeline, batch by batch: yields (vectors, kept positions)."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def infer(x):
        return model(x, training=False)

    for x, i in image_dataset(paths, size, batch_size):
        yield infer(x).numpy(), i.numpy()


def extract_embeddings(model: keras.Model, paths: Sequence[str], input_size: int, shas: Sequence[str] | None = None,
                       cache_dir: str | os.PathLike | None = None, key: str | None = None, batch_size: int = 64,
                       progress: bool = False) -> EmbeddingResult:
    """Embed image files in batches, through the on-disk cache.

    Parameters
    ----------
    model : keras.Model
        Images ``(S, S, 3)`` float32 in ``[0, 255]`` -> ``(n_embed,)``; called with ``training=False``.
    paths : sequence of str
    input_size : int
    shas : sequence of str, optional
        Content hashes; computed from the files when absent (and a cache is used).
    cache_dir : path-like, optional
        Cache root; ``None`` disables caching.
    key : str, optional
        Cache key (default :func:`model_identity` of ``model``).
    batch_size : int, default 64

    Returns
    -------
    EmbeddingResult
        Files that cannot be decoded are listed in ``skipped`` (never fatal).
    """
    from hybridwbc.data.manifest import file_sha256
    from hybridwbc.features.cache import FeatureCache

    paths = [os.fsdecode(p) for p in paths]
    n_embed = int(np.prod(model.output_shape[1:]))
    vectors: dict[int, np.ndarray] = {}
    todo = list(range(len(paths)))
    cache = None
    n_cached = 0
    if cache_dir is not None:
        if shas is None:
            shas = [file_sha256(p) for p in paths]
        key = key or model_identity(model, input_size, _preprocess_name(model))
        cache = FeatureCache(Path(cache_dir), key)
        todo = []
        for i, s in enumerate(shas):
            hit = cache.get(s)
            if isinstance(hit, np.ndarray) and hit.shape == (n_embed,):
                vectors[i] = hit.astype(np.float32)
                n_cached += 1
            else:
                todo.append(i)
    skipped = []
    if todo:
        from concurrent.futures import ThreadPoolExecutor

        got = set()
        # cache files are written (and fsynced) by a thread while Keras computes the next batch
        with ThreadPoolExecutor(max_workers=1) as writer:
            pending = []
            for emb, kept in _run_model(model, [paths[i] for i in todo], int(input_size), batch_size):
                emb = emb.reshape(len(emb), n_embed)
                rows = []
                for row, k in zip(emb, kept):
                    i = todo[int(k)]
                    vectors[i] = row
                    got.add(int(k))
                    rows.append((shas[i], row) if cache is not None else None)
                if cache is not None:
                    pending.append(writer.submit(lambda rs: [cache.put(sh, r) for sh, r in rs], rows))
            for f in pending:
                f.result()
        for k in range(len(todo)):
            if k not in got:
                skipped.append({"path": paths[todo[k]], "reason": _reason(paths[todo[k]])})
    index = np.array(sorted(vectors), dtype=np.int64)
    X = np.vstack([vectors[i] for i in index]).astype(np.float32) if len(index) else np.empty((0, n_embed), np.float32)
    skipped_df = pd.DataFrame(skipped, columns=["path", "reason"])
    if len(skipped_df):
        log.warning("%d of %d images could not be decoded and were skipped; first: %s (%s)", len(skipped_df),
                    len(paths), skipped_df["path"].iloc[0], skipped_df["reason"].iloc[0])
    return EmbeddingResult(X=X, index=index, skipped=skipped_df, n_cached=n_cached,
                           n_computed=len(todo) - len(skipped))


def _preprocess_name(model: keras.Model) -> str:
    for layer in model.layers:
        if isinstance(layer, Preprocess):
            return layer.mode
    return "none"
