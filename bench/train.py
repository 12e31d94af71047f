"""CNN training speed: the framework's fit (images streamed from disk, augmentation on) vs bare ``keras.Model.fit``.

    .venv/bin/python bench/train.py [--n 600] [--epochs 4] [--tiny 32] [--data ../shared/data/pbc] [--backbone compact]

One command, one machine, the same model (``CNNClassifier.build_model`` with the configured backbone,
``hybridwbc/conf/backbone/<name>.yaml``), the same optimiser (:func:`hybridwbc.cnn.training.compile_model`),
batch size and number of epochs:

* ``framework``: ``CNNClassifier.fit`` on the image paths: ``tf.data`` from disk with the on-disk decode
  cache, microscopy augmentation, class weights, the validation split, BatchNorm re-estimation and
  inference-mode validation every epoch, best-weights checkpoint (early stopping off, trained-model cache off);
* ``bare``: the same images decoded and resized into memory first (not timed), then ``model.fit(x, y)``
  with no augmentation, validation or callbacks.

Throughput is the training images of one epoch over the median epoch time after the first (tracing
excluded): ``framework_img_per_s``, ``bare_img_per_s`` and their ``ratio`` (target >= 0.85). The fixed
per-fit cost, ``overhead_s`` (model build, tracing, BatchNorm re-estimation, validation, checkpointing,
the final evaluation; target <= 5 s), is a whole framework fit on ``--tiny`` images (2 epochs) minus the
time the bare loop needs for the same images. ``retraces`` counts TensorFlow's "triggered tf.function
retracing" warnings seen during the framework's fits (target 0). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _sample(data: Path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` image paths drawn evenly over the class folders of ``data``, and their labels."""
    from hybridwbc.data.io import IMAGE_SUFFIXES

    classes = sorted(p for p in data.iterdir() if p.is_dir())
    if not classes:
        sys.exit(f"bench/train.py: no class folders under {data}; pass --data <root>/<class>/<image>.")
    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for c in classes:
        files = sorted(str(p) for p in c.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        pick = rng.choice(len(files), size=min(len(files), max(1, n // len(classes))), replace=False)
        paths += [files[i] for i in pick]
        labels += [c.name] * len(pick)
    return np.array(paths, dtype=object), np.array(labels, dtype=object)


def _synthetic(folder: Path, n: int) -> Path:
    """A ``<class>/<image>.png`` set of synthetic cells (when no real data is given)."""
    from PIL import Image

    from hybridwbc.data.synthetic import PROFILES, draw_cell

    rng = np.random.default_rng(0)
    for label in ("lymphocyte", "neutrophil", "eosinophil", "monocyte"):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(max(1, n // 4)):
            Image.fromarray(draw_cell(rng, PROFILES[label], 96).image).save(folder / label / f"{i:04d}.png")
    return folder


class _Retraces(logging.Handler):
    """Counts TensorFlow's retracing warnings (they go through the ``tensorflow`` logger)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record):
        self.count += "retracing" in record.getMessage()


def _framework(est_kwargs: dict, X, y, epochs: int, retraces: _Retraces | None = None) -> tuple[float, object]:
    """Seconds of one framework fit and the fitted estimator; TensorFlow's retracing warnings meanwhile
    are counted into ``retraces``."""
    from hybridwbc.cnn.estimators import CNNClassifier

    est = CNNClassifier(**{**est_kwargs, "epochs": epochs, "patience": 0, "cache_dir": None, "verbose": 0})
    logger = logging.getLogger("tensorflow")
    if retraces is not None:
        logger.addHandler(retraces)
    t = time.perf_counter()
    try:
        est.fit(X.reshape(-1, 1), y)
    finally:
        logger.removeHandler(retraces)
    return time.perf_counter() - t, est


def _bare(est, x: np.ndarray, yi: np.ndarray, epochs: int) -> list:
    """Per-epoch seconds of ``model.fit`` on in-memory tensors (same model, optimiser, batch size)."""
    import keras

    from hybridwbc.cnn.training import compile_model

    model = est.build_model(int(yi.max()) + 1)
    steps = int(np.ceil(len(x) / est.batch_size))
    compile_model(model, est.lr_schedule, est.learning_rate, est.weight_decay, steps, epochs)
    times = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(x, yi, batch_size=est.batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[Clock()])
    return times


def _n_train(est, y, paths) -> int:
    """Training images of a fit (the rows left after its validation split)."""
    from hybridwbc.cnn.training import validation_split
    from hybridwbc.data.manifest import file_sha256

    classes = sorted(set(y.tolist()))
    yi = np.array([classes.index(c) for c in y])
    tr, _ = validation_split(yi, np.array([file_sha256(p) for p in paths], dtype=object),
                             float(est.validation_fraction), int(est.random_state))
    return len(tr)


def _load(paths, size: int) -> np.ndarray:
    from hybridwbc.cnn.images import image_dataset

    return np.concatenate([b[0].numpy() for b in image_dataset(list(paths), size, 64)])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "pbc"))
    ap.add_argument("--n", type=int, default=600, help="images for the throughput runs")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--tiny", type=int, default=32, help="images for the overhead run")
    ap.add_argument("--backbone", default="compact", help="a config of hybridwbc/conf/backbone/")
    ap.add_argument("--precision", default=None, help="float32 | mixed_bfloat16 | auto (default: the config's)")
    args = ap.parse_args(argv)

    import tempfile

    from omegaconf import OmegaConf

    data = Path(args.data)
    if not data.is_dir():
        data = _synthetic(Path(tempfile.mkdtemp(prefix="bench-train-")), args.n)
    cfg = OmegaConf.load(ROOT / "hybridwbc" / "conf" / "backbone" / "compact.yaml")
    if args.backbone != "compact":
        cfg = OmegaConf.merge(cfg, OmegaConf.load(ROOT / "hybridwbc" / "conf" / "backbone" / f"{args.backbone}.yaml"))
    kw = {k: v for k, v in OmegaConf.to_container(cfg).items()
          if k not in ("_target_", "defaults", "random_state", "cache_dir")}
    if args.precision:
        kw["precision"] = args.precision
    paths, y = _sample(data, args.n)
    retraces = _Retraces()

    # overhead: a whole framework fit on a tiny set, minus the bare loop's time for the same images
    tiny = np.random.default_rng(1).permutation(len(paths))[: args.tiny]
    _framework(kw, paths[tiny[:8]], y[tiny[:8]], 1)  # first model in the process: library start-up, not per fit
    tiny_s, tiny_est = _framework(kw, paths[tiny], y[tiny], 2, retraces)
    # throughput on n images
    fw_s, est = _framework(kw, paths, y, args.epochs, retraces)
    n_train = _n_train(est, y, paths)
    fw_epoch = float(np.median(est.history_["epoch_s"][1:])) if args.epochs > 1 else est.history_["epoch_s"][0]
    classes = sorted(set(y.tolist()))
    yi = np.array([classes.index(c) for c in y])
    x = _load(paths, int(est.input_size))
    bare_times = _bare(est, x, yi, args.epochs)
    bare_epoch = float(np.median(bare_times[1:])) if len(bare_times) > 1 else bare_times[0]
    fw_rate, bare_rate = n_train / fw_epoch, len(x) / bare_epoch
    tiny_n = _n_train(est, y[tiny], paths[tiny]) * 2
    out = {
        "backbone": args.backbone, "precision": est.precision, "input_size": int(est.input_size),
        "n": int(len(paths)), "epochs": args.epochs,
        "framework_img_per_s": round(fw_rate, 1), "bare_img_per_s": round(bare_rate, 1),
        "ratio": round(fw_rate / bare_rate, 3), "framework_fit_s": round(fw_s, 1),
        "overhead_s": round(tiny_s - tiny_n / bare_rate, 2), "tiny_fit_s": round(tiny_s, 2),
        "retraces": int(retraces.count), "framework_epoch_s": [round(t, 2) for t in est.history_["epoch_s"]],
        "bare_epoch_s": [round(t, 2) for t in bare_times],
        "loadavg": open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else None,
    }
    del tiny_est
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
