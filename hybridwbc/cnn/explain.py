"""Grad-CAM heat maps for Keras 3 functional models, and the model-randomisation sanity check.

**Grad-CAM** (Selvaraju et al. 2017): for an image ``x`` and a class ``c``, let ``A`` be the
``(h, w, K)`` feature map of the last layer with a spatial output and ``y_c`` the class score before
the softmax. The channel weights are ``a_k = mean_ij dy_c / dA_ijk`` (a ``tf.GradientTape``) and the map is
``relu(sum_k a_k A_k)``, scaled to ``[0, 1]`` by its maximum and resized (bilinear) to the image.

The feature map may sit inside nested models (hybridwbc's CNN is ``image -> backbone(preprocess ->
conv base -> pool) -> embedding -> dropout -> head``): :func:`cam_path` walks into nested functional
models to the last 4-D output and returns the part before it as Keras models (any graph: residual
backbones included) and the layers after it, which must form a chain (one input per layer), as in every
classifier this project builds. A final
softmax ``Dense`` layer is applied without its softmax, so gradients do not saturate.

**Sanity check** (Adebayo et al. 2018): :func:`randomised_copy` re-initialises the top layers of a copy
of the model; :func:`randomisation_check` compares an explainer's maps of both models by Spearman rank
correlation. An explainer that does not depend on the model (image intensity, a constant or a centred
blob) keeps its maps, and fails.

Only this wing imports TensorFlow; it is imported here at module level, as in :mod:`hybridwbc.cnn.build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

__all__ = ["CamResult", "cam_path", "grad_cam", "explain_images", "explain_paths", "randomised_copy",
           "randomisation_check", "RandomisationResult"]


@dataclass
class CamResult:
    """Grad-CAM maps of a batch.

    Attributes
    ----------
    maps : list of ndarray of shape (H_i, W_i), float32 in [0, 1]
        One heat map per image, at that image's size.
    target : ndarray of shape (n,), int
        Index of the class each map explains.
    proba : ndarray of shape (n, n_classes), float32
        The model's class probabilities.
    """

    maps: list
    target: np.ndarray
    proba: np.ndarray


def _output(layer):
    """The layer's output tensor in the graph of the model that calls it (once: :func:`_check_tail` checks)."""
    return layer._inbound_nodes[0].output_tensors[0]


def _is_4d(layer) -> bool:
    nodes = getattr(layer, "_inbound_nodes", [])
    return bool(nodes) and len(nodes[0].output_tensors) == 1 and len(_output(layer).shape) == 4


def _layers(model) -> list:
    """The layers of a functional model after its inputs, in the model's (topological) order."""
    return [lay for lay in model.layers if not isinstance(lay, keras.layers.InputLayer)]


def _check_tail(model, layers: list, i: int) -> None:
    """Check that the layers after ``layers[i]`` form a chain from its output to the model's output.

    Raises
    ------
    ValueError
        Naming the first layer that takes several inputs, is called more than once, or does not read the
        previous layer's output (a branch).
    """
    for prev, lay in zip(layers[i:], layers[i + 1:]):
        nodes = lay._inbound_nodes
        inputs = keras.tree.flatten(nodes[0].input_tensors) if len(nodes) == 1 else []
        if len(inputs) != 1 or len(prev._inbound_nodes) != 1 or inputs[0] is not _output(prev):
            raise ValueError(
                f"Grad-CAM needs a chain of single-input layers after its feature map; layer {lay.name!r} of model "
                f"{model.name!r} has several inputs, is called more than once or branches off. Fix: name a layer "
                "after the branching (layer=...).")


def _contains(model, name: str | None) -> bool:
    if name is None:
        return any(_is_4d(lay) or (isinstance(lay, keras.Model) and _contains(lay, None)) for lay in model.layers
                   if not isinstance(lay, keras.layers.InputLayer))
    return any(lay.name == name or (isinstance(lay, keras.Model) and _contains(lay, name)) for lay in model.layers)


def cam_path(model, layer: str | None = None) -> tuple:
    """Split ``model`` at its Grad-CAM layer.

    Parameters
    ----------
    model : keras.Model
        A functional model, possibly holding nested functional models.
    layer : str, optional
        Name of the layer whose output is ``A`` (searched in nested models too); default the last layer
        with a 4-D output (batch, h, w, channels).

    Returns
    -------
    prefix : callable
        ``images -> A`` (a chain of Keras models).
    tail : list of keras.layers.Layer
        The layers that map ``A`` to the output, in order.

    Raises
    ------
    ValueError
        If no layer with a 4-D output (or no layer named ``layer``) exists, or the path is not a chain.
    """
    layers = _layers(model)
    for i in reversed(range(len(layers))):
        lay = layers[i]
        here = lay.name == layer if layer is not None else _is_4d(lay)
        if here:
            _check_tail(model, layers, i)
            return [keras.Model(model.inputs, _output(lay))], layers[i + 1:]
        if isinstance(lay, keras.Model) and _contains(lay, layer):
            _check_tail(model, layers, i)
            inner, tail = cam_path(lay, layer)
            nodes = lay._inbound_nodes[0]
            before = [keras.Model(model.inputs, keras.tree.flatten(nodes.input_tensors)[0])] if i > 0 else []
            return before + inner, tail + layers[i + 1:]
    what = f"named {layer!r}" if layer is not None else "with a 4-D (batch, height, width, channels) output"
    raise ValueError(f"Model {model.name!r} has no layer {what}; Grad-CAM needs a convolutional feature map. "
                     "Fix: pass layer= the name of a convolutional layer.")


