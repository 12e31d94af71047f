"""Images for the CNN: decode and resize in TensorFlow, microscopy augmentation, ``tf.data`` streams from disk.

:func:`image_dataset` streams files from disk through ``tf.data`` (parallel read + decode +
resize). A file that fails to decode is dropped inside the pipeline (``ignore_errors``) and
reported (:func:`unreadable_reason` says why); the pass goes on. TensorFlow is imported inside
the functions.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from hybridwbc.errors import ImageReadError

__all__ = ["DECODE_VERSION", "SHUFFLE_BUFFER", "NATIVE_SUFFIXES", "decode_resize", "augment_microscopy",
           "image_dataset", "unreadable_reason"]

log = logging.getLogger(__name__)

#: Version of the decode/resize arithmetic in :func:`decode_resize`; part of every embedding cache key.
DECODE_VERSION = "jpeg-dct-antialias-bilinear-uint8/1"

#: Decoded images held for shuffling after the on-disk training cache (bounds memory: ~28 MB at 96 px).
SHUFFLE_BUFFER = 1024

#: Suffixes TensorFlow's ``decode_image`` reads natively; others go through :func:`read_image`.
NATIVE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


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
                       contrast: float = 0.1, saturation: float = 0.1, hue: float = 0.02, gain: float = 0.05,
                       stain: float = 0.0, blur_sigma: float = 0.0, jpeg_quality_min: int | None = None,
                       jpeg_quality_max: int = 100):
    """Graph function ``aug(x, seed)`` for one ``(size, size, 3)`` float32 image in ``[0, 255]`` and a ``(2,)``
    int64 seed: microscopy augmentation.

    Cells have no up, down or handedness: random horizontal and vertical flips
    and 90-degree rotations. Small zoom in ``[1 - scale, 1 + scale]`` with a
    small shift (reflect padding, so no black borders). Colour/stain jitter:
    brightness, contrast, saturation, hue, and a per-channel gain in
    ``[1 - gain, 1 + gain]`` (stain intensity varies between slides).

    Stain and acquisition ops (:mod:`hybridwbc.cnn.augment`), off by default: ``stain`` (optical-density
    jitter) and ``blur_sigma`` (Gaussian defocus) after the zoom, JPEG re-encoding at a quality in
    ``[jpeg_quality_min, jpeg_quality_max]`` last. A zero amount skips its op. The keyword arguments are
    the fields of ``backbone.augmentation`` (:func:`hybridwbc.cnn.augment.augmentation_options` checks them);
    at the defaults the ops and draws are exactly those of the original augmentation.

    Every draw is a stateless random op of ``seed`` (TensorFlow's ``stateless_*``), so the result is a
    pure function of the image and the seed: the parallel ``tf.data`` map that calls it gives the same
    images in every run, whatever the thread timing (stateful ops share one stream between threads).
    """
    import tensorflow as tf

    from hybridwbc.cnn.augment import gaussian_blur, jpeg_compression, stain_jitter

    pad = int(np.ceil(size * (scale + shift)))
    acquisition = stain > 0 or blur_sigma > 0 or jpeg_quality_min is not None

    def aug(x, seed):
        seed = tf.cast(seed, tf.int64)
        s = tf.random.experimental.stateless_split(seed, num=11)
        # each added op draws from a seed of its own, fold_in(seed, k) with a fixed k per op: the 11 draws above
        # stay those of the original augmentation, and a new op never changes the draws of another
        t = {k: tf.random.experimental.stateless_fold_in(seed, k) for k in (1, 2, 3)} if acquisition else None
        x = tf.image.stateless_random_flip_left_right(x, s[0])
        x = tf.image.stateless_random_flip_up_down(x, s[1])
        x = tf.image.rot90(x, k=tf.random.stateless_uniform([], s[2], 0, 4, dtype=tf.int32))
        if scale > 0 or shift > 0:
            padded = tf.pad(x, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
            full = float(size + 2 * pad)
            side = size * tf.random.stateless_uniform([], s[3], 1.0 - scale, 1.0 + scale) / full
            cy = 0.5 + tf.random.stateless_uniform([], s[4], -shift, shift) * size / full
            cx = 0.5 + tf.random.stateless_uniform([], s[5], -shift, shift) * size / full
            box = tf.stack([cy - side / 2, cx - side / 2, cy + side / 2, cx + side / 2])[None]
            x = tf.image.crop_and_resize(padded[None], box, [0], [size, size])[0]
        x = x / 255.0
        if stain > 0:
            x = stain_jitter(x, stain, t[1])
        if blur_sigma > 0:
            x = gaussian_blur(x, blur_sigma, t[2])
        if brightness > 0:
            x = tf.image.stateless_random_brightness(x, brightness, s[6])
        if contrast > 0:
            x = tf.image.stateless_random_contrast(x, 1.0 - contrast, 1.0 + contrast, s[7])
        if saturation > 0:
            x = tf.image.stateless_random_saturation(x, 1.0 - saturation, 1.0 + saturation, s[8])
        if hue > 0:
            x = tf.image.stateless_random_hue(x, hue, s[9])
        if gain > 0:
            x = x * tf.random.stateless_uniform([1, 1, 3], s[10], 1.0 - gain, 1.0 + gain)
        if jpeg_quality_min is not None:
            x = jpeg_compression(x, jpeg_quality_min, jpeg_quality_max, t[3])
        return tf.clip_by_value(x, 0.0, 1.0) * 255.0

    return aug


def _all_native(paths: Sequence[str]) -> bool:
    return all(str(p).lower().endswith(NATIVE_SUFFIXES) for p in paths)


def image_dataset(paths: Sequence[str], size: int, batch_size: int, labels: np.ndarray | None = None,
                  weights: np.ndarray | None = None, shuffle_seed: int | None = None,
                  augment: Callable | None = None, record: Callable | None = None,
                  disk_cache: str | None = None, repeat: bool = False, drop_remainder: bool = False):
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
        Graph function ``augment(image, seed)`` applied to one ``(size, size, 3)`` float32 image after
        decoding (:func:`augment_microscopy`); the seed of the ``k``-th element of a pass is
        ``(shuffle_seed, k)``, and the file order of each pass is itself seeded, so a run repeats exactly.
    record : callable, optional
        Called (from the pipeline) with the ``int64`` row index of each decoded image (a 1-element
        array), so a caller can tell which files were dropped.
    disk_cache : str, optional
        File prefix for ``Dataset.cache``: decoded, resized ``uint8`` images are
        written to disk on the first pass and streamed from there afterwards
        (the data set is never held in memory).
    repeat : bool, default False
        Repeat forever (for a fixed number of steps per epoch).
    drop_remainder : bool, default False
        Drop the last partial batch of each pass (training: every step sees one shape, so the compiled
        step is traced once; the pass is reshuffled, so a different remainder waits each time). Ignored
        when there are fewer paths than ``batch_size``.
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
    if record is not None:  # per decoded image, before batching: a dropped remainder was still read
        def _rec(i):
            record(np.atleast_1d(i))
            return i

        ds = ds.map(lambda x, i: (x, tf.ensure_shape(tf.numpy_function(_rec, [i], tf.int64, stateful=True), [])))
    if repeat:
        ds = ds.repeat()
    if shuffle_seed is not None and disk_cache:  # the cache replays one order: mix it again, in a bounded buffer
        ds = ds.shuffle(min(len(paths), SHUFFLE_BUFFER), seed=shuffle_seed + 1, reshuffle_each_iteration=True)
    if augment is not None:  # seed of the k-th element of a pass: (shuffle_seed, k), so runs repeat exactly
        base = tf.constant(0 if shuffle_seed is None else int(shuffle_seed), tf.int64)
        ds = ds.enumerate().map(lambda k, e: (augment(tf.cast(e[0], tf.float32), tf.stack([base, k])), e[1]),
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(lambda x, i: (tf.cast(x, tf.float32), i))
    ds = ds.batch(batch_size, drop_remainder=bool(drop_remainder) and len(paths) >= batch_size)
    if labels is not None:
        lab = tf.constant(np.asarray(labels, dtype=np.int64))
        if weights is not None:
            wt = tf.constant(np.asarray(weights, dtype=np.float32))
            ds = ds.map(lambda x, i: (x, tf.gather(lab, i), tf.gather(wt, i)))
        else:
            ds = ds.map(lambda x, i: (x, tf.gather(lab, i)))
    return ds.prefetch(tf.data.AUTOTUNE)


def unreadable_reason(path: str) -> str:
    """Why a file did not decode: the :class:`~hybridwbc.errors.ImageReadError` of :func:`read_image`, if any."""
    from hybridwbc.data.io import read_image

    try:
        read_image(path)
    except ImageReadError as exc:
        return f"ImageReadError: {exc}"
    return "TensorFlow could not decode the file"
