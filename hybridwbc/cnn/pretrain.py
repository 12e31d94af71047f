"""A backbone pretrained on blood cells, offline: train, export, and guard against reuse on seen images.

``python -m hybridwbc.run +experiment=pretrain`` (``make pretrain``) trains the configured CNN
(``backbone`` node) on every image of the configured data set (PBC's eight classes by default) and
exports the backbone's weights to ``<pretrain.output_dir>/<pretrain.name>.weights.h5``. Beside it:

* ``<name>.json``: the file's SHA-256, the architecture it fits, the data and classes it saw, its
  validation accuracy and the MLflow run that made it;
* ``<name>.images.txt``: the SHA-256 of every image it was trained on (sorted), so that an
  experiment scoring images the backbone has seen is refused (:func:`check_unseen`).

Any experiment then starts from it with ``backbone.weights=<that file>`` (and ``backbone.freeze=true``
to keep it fixed and train the head only). The run also logs the trained 8-class CNN as an MLflow
model (pyfunc), usable with ``predict``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from hybridwbc.data.atomic import atomic_path, write_text_atomic
from hybridwbc.data.manifest import file_sha256
from hybridwbc.errors import ConfigError, LeakageError, WeightsUnavailableError

__all__ = ["PRETRAIN_VERSION", "inner_backbone", "export_weights", "sidecar", "pretrain", "pretrained_images",
           "check_unseen", "weights_files", "record"]

log = logging.getLogger("hybridwbc")

#: Version of the exported files' layout (written into the ``.json``).
PRETRAIN_VERSION = 1


def inner_backbone(model):
    """The sub-model of a trained :class:`~hybridwbc.cnn.estimators.CNNClassifier` model that
    ``build_backbone(weights=<file>)`` loads a weights file into (the layers between the preprocessing and
    the pooling).

    Raises
    ------
    ConfigError
        If ``model`` has no ``backbone`` layer holding exactly one sub-model.
    """
    import keras

    try:
        wrapper = model.get_layer("backbone")
    except ValueError:
        raise ConfigError(f"Model {model.name!r} has no 'backbone' layer; expected a CNNClassifier's Keras "
                          "model (image -> backbone -> embedding -> head).") from None
    inner = [layer for layer in wrapper.layers if isinstance(layer, keras.Model)]
    if len(inner) != 1:
        raise ConfigError(f"The backbone of {model.name!r} holds {len(inner)} sub-models; expected one.")
    return inner[0]


def export_weights(model, path: str | os.PathLike) -> str:
    """Write the backbone weights of a trained CNN model to ``path`` (``*.weights.h5``) atomically.

    Returns
    -------
    str
        The SHA-256 of the written file.

    Raises
    ------
    ConfigError
        If ``path`` does not end in ``.weights.h5`` (Keras' weights-file suffix).
    """
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ConfigError(f"Backbone weights file {str(path)!r} must end in '.weights.h5' (Keras' suffix); "
                          "fix pretrain.name or the path.")
    with atomic_path(path) as tmp:  # keeps the '.weights.h5' suffix Keras requires
        inner_backbone(model).save_weights(str(tmp))
    return file_sha256(path)


def sidecar(weights: str | os.PathLike) -> Path:
    """The ``.json`` description beside a weights file."""
    weights = Path(os.fsdecode(weights))
    return weights.with_name(weights.name.removesuffix(".weights.h5") + ".json")


def record(weights: str | os.PathLike) -> dict | None:
    """The ``.json`` record :func:`pretrain` wrote beside ``weights`` (``None`` when there is none, e.g. a file made
    elsewhere).

    Raises
    ------
    WeightsUnavailableError
        If the record describes another file (its SHA-256 differs from the file's): a stale or copied record
        would name the wrong training images and architecture.
    """
    meta = sidecar(weights)
    if not meta.is_file():
        return None
    info = json.loads(meta.read_text())
    actual = file_sha256(weights)
    if info.get("sha256") and info["sha256"] != actual:
        raise WeightsUnavailableError(
            f"{meta.name} describes another weights file (sha256 {info['sha256'][:12]}..., but "
            f"{Path(os.fsdecode(weights)).name} has {actual[:12] or 'no readable content'}...). Expected the record "
            "written with these weights. Fix: rerun `make pretrain`, or copy the .json and .images.txt with the file.")
    return info


def pretrained_images(weights: str | os.PathLike) -> set[str] | None:
    """SHA-256 of the images a weights file exported by :func:`pretrain` was trained on (``None`` for a
    weights file with no such record, e.g. one made elsewhere). Raises as :func:`record` does."""
    info = record(weights)
    if not info or not info.get("images"):
        return None
    listing = sidecar(weights).with_name(info["images"])
    if not listing.is_file():
        return None
    return {line.strip() for line in listing.read_text().splitlines() if line.strip()}


def check_unseen(weights, shas, what: str) -> int:
    """Refuse to evaluate on images the pretrained backbone ``weights`` was trained on.

    Parameters
    ----------
    weights : None, "imagenet" or path
        ``backbone.weights``; only a local file with a :func:`pretrain` record is checked.
    shas : sequence of str
        Content hashes of the images the experiment scores.
    what : str
        Names the data set in the message.

    Returns
    -------
    int
        How many of ``shas`` were checked against a record (0 when there is none).

    Raises
    ------
    LeakageError
        If any image was among the backbone's training images.
    """
    if weights in (None, "imagenet"):
        return 0
    seen = pretrained_images(weights)
    if seen is None:
        log.warning("Backbone weights %s carry no record of their training images: cannot check that the "
                    "evaluated images are unseen.", weights)
        return 0
    overlap = sum(1 for s in shas if str(s) in seen)
    if overlap:
        raise LeakageError(
            f"{overlap} of {len(shas)} images of {what} were used to pretrain backbone.weights={str(weights)!r} "
            f"(listed in {sidecar(weights).name}); scoring them would leak. Expected images the backbone never "
            "saw. Fix: evaluate on another data set, or pretrain on data that excludes these images.")
    return len(shas)


def weights_files(node) -> set[str]:
    """Every local weights file a config node's CNNs start from (``weights`` of each
    :class:`~hybridwbc.cnn.estimators.CNNClassifier` node, at any depth)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=True)
    found: set[str] = set()
    if isinstance(node, dict):
        if str(node.get("_target_", "")).endswith("CNNClassifier") and node.get("weights") not in (None, "imagenet"):
            found.add(str(node["weights"]))
        for v in node.values():
            found |= weights_files(v)
    elif isinstance(node, list):
        for v in node:
            found |= weights_files(v)
    return found