def _scores(tail: list, a):
    """Class scores from the feature map: the tail in inference mode, a final softmax Dense without its softmax."""
    x = a
    last = tail[-1] if tail else None
    soft = isinstance(last, keras.layers.Dense) and getattr(last.activation, "__name__", "") == "softmax"
    for lay in tail[:-1] if soft else tail:
        x = lay(x, training=False)
    if soft:
        x = tf.matmul(tf.cast(x, tf.float32), tf.cast(last.kernel, tf.float32)) + tf.cast(last.bias, tf.float32)
        return x, tf.nn.softmax(x)
    return x, x


def grad_cam(model, images, target=None, layer: str | None = None) -> CamResult:
    """Grad-CAM maps of a batch at the model's input size.

    Parameters
    ----------
    model : keras.Model
        Image batch -> class probabilities (or scores).
    images : ndarray of shape (n, S, S, 3), float32
        What the model takes (hybridwbc's CNNs: RGB in ``[0, 255]``).
    target : None, int or sequence of int
        Class index per image; ``None``: the predicted class.
    layer : str, optional
        See :func:`cam_path`.

    Returns
    -------
    CamResult
        Maps of shape ``(S, S)``.
    """
    prefix, tail = cam_path(model, layer)
    x = tf.convert_to_tensor(np.asarray(images, np.float32))
    with tf.GradientTape() as tape:
        a = x
        for part in prefix:
            a = part(a, training=False)
        a = tf.cast(a, tf.float32)
        tape.watch(a)
        scores, proba = _scores(tail, a)
        n = int(scores.shape[0])
        pred = tf.argmax(proba, axis=1, output_type=tf.int32)
        idx = pred if target is None else tf.constant(np.broadcast_to(np.asarray(target, np.int32), (n,)))
        chosen = tf.gather(tf.cast(scores, tf.float32), idx, axis=1, batch_dims=1)
    grads = tape.gradient(chosen, a)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * a, axis=-1))
    cam = cam / tf.maximum(tf.reduce_max(cam, axis=(1, 2), keepdims=True), 1e-12)
    size = tuple(int(d) for d in x.shape[1:3])
    cam = tf.image.resize(cam[..., None], size, method="bilinear")[..., 0]
    return CamResult(maps=list(cam.numpy().astype(np.float32)), target=idx.numpy().astype(int),
                     proba=proba.numpy().astype(np.float32))


