"""Sweep wall time: the joblib launcher against the same sweep run sequentially, in one command.

Runs ``python -m hybridwbc.run -m +experiment=<experiment> seed=0..k-1 classifier=<methods>`` twice into
one fresh MLflow store: first with Hydra's basic (sequential) launcher, then with
``hydra/launcher=joblib hydra.launcher.n_jobs=<jobs>`` (loky processes; each job's inner workers are
capped at cores // jobs, see ``hybridwbc/scale/sweep.py``). The two sweeps run the same jobs on the
same cached features (a warm-up run fills the feature cache first, so neither pays for it) but with
the CNN cache off (``backbone.cache_dir=null``: each sweep trains its own CNNs), and
their seeds tables (mean ± sd per method) must agree. The last line is JSON with ``speedup``
(sequential / parallel wall time, medians over ``--repeats`` pairs run in alternating order),
``runs_finished`` (jobs of the parallel sweep that finished),
``identical`` (the two sweeps' per-run balanced accuracies agree), ``max_abs_diff`` (per method, the largest
per-run difference: a CNN trained with fewer TensorFlow threads per job may sum in another order) and the settings.

Usage::

    python bench/sweep.py [--experiment wbc5] [--seeds 5] [--methods svm,cascade] [--max-per-class 30]
                          [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sweep(store: Path, args, name: str, launcher: list[str]) -> float:
    cmd = [sys.executable, "-m", "hybridwbc.run", "-m", f"+experiment={args.experiment}",
           "seed=" + ",".join(map(str, range(args.seeds))), f"classifier={args.methods}",
           f"data.max_per_class={args.max_per_class}", "progress=false", "tracking.log_pyfunc=false",
           "backbone.cache_dir=null",  # every sweep trains its CNNs: a trained-model cache would favour the second
           f"tracking.uri=sqlite:///{store}/mlflow.db", f"tracking.artifact_root={store}/mlartifacts",
           f"hydra.sweep.dir={store}/multirun/{name}", *launcher]
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode:
        sys.exit(f"sweep failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
    return wall


def per_run_scores(store: Path, experiment: str) -> dict:
    """{launcher: {(method, seed): balanced accuracy}} of the store's finished sweep jobs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    out: dict = {}
    for r in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", max_results=5000):
        if r.data.tags.get("role") == "sweep" or "sweep.id" not in r.data.tags:
            continue
        key = (r.data.params.get("classifier.name"), r.data.params.get("seed"))
        out.setdefault(r.data.tags["sweep.launcher"], {})[key] = r.data.metrics.get("balanced_accuracy")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", default="wbc5")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--methods", default="svm,cascade")
    ap.add_argument("--max-per-class", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="pairs of sweeps, the order alternating; medians")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hybridwbc-bench-sweep-") as tmp:
        store = Path(tmp)
        warm = argparse.Namespace(**{**vars(args), "seeds": 1, "methods": args.methods.split(",")[0]})
        sweep(store / "warm", warm, "warm", [])  # fills the shared feature cache
        walls: dict = {"sequential": [], "joblib": []}
        launchers = {"sequential": [], "joblib": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.jobs}"]}
        for i in range(args.repeats):  # alternate the order so a change in machine load hits both alike
            for name in (("sequential", "joblib") if i % 2 == 0 else ("joblib", "sequential")):
                walls[name].append(sweep(store / f"r{i}", args, name, launchers[name]))
        sequential, parallel = (float(np.median(walls[k])) for k in ("sequential", "joblib"))
        scores = per_run_scores(store / "r0", args.experiment)
        seq, par = scores.get("BasicLauncher", {}), scores.get("JoblibLauncher", {})
        identical = set(seq) == set(par) and all(abs(seq[k] - par[k]) < 1e-12 for k in seq)
        diff = {m: max(abs(seq[k] - par[k]) for k in seq if k[0] == m and k in par) for m in {k[0] for k in seq}}
        print(f"largest per-run balanced-accuracy difference, sequential vs joblib, per method: {diff}", flush=True)
        n_jobs = args.seeds * len(args.methods.split(","))
        print(f"walls {walls}", flush=True)
        print(f"sequential {sequential:.1f} s, joblib x{args.jobs} {parallel:.1f} s for {n_jobs} jobs; "
              f"finished {len(par)} of {n_jobs}; per-run scores identical: {identical}", flush=True)
    print(json.dumps({"speedup": round(sequential / parallel, 3), "runs_finished": len(par), "jobs": n_jobs,
                      "sequential_s": round(sequential, 1), "parallel_s": round(parallel, 1),
                      "identical": identical, "max_abs_diff": diff, "n_jobs": args.jobs, "cores": os.cpu_count(),
                      "experiment": args.experiment, "methods": args.methods, "seeds": args.seeds,
                      "max_per_class": args.max_per_class, "repeats": args.repeats}))


if __name__ == "__main__":
    main()
