"""Backbone registry: names, minimum input sizes and preprocessing, with no TensorFlow import.

:func:`validate_backbone` is cheap, so configuration code can reject an unknown
backbone or a too-small input size at composition time, before Keras loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from hybridwbc.errors import ConfigError

__all__ = ["BackboneSpec", "BACKBONES", "POOLINGS", "PRECISIONS", "validate_backbone", "validate_progressive",
           "resolve_precision", "weights_identity"]


@dataclass(frozen=True)
class BackboneSpec:
    """What the registry knows about one backbone (no TensorFlow import needed).

    Attributes
    ----------
    name : str
    min_size : int
        Smallest accepted input side in pixels (for ``compact`` it also
        depends on ``depth``: ``2 ** depth``).
    preprocess : str
        Name of the preprocessing applied inside the model (part of the cache key).
    application : str or None
        ``keras.applications`` constructor name, or ``None`` for our own model.
    module : str or None
        ``keras.applications`` sub-module holding its ``preprocess_input``.
    """

    name: str
    min_size: int
    preprocess: str
    application: str | None = None
    module: str | None = None


BACKBONES: dict[str, BackboneSpec] = {
    "compact": BackboneSpec("compact", 8, "scale_0_1"),
    "mobilenetv3small": BackboneSpec("mobilenetv3small", 32, "mobilenet_v3", "MobileNetV3Small", "mobilenet_v3"),
    "efficientnetb0": BackboneSpec("efficientnetb0", 32, "efficientnet", "EfficientNetB0", "efficientnet"),
    "resnet50": BackboneSpec("resnet50", 32, "resnet50", "ResNet50", "resnet50"),
}

POOLINGS = ("avg", "max")

#: Numeric precision of a CNN's layers (``CNNClassifier.precision``): ``float32``; ``mixed_bfloat16``
#: (bfloat16 compute, float32 weights and softmax: Keras mixed precision); ``auto``: mixed_bfloat16 where the
#: CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16), else float32.
PRECISIONS = ("float32", "mixed_bfloat16", "auto")


def resolve_precision(precision: str, cpuinfo: str = "/proc/cpuinfo") -> str:
    """``float32`` or ``mixed_bfloat16`` for a :data:`PRECISIONS` value (``auto`` reads the CPU's flags).

    Raises
    ------
    ConfigError
        If ``precision`` is none of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"Unknown precision {precision!r}. Expected one of {list(PRECISIONS)}.")
    if precision != "auto":
        return precision
    try:
        with open(cpuinfo) as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        flags = []
    return "mixed_bfloat16" if {"avx512_bf16", "amx_bf16"} & set(flags) else "float32"


def _spec(name: str) -> BackboneSpec:
    key = str(name).lower()
    if key not in BACKBONES:
        raise ConfigError(
            f"Unknown backbone {name!r}. Expected one of {sorted(BACKBONES)}; received backbone={name!r}."
        )
    return BACKBONES[key]


def validate_backbone(name: str, input_size: int, pooling: str = "avg", params: dict | None = None) -> BackboneSpec:
    """Check a backbone name, input size and pooling without building anything.

    Parameters
    ----------
    name : str
        A key of :data:`BACKBONES` (case-insensitive).
    input_size : int
        Input side in pixels (images are resized to ``input_size x input_size``).
    pooling : {"avg", "max"}
    params : dict, optional
        Backbone parameters (``compact``: ``depth``, ``width``).

    Returns
    -------
    BackboneSpec

    Raises
    ------
    ConfigError
        Unknown name or pooling, or an input size below the backbone's minimum.
    """
    spec = _spec(name)
    min_size = spec.min_size
    if spec.name == "compact":
        depth = int((params or {}).get("depth", 4))
        if depth < 1:
            raise ConfigError(f"compact backbone depth must be at least 1; received depth={depth}.")
        min_size = max(min_size, 2 ** depth)
    if int(input_size) < min_size:
        raise ConfigError(
            f"Input size {input_size} is smaller than backbone {spec.name!r} allows (minimum {min_size} px). "
            f"Fix: set input_size to {min_size} or more."
        )
    if pooling not in POOLINGS:
        raise ConfigError(
            f"Unknown pooling {pooling!r}. Expected one of {list(POOLINGS)}; received pooling={pooling!r}.")
    return spec


def validate_progressive(name: str, input_size: int, pooling: str, params: dict | None, progressive_size,
                         progressive_epochs, epochs: int) -> None:
    """Check the progressive-resizing settings (``backbone.progressive_size``, ``backbone.progressive_epochs``):
    off (``progressive_size=None`` with no progressive epochs), or a side the backbone accepts, smaller than
    ``input_size``, for at least one and fewer than ``epochs`` epochs.

    Raises
    ------
    ConfigError
        Naming the setting, what it must be and the fix.
    """
    if progressive_size is None:
        if int(progressive_epochs or 0):
            raise ConfigError(f"progressive_epochs={progressive_epochs} needs progressive_size (the smaller "
                              "image side of those epochs). Fix: set backbone.progressive_size, e.g. 64, or "
                              "backbone.progressive_epochs=0.")
        return
    try:
        validate_backbone(name, progressive_size, pooling, params)
    except ConfigError as exc:
        raise ConfigError(f"progressive_size {progressive_size} is too small for this backbone: {exc} "
                          "Fix: a larger progressive_size, or progressive_size=null (off).") from None
    if not int(progressive_size) < int(input_size):
        raise ConfigError(f"progressive_size must be smaller than input_size ({input_size}); received "
                          f"{progressive_size}. Fix: a smaller side, or progressive_size=null (off).")
    if not 1 <= int(progressive_epochs) < int(epochs):
        raise ConfigError(f"progressive_epochs must be at least 1 and fewer than epochs ({epochs}); received "
                          f"{progressive_epochs}. Fix: set backbone.progressive_epochs below backbone.epochs "
                          "(some epochs must run at input_size), or backbone.progressive_size=null (off).")


def weights_identity(weights):
    """What names a backbone's starting weights in a cache key: ``None`` or ``"imagenet"`` as given, a local
    file by its content (``"sha256:<hex>"``), so a moved file keeps its cached models and a rewritten one does
    not (a missing file is named by its path; building the model then reports it)."""
    if weights in (None, "imagenet"):
        return weights
    from hybridwbc.data.manifest import file_sha256

    digest = file_sha256(weights)
    return f"sha256:{digest}" if digest else str(weights)