def _resize(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Images of any size -> ``(n, size, size, 3)`` float32 in ``[0, 255]`` (the CNN's resize arithmetic)."""
    out = [tf.image.resize(tf.cast(np.asarray(im)[..., :3], tf.float32), (size, size), method="bilinear",
                           antialias=True) for im in images]
    return tf.clip_by_value(tf.stack(out), 0.0, 255.0).numpy()


def explain_images(cnn, images: Sequence[np.ndarray], target=None, layer: str | None = None) -> CamResult:
    """Grad-CAM maps of a fitted :class:`~hybridwbc.cnn.estimators.CNNClassifier` on RGB images of any size.

    Parameters
    ----------
    cnn : CNNClassifier (fitted)
    images : sequence of ndarray of shape (H_i, W_i, 3), uint8
    target : None, str or sequence of str
        Class label(s) to explain; ``None``: the CNN's predicted class.
    layer : str, optional

    Returns
    -------
    CamResult
        Maps of shape ``(H_i, W_i)``, resized back from the CNN's input size.

    Raises
    ------
    ValueError
        If a target label is not one of the CNN's classes.
    """
    images = list(images)
    if not images:
        return CamResult(maps=[], target=np.empty(0, int), proba=np.empty((0, len(cnn.classes_)), np.float32))
    idx = None
    if target is not None:
        classes = [str(c) for c in cnn.classes_]
        labels = [target] * len(images) if isinstance(target, str) else [str(t) for t in target]
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise ValueError(f"Cannot explain class(es) {unknown}: the CNN knows {classes}. Fix: pick one of them.")
        idx = [classes.index(t) for t in labels]
    res = grad_cam(cnn.model_, _resize(images, int(cnn.input_size)), idx, layer)
    maps = [tf.image.resize(m[..., None], im.shape[:2], method="bilinear")[..., 0].numpy()
            for m, im in zip(res.maps, images)]
    return CamResult(maps=[np.clip(m, 0.0, 1.0).astype(np.float32) for m in maps], target=res.target,
                     proba=res.proba)


def explain_paths(cnn, paths: Sequence[str], target=None, batch_size: int = 32) -> tuple[list, CamResult]:
    """Read images (:func:`hybridwbc.data.io.read_image`) and explain them in batches.

    Returns
    -------
    images : list of ndarray (H_i, W_i, 3) uint8
    result : CamResult

    Raises
    ------
    ImageReadError
        From :func:`~hybridwbc.data.io.read_image` for an unreadable file.
    """
    from hybridwbc.data.io import read_image

    images = [read_image(p) for p in paths]
    targets = [target] * len(images) if target is None or isinstance(target, str) else list(target)
    parts = [explain_images(cnn, images[i:i + batch_size],
                            None if targets[i] is None else targets[i:i + batch_size])
             for i in range(0, len(images), batch_size)]
    if not parts:
        return images, explain_images(cnn, [])
    return images, CamResult(maps=[m for p in parts for m in p.maps], target=np.concatenate([p.target for p in parts]),
                             proba=np.concatenate([p.proba for p in parts]))


def _weighted_layers(model) -> list:
    """Layers with a kernel, nested models expanded, in order from input to output."""
    out = []
    for lay in model.layers:
        if isinstance(lay, keras.Model):
            out.extend(_weighted_layers(lay))
        elif getattr(lay, "kernel", None) is not None:
            out.append(lay)
    return out


def randomised_copy(model, n_layers: int = 1, seed: int = 0):
    """A copy of ``model`` whose top ``n_layers`` kernel layers (Dense, Conv) are re-initialised.

    Kernels are drawn afresh (Glorot uniform, seeded), biases zeroed, as at construction; the other weights
    (lower layers, BatchNorm statistics) are the trained ones. The original model is untouched.

    Raises
    ------
    ValueError
        If ``n_layers`` is not between 1 and the number of kernel layers.
    """
    weighted = _weighted_layers(model)
    if not 1 <= int(n_layers) <= len(weighted):
        raise ValueError(f"n_layers must be between 1 and {len(weighted)} (the model's kernel layers); "
                         f"received {n_layers}.")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for k, lay in enumerate(reversed(_weighted_layers(copy)[-int(n_layers):])):
        init = keras.initializers.GlorotUniform(seed=int(seed) + k)
        lay.kernel.assign(init(tuple(lay.kernel.shape), dtype=lay.kernel.dtype))
        if getattr(lay, "bias", None) is not None:
            lay.bias.assign(np.zeros(tuple(lay.bias.shape), dtype=np.float32))
    return copy


@dataclass
class RandomisationResult:
    """What :func:`randomisation_check` found.

    Attributes
    ----------
    rho : ndarray of shape (n,), float
        Spearman rank correlation per image between the trained and the randomised model's maps; 0 where
        one of them is constant (no shared ranking), NaN where both are (nothing was compared).
    threshold : float
    passed : bool
        Every ``rho`` is finite and their mean is below ``threshold``.
    """

    rho: np.ndarray
    threshold: float
    passed: bool


def randomisation_check(explainer: Callable, model, images, n_layers: int = 2, threshold: float = 0.5,
                        seed: int = 0) -> RandomisationResult:
    """Adebayo et al.'s model-randomisation test of an explainer.

    Parameters
    ----------
    explainer : callable ``(model, images, target) -> CamResult``
        E.g. :func:`grad_cam`. ``target`` is the trained model's class per image, so both maps explain
        the same class.
    model : keras.Model
    images : ndarray of shape (n, S, S, 3)
    n_layers : int, default 2
        Top kernel layers re-initialised (:func:`randomised_copy`).
    threshold : float, default 0.5
        The explainer passes when the mean rank correlation is below it.
    seed : int, default 0
    """
    from scipy.stats import spearmanr

    trained = explainer(model, images, None)
    randomised = explainer(randomised_copy(model, n_layers, seed), images, trained.target)
    rho = []
    for a, b in zip(trained.maps, randomised.maps):
        a, b = np.ravel(a), np.ravel(b)
        flat = int(np.ptp(a) == 0) + int(np.ptp(b) == 0)
        rho.append(float(spearmanr(a, b).statistic) if flat == 0 else 0.0 if flat == 1 else np.nan)
    rho = np.asarray(rho, float)
    passed = bool(len(rho) and np.all(np.isfinite(rho)) and rho.mean() < threshold)
    return RandomisationResult(rho=rho, threshold=float(threshold), passed=passed)
