"""Stain and acquisition augmentation for CNN training: the options of ``backbone.augmentation`` and the ops
that simulate another slide or microscope (stain optical density, blur, JPEG compression).

:func:`augmentation_options` checks a ``backbone.augmentation`` mapping (schema:
:class:`hybridwbc.config.AugmentConfig`) and returns the keyword arguments of
:func:`hybridwbc.cnn.images.augment_microscopy`; :func:`augmentation_changes` is what differs from the
defaults (the trained-model cache key holds only that, so a model trained before these options existed
keeps its key). The ops are graph functions of one ``(h, w, 3)`` float32 image in ``[0, 1]`` and a
``(2,)`` int64 seed, built only from TensorFlow's stateless random ops: a pure function of the image
and the seed, like the rest of the augmentation. TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import numpy as np

from hybridwbc.errors import ConfigError

__all__ = ["BUILT_IN", "DEFAULTS", "augmentation_options", "augmentation_changes", "stain_jitter", "gaussian_blur",
           "jpeg_compression"]

#: Amounts of the original augmentation, used where ``backbone.augmentation`` leaves a field ``null``.
BUILT_IN = {"scale": 0.1, "shift": 0.03, "brightness": 0.08, "contrast": 0.1, "saturation": 0.1, "hue": 0.02,
            "gain": 0.05}

#: The fields of ``backbone.augmentation`` and their defaults (the schema :class:`hybridwbc.config.AugmentConfig`
#: declares the same: a test keeps them equal): ``null`` amounts are :data:`BUILT_IN`, the added ops are off.
DEFAULTS = {**dict.fromkeys(BUILT_IN), "stain": 0.0, "blur_sigma": 0.0, "jpeg_quality_min": None,
            "jpeg_quality_max": 100}

#: Allowed range of each amount: ``(low, high, high included)``; ``0`` turns the op off.
RANGES = {"scale": (0.0, 1.0, False), "shift": (0.0, 0.5, False), "brightness": (0.0, 1.0, True),
          "contrast": (0.0, 1.0, False), "saturation": (0.0, 1.0, True), "hue": (0.0, 0.5, True),
          "gain": (0.0, 1.0, False), "stain": (0.0, 1.0, False), "blur_sigma": (0.0, 8.0, True)}


def _number(key: str, value, integer: bool = False):
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and int(value) != value):
        raise ConfigError(f"backbone.augmentation.{key} must be {kind}; received {value!r}. "
                          f"Fix: set it to {kind} (0 turns the op off) or null.")
    return int(value) if integer else float(value)


def _jpeg(opts: dict) -> None:
    low, high = opts["jpeg_quality_min"], opts["jpeg_quality_max"]
    high = _number("jpeg_quality_max", high, integer=True)
    opts["jpeg_quality_max"] = high
    if low is None:
        return
    low = opts["jpeg_quality_min"] = _number("jpeg_quality_min", low, integer=True)
    if not 0 <= low <= high <= 100:
        raise ConfigError(f"backbone.augmentation JPEG quality must satisfy 0 <= jpeg_quality_min <= "
                          f"jpeg_quality_max <= 100; received jpeg_quality_min={low}, jpeg_quality_max={high}. "
                          "Fix: pick qualities in 0-100 (e.g. 60 and 100), or jpeg_quality_min: null for no JPEG.")


def augmentation_options(mapping=None) -> dict:
    """The keyword arguments of :func:`~hybridwbc.cnn.images.augment_microscopy` for a ``backbone.augmentation``
    mapping: every field of :data:`DEFAULTS`, ``null`` amounts replaced by
    :data:`BUILT_IN`, numbers checked against :data:`RANGES`.

    Raises
    ------
    ConfigError
        An unknown key, a value that is not a number, or one out of its range (a negative blur sigma,
        a JPEG quality outside 0-100...).
    """
    names = list(DEFAULTS)
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise ConfigError(f"Unknown backbone.augmentation key(s) {unknown}. Expected some of {names}. "
                          "Fix: correct the spelling (see hybridwbc/conf/augmentation/none.yaml).")
    opts = dict(DEFAULTS)
    opts.update(mapping)
    for key, (low, high, closed) in RANGES.items():
        value = opts[key] = _number(key, BUILT_IN[key] if opts[key] is None else opts[key])
        if not (low <= value and (value <= high if closed else value < high)):
            raise ConfigError(f"backbone.augmentation.{key} must be in [{low:g}, {high:g}{']' if closed else ')'}; "
                              f"received {value:g}. Fix: a value in that range (0 turns the op off).")
    if opts["scale"] + opts["shift"] >= 1.0:
        raise ConfigError(f"backbone.augmentation.scale + shift must be below 1 (the reflect padding); received "
                          f"{opts['scale']:g} + {opts['shift']:g}. Fix: a smaller zoom range or shift.")
    _jpeg(opts)
    return opts


def augmentation_changes(mapping=None) -> dict:
    """The options of ``mapping`` that differ from the defaults (``{}`` at the defaults, whatever spelling)."""
    opts, default = augmentation_options(mapping), augmentation_options(None)
    return {k: v for k, v in opts.items() if v != default[k]}


def stain_jitter(x, amount: float, seed):
    """Stain variation (Tellez et al., 2018, in optical density): per-channel OD scale in
    ``[1 - amount, 1 + amount]`` and shift in ``[-amount, amount]``.

    ``x``: ``(h, w, 3)`` float32 in ``[0, 1]``; returns the same shape in ``[0, 1]``. OD is
    ``-log((255 x + 1) / 256)``, so white stays near white under a small shift and the darkest
    (most stained) pixels move most under the scale.
    """
    import tensorflow as tf

    s = tf.random.experimental.stateless_split(seed, num=2)
    od = -tf.math.log((x * 255.0 + 1.0) / 256.0)
    scale = tf.random.stateless_uniform([1, 1, 3], s[0], 1.0 - amount, 1.0 + amount)
    shift = tf.random.stateless_uniform([1, 1, 3], s[1], -amount, amount)
    return tf.clip_by_value((256.0 * tf.exp(-(od * scale + shift)) - 1.0) / 255.0, 0.0, 1.0)


def gaussian_blur(x, max_sigma: float, seed):
    """Defocus: a separable Gaussian blur with sigma drawn in ``[0, max_sigma]`` pixels (reflect borders).

    ``x``: ``(h, w, 3)`` float32 with ``h, w > 3 max_sigma``; returns the same shape and range (a normalised
    kernel). The kernel spans ``ceil(3 max_sigma)`` pixels each side; sigma near 0 leaves the image as is.
    """
    import tensorflow as tf

    radius = max(1, int(np.ceil(3.0 * max_sigma)))
    sigma = tf.maximum(tf.random.stateless_uniform([], seed, 0.0, max_sigma), 1e-2)
    taps = tf.exp(-0.5 * tf.square(tf.range(-radius, radius + 1, dtype=tf.float32) / sigma))
    taps = taps / tf.reduce_sum(taps)
    padded = tf.pad(x[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    y = tf.nn.depthwise_conv2d(padded, tf.tile(taps[:, None, None, None], [1, 1, 3, 1]), [1, 1, 1, 1], "VALID")
    y = tf.nn.depthwise_conv2d(y, tf.tile(taps[None, :, None, None], [1, 1, 3, 1]), [1, 1, 1, 1], "VALID")
    return y[0]


def jpeg_compression(x, low: int, high: int, seed):
    """JPEG re-encoding at a quality drawn uniformly in ``[low, high]`` (both included).

    ``x``: ``(h, w, 3)`` float32, clipped to ``[0, 1]`` first; returns the same shape in ``[0, 1]``
    (decoded 8-bit values). Written with ``adjust_jpeg_quality`` and its own draw because
    ``stateless_random_jpeg_quality`` excludes its upper bound and refuses ``low == high``.
    """
    import tensorflow as tf

    quality = tf.random.stateless_uniform([], seed, int(low), int(high) + 1, dtype=tf.int32)
    y = tf.image.adjust_jpeg_quality(tf.clip_by_value(x, 0.0, 1.0), quality)
    return tf.ensure_shape(y, x.shape)