def _record(cfg, est, weights: Path, sha: str, data, manifest, run_id, command: str) -> dict:
    from hybridwbc.config import code_version

    listing = weights.with_name(weights.name.removesuffix(".weights.h5") + ".images.txt")
    write_text_atomic(listing, "\n".join(sorted(set(manifest["sha256"].astype(str)))) + "\n")
    info = {"version": PRETRAIN_VERSION, "file": weights.name, "sha256": sha, "images": listing.name,
            "backbone": est.backbone, "input_size": int(est.input_size), "pooling": est.pooling,
            "backbone_params": dict(est.backbone_params or {}), "data": str(cfg.data.name),
            "source": data.source, "n_images": int(len(manifest)),
            "classes": [str(c) for c in est.classes_], "val_accuracy": est.val_accuracy_,
            "best_epoch": est.best_epoch_, "epochs": int(est.epochs), "fit_seconds": round(est.fit_seconds_, 1),
            "augmentation": est.augmentation if isinstance(est.augmentation, dict) else None,
            "mlflow_run_id": run_id, "command": command, "code_version": code_version()}
    write_text_atomic(sidecar(weights), json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return info


def pretrain(cfg, tracker, run_dir: Path, command: str) -> dict:
    """Train ``cfg.backbone`` on every image of ``cfg.data``, export its backbone and track it.

    Returns
    -------
    dict
        The ``.json`` record (``sha256``, ``file``, ``val_accuracy``, ...) plus ``path`` (the weights file).

    Raises
    ------
    ConfigError
        If the data are the built-in synthetic set and ``pretrain.allow_synthetic`` is false.
    """
    from hydra.utils import instantiate

    from hybridwbc.config import build_featurizer
    from hybridwbc.data.dataset import load_dataset
    from hybridwbc.data.splits import has_subjects, split_groups

    data = load_dataset(cfg.data, cfg.paths.root, cfg.paths.cache_dir, seed=cfg.seed)
    if data.source == "synthetic" and not cfg.pretrain.allow_synthetic:
        raise ConfigError("pretrain found no real data (the built-in synthetic set was loaded); a backbone "
                          "pretrained on it would be useless. Expected real images: set HYBRIDWBC_DATA, or "
                          "pretrain.allow_synthetic=true for a smoke run.")
    manifest = data.manifest.reset_index(drop=True)
    tracker.set_tags({"data.source": data.source, "data.root": str(cfg.data.name), "role": "pretrain"})
    est = instantiate(cfg.backbone, _convert_="all")
    groups = split_groups(manifest) if has_subjects(manifest) else None
    log.info("pretrain: %d images of %r, classes %s", len(manifest), cfg.data.name,
             manifest["label"].value_counts().sort_index().to_dict())
    est.fit(manifest[["path"]].to_numpy(dtype=object), manifest["label"].to_numpy(dtype=object), groups)
    weights = Path(os.fsdecode(cfg.pretrain.output_dir)) / f"{cfg.pretrain.name}.weights.h5"
    try:
        sha = export_weights(est.model_, weights)
    except OSError as exc:
        raise WeightsUnavailableError(f"Cannot write backbone weights to {str(weights)!r}: {exc}. "
                                      "Fix pretrain.output_dir.") from None
    info = _record(cfg, est, weights, sha, data, manifest, tracker.run_id, command)
    tracker.log_params({"pretrain.name": cfg.pretrain.name, "n_images": len(manifest)})
    tracker.log_metrics({"val_accuracy": float(est.val_accuracy_ or np.nan), "cnn_fit_s": est.fit_seconds_,
                         "best_epoch": float(est.best_epoch_ or 0)})
    tracker.set_tags({"weights_sha256": sha, "weights_file": weights.name})
    for f in (weights, sidecar(weights), weights.with_name(info["images"])):
        tracker.log_artifact(f, "pretrained")
    if tracker.run_id is not None and cfg.tracking.log_pyfunc:
        from hybridwbc.serve.pipeline import WBCPipeline
        from hybridwbc.serve.pyfunc import log_pyfunc

        pipeline = WBCPipeline(build_featurizer(cfg.features), est, input_kind="paths", info={
            "experiment": "pretrain", "run_id": tracker.run_id, "data": str(cfg.data.name),
            "method": "cnn_softmax", "features": cfg.features.name, "classifier": "cnn_softmax"})
        pipeline.save(run_dir / "model")
        tracker.set_tags({"pyfunc_model_uri": log_pyfunc(pipeline).model_uri})
    (run_dir / "pretrained.json").write_text(json.dumps(info, indent=2, default=str))
    return {**info, "path": weights}
