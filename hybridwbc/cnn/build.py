"""Keras backbones: the builders, the in-model preprocessing, and the identity of a trained model.

* **Registry.** :data:`~hybridwbc.cnn.backbones.BACKBONES` names the backbones: ``compact`` (our own
  small VGG-style CNN, width and depth configurable) and wrapped
  ``keras.applications`` models (``mobilenetv3small``, ``efficientnetb0``,
  ``resnet50``). :func:`build_backbone` returns a functional model that takes
  RGB images as float32 in ``[0, 255]`` and returns one pooled embedding per
  image; each application's own ``preprocess_input`` runs inside the model
  (a small serialisable :class:`Preprocess` layer), so a saved ``.keras`` file
  needs nothing else. :func:`~hybridwbc.cnn.backbones.validate_backbone` checks a name and an
  input size without importing TensorFlow, for composition-time checks.
* **Weights.** ``None`` (random init, train from scratch), ``"imagenet"``
  (downloaded by Keras; offline this raises one
  :class:`~hybridwbc.errors.WeightsUnavailableError` line that says how to pass
  a local file) or the path of a local weights file.
* **Identity.** :func:`model_identity` (weights hash, input size, preprocessing, decode version)
  keys the embedding cache (:mod:`hybridwbc.cnn.embed`).

Importing this module imports Keras and registers :class:`Preprocess` for loading ``.keras`` files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import keras
import numpy as np

from hybridwbc.cnn.backbones import BackboneSpec, validate_backbone
from hybridwbc.cnn.images import DECODE_VERSION
from hybridwbc.errors import ConfigError, WeightsUnavailableError

__all__ = ["build_backbone", "Preprocess", "model_identity", "weights_sha256", "preprocess_name", "dtype_policy"]


@contextlib.contextmanager
def dtype_policy(name: str):
    """Build Keras layers under the dtype policy ``name`` (``float32``, ``mixed_bfloat16``); the global
    policy is restored afterwards, so other models in the process are unaffected."""
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


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


def preprocess_name(model: keras.Model) -> str:
    """The mode of the model's :class:`Preprocess` layer (``"none"`` without one)."""
    for layer in model.layers:
        if isinstance(layer, Preprocess):
            return layer.mode
    return "none"
