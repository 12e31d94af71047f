"""Training throughput of candidate CNN settings against today's default, side by side in one process.

    .venv/bin/python bench/cnn_settings.py [--n 512] [--rounds 3] [--steps 12]

Each candidate is a delta on ``hybridwbc/conf/backbone/compact.yaml`` (the default, the baseline):
precision (``mixed_bfloat16`` where the CPU has AVX512-BF16), input size, backbone. For each one the
model that ``CNNClassifier.build_model`` builds is compiled with the framework's optimiser
(:func:`hybridwbc.cnn.training.compile_model`) and trained with ``train_on_batch`` on in-memory random
tensors of its input size (the images' content does not change the arithmetic). The candidates take turns
over ``--rounds`` rounds, so a change in the machine's load hits them all alike; the first batches of each
model (tracing) are not timed. Reported: images/s per candidate (median over rounds) and ``speedup`` over
the baseline. Accuracy is not measured here: the pbc8 runs in ``experiments/pbc8_cnn/README.md`` do that.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CANDIDATES = {
    "compact-96-float32 (default)": {},
    "compact-96-bf16": {"precision": "mixed_bfloat16"},
    "compact-80-float32": {"input_size": 80},
    "compact-64-float32": {"input_size": 64},
    "compact-64-bf16": {"input_size": 64, "precision": "mixed_bfloat16"},
    "mobilenetv3small-96-float32": {"backbone": "mobilenetv3small", "backbone_params": None},
    "mobilenetv3small-128-float32": {"backbone": "mobilenetv3small", "backbone_params": None, "input_size": 128},
}


def _estimator(delta: dict):
    from omegaconf import OmegaConf

    from hybridwbc.cnn.estimators import CNNClassifier

    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "hybridwbc" / "conf" / "backbone" / "compact.yaml"))
    kw = {k: v for k, v in cfg.items() if k not in ("_target_", "defaults", "random_state", "cache_dir")}
    return CNNClassifier(**{**kw, **delta, "cache_dir": None, "verbose": 0})


def _trainer(delta: dict, n_classes: int, steps: int):
    """A compiled model for ``delta`` and a function that trains it ``steps`` batches and returns seconds."""
    from hybridwbc.cnn.training import compile_model

    est = _estimator(delta)
    model = est.build_model(n_classes)
    compile_model(model, est.lr_schedule, est.learning_rate, est.weight_decay, 100, 10)
    rng = np.random.default_rng(0)
    size, bs = int(est.input_size), int(est.batch_size)
    x = rng.uniform(0, 255, (bs, size, size, 3)).astype("float32")
    y = rng.integers(0, n_classes, bs)
    for _ in range(2):  # tracing and first-call allocation, not timed
        model.train_on_batch(x, y)

    def run() -> float:
        t = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        return time.perf_counter() - t

    return run, bs


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=12, help="batches per candidate per round")
    ap.add_argument("--classes", type=int, default=8)
    args = ap.parse_args(argv)

    from hybridwbc.cnn.backbones import resolve_precision

    trainers = {name: _trainer(delta, args.classes, args.steps) for name, delta in CANDIDATES.items()}
    rates: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(args.rounds):
        for name, (run, bs) in trainers.items():
            rates[name].append(args.steps * bs / run())
    base = float(np.median(rates["compact-96-float32 (default)"]))
    out = {"bf16_cpu": resolve_precision("auto") == "mixed_bfloat16", "rounds": args.rounds, "steps": args.steps,
           "img_per_s": {k: round(float(np.median(v)), 1) for k, v in rates.items()},
           "speedup": {k: round(float(np.median(v)) / base, 2) for k, v in rates.items()},
           "loadavg": open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else None}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
