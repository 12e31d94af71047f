"""Prediction throughput of handcrafted, CNN and cascade models: one process vs all cores.

Trains three small models in the bench, on a PBC subset (``+experiment=wbc5
data.max_per_class=--train-per-class``, features cached in a temporary folder):

* **handcrafted**: the handcrafted features and the SVM head (``classifier=svm``);
* **cnn**: ``classifier=cnn_softmax backbone=tiny`` (32 px, one epoch);
* **cascade**: ``classifier=cascade backbone=tiny`` (stage 1 on granularity, colour
  and CNN embeddings, stage 2 a forest on CNN embeddings).

Every saved model featurizes each image (a CNN model for its applicability domain),
so ``n_jobs`` sets the featurizing workers for all three; the CNN then answers the batch
in this process on TensorFlow's threads. For each model, after a warm-up (model
loaded, worker pool started), ``predict_paths`` of ``--n`` PBC images (from the end of
each class, not in the training sample) with ``n_jobs=1`` and with the default (all
cores), alternating, ``--repeats`` times each; the best run of each counts. The last
line is JSON: ``<kind>_img_per_s_1``, ``<kind>_img_per_s_all``, ``<kind>_speedup`` and
``<kind>_same_predictions`` (both settings give the same probabilities) for each kind,
plus ``cores``, the load average before and after, and the settings.

Usage::

    HYBRIDWBC_DATA=../shared/data nice -n 10 python bench/predict_throughput.py [--n 80] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.peers import loadavg  # noqa: E402
from bench.predict import _images  # noqa: E402

KINDS = {
    "handcrafted": ["classifier=svm"],
    "cnn": ["classifier=cnn_softmax", "backbone=tiny"],
    "cascade": ["classifier=cascade", "backbone=tiny"],
}


def train(tmp: Path, kind: str, per_class: int) -> Path:
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from hybridwbc.config import register_schemas
    from hybridwbc.run import run_experiment

    register_schemas()
    with initialize_config_dir(config_dir=str(ROOT / "hybridwbc" / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=wbc5", f"data.max_per_class={per_class}", "tracking=disabled",
                                           f"paths.root={ROOT}", f"paths.cache_dir={tmp / 'cache'}", "progress=false",
                                           "eval.n_bootstrap=0", "features.overlays=false", *KINDS[kind]],
                      return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return Path(run_experiment(cfg, tmp / f"run_{kind}", "wbc5", choices)["model_dir"])


def measure(model_dir: Path, paths: list[str], repeats: int) -> dict:
    from hybridwbc.serve.pipeline import WBCPipeline
    from hybridwbc.serve.workers import available_cores

    pipe = WBCPipeline.load(model_dir)
    pipe.predict_paths(paths[:4], n_jobs=1)  # loads the model (and TensorFlow)
    pipe.predict_paths(paths[: 4 * available_cores()], n_jobs=None)  # starts the worker pool
    best = {"1": np.inf, "all": np.inf}
    frames = {}
    for _ in range(repeats):
        for key, jobs in (("1", 1), ("all", None)):
            t = time.perf_counter()
            frames[key] = pipe.predict_paths(paths, n_jobs=jobs)
            best[key] = min(best[key], time.perf_counter() - t)
    cols = [c for c in frames["1"].columns if c.startswith("p_")]
    same = bool(np.allclose(frames["1"][cols].to_numpy(float), frames["all"][cols].to_numpy(float), equal_nan=True)
                and (frames["1"]["status"] == frames["all"]["status"]).all())
    return {"img_per_s_1": len(paths) / best["1"], "img_per_s_all": len(paths) / best["all"],
            "speedup": best["1"] / best["all"], "same_predictions": same,
            "error_rows": int((frames["all"]["status"] == "error").sum()),
            "estimator": type(pipe.estimator).__name__}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=None, help="PBC folder (default: $HYBRIDWBC_DATA/pbc or ../shared/data/pbc)")
    ap.add_argument("--n", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--train-per-class", type=int, default=16)
    ap.add_argument("--kinds", default=",".join(KINDS))
    args = ap.parse_args(argv)
    from bench.features import default_root
    from hybridwbc.serve.workers import available_cores

    root = Path(args.root) if args.root else default_root()
    if not root.is_dir():
        print(f"bench/predict_throughput.py: no PBC images at {root}; pass --root or set HYBRIDWBC_DATA",
              file=sys.stderr)
        return 2
    paths = _images(root, args.n)
    result: dict = {"cores": available_cores(), "n": len(paths), "repeats": args.repeats,
                    "loadavg_before": loadavg()}
    with tempfile.TemporaryDirectory(prefix="hybridwbc-throughput-") as tmp:
        for kind in args.kinds.split(","):
            t = time.perf_counter()
            model = train(Path(tmp), kind, args.train_per_class)
            train_s = time.perf_counter() - t
            r = measure(model, paths, args.repeats)
            print(f"{kind} ({r['estimator']}, trained in {train_s:.0f} s): {r['img_per_s_1']:.1f} img/s in one "
                  f"process, {r['img_per_s_all']:.1f} img/s on {result['cores']} cores ({r['speedup']:.2f}x); "
                  f"same predictions: {r['same_predictions']}; {r['error_rows']} error rows", flush=True)
            for k in ("img_per_s_1", "img_per_s_all", "speedup"):
                result[f"{kind}_{k}"] = round(r[k], 3)
            result[f"{kind}_same_predictions"] = r["same_predictions"]
            result[f"{kind}_train_s"] = round(train_s, 1)
    result["loadavg_after"] = loadavg()
    result["cpu_count"] = os.cpu_count()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
