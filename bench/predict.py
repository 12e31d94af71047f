"""Inference speed: single-image latency and batched throughput of predict, and REST throughput on loopback.

On PBC cells (``--root``, default ``../shared/data/pbc``; ``--n`` images spread
over the classes, read from disk):

* **latency**: ``WBCPipeline.predict_paths([one path])`` per image, in one
  process with the model loaded once (read, decode, segment, featurize,
  classify), after 3 warm-up calls; median and 95th percentile over
  ``--n-single`` images;
* **batch**: ``predict_paths(all n paths, n_jobs=--jobs)``, images per second
  (``batch_img_per_s``; also with ``n_jobs=1``: ``batch_img_per_s_jobs1``);
* **REST**: ``mlflow models serve`` of the same model as a pyfunc folder on
  127.0.0.1 (``--workers`` uvicorn workers), ``--clients`` threads each posting
  one base64 image per request, back to back, for ``--seconds``; images per
  second answered 200, and the count of errors (non-200 answers, timeouts,
  rows with status ``error``). The clients run in this process, on the same
  cores as the server.

Without ``--model`` a model is trained first (``+experiment=wbc5
data.max_per_class=60 tracking=disabled``: handcrafted features, SVM; its images
are cached features from earlier runs when the cache exists). The last line is
JSON with keys ``latency_median_ms``, ``latency_p95_ms``, ``batch_img_per_s``,
``rest_img_per_s``, ``rest_errors`` (plus the settings).

Usage::

    python bench/predict.py [--model <model dir or pyfunc dir>] [--n 200] [--n-single 100] [--jobs 2]
                            [--clients 20] [--seconds 60] [--workers 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def _train(tmp: Path, per_class: int) -> Path:
    from hydra import compose, initialize_config_dir

    from hybridwbc.config import register_schemas
    from hybridwbc.run import run_experiment

    register_schemas()
    with initialize_config_dir(config_dir=str(ROOT / "hybridwbc" / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=wbc5", f"data.max_per_class={per_class}", "tracking=disabled",
                                           f"paths.root={ROOT}", "progress=false", "eval.n_bootstrap=0",
                                           "features.overlays=false"], return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    from omegaconf import open_dict

    with open_dict(cfg):
        del cfg["hydra"]
    out = run_experiment(cfg, tmp / "run", "wbc5", choices)
    return Path(out["model_dir"])


def _images(root: Path, n: int) -> list[str]:
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    suffixes = (".jpg", ".jpeg", ".png", ".bmp")
    per = [sorted(str(f) for f in c.iterdir() if f.suffix.lower() in suffixes) for c in classes]
    out, k = [], 0
    while len(out) < n and any(per):
        for files in per:
            if k < len(files) and len(out) < n:
                out.append(files[-1 - k])  # from the end of each class: usually not in the training sample
        k += 1
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rest(pyfunc_dir: Path, paths: list[str], clients: int, seconds: float, workers: int, log: Path) -> dict:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", str(pyfunc_dir),
                                 "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)],
                                stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready after 120 s: {log.read_text()[-2000:]}") from exc
                time.sleep(0.5)
        bodies = [json.dumps({"dataframe_split": {"columns": ["path", "image"], "data": [
            [Path(p).name, base64.b64encode(Path(p).read_bytes()).decode("ascii")]]}}).encode() for p in paths]
        # warm every worker
        for b in bodies[: 2 * workers]:
            req = urllib.request.Request(url + "/invocations", data=b, headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=60).read()
        counts = {"ok": 0, "errors": 0}
        lock = threading.Lock()
        stop_at = time.monotonic() + seconds
        latencies: list[float] = []

        def client(k: int) -> None:
            i = k
            while time.monotonic() < stop_at:
                t = time.perf_counter()
                try:
                    req = urllib.request.Request(url + "/invocations", data=bodies[i % len(bodies)],
                                                 headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(req, timeout=30) as r:
                        pred = json.loads(r.read())["predictions"][0]
                    good = r.status == 200 and pred["status"] == "ok"
                except (OSError, ValueError, KeyError):
                    good = False
                with lock:
                    counts["ok" if good else "errors"] += 1
                    latencies.append(time.perf_counter() - t)
                i += clients

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 60)
        elapsed = time.perf_counter() - t0
        return {"rest_img_per_s": counts["ok"] / elapsed, "rest_errors": counts["errors"], "rest_requests":
                counts["ok"] + counts["errors"], "rest_latency_median_ms": 1000 * float(np.median(latencies))
                if latencies else float("nan")}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="a model/ folder or a pyfunc folder (default: train one)")
    ap.add_argument("--root", default=str(ROOT.parent / "shared" / "data" / "pbc"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--n-single", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--train-per-class", type=int, default=60)
    args = ap.parse_args(argv)

    from hybridwbc.serve.pipeline import WBCPipeline
    from hybridwbc.serve.pyfunc import PIPELINE_ARTIFACT, is_pyfunc_dir, save_pyfunc, verify_pyfunc_dir

    root = Path(args.root)
    if not root.is_dir():
        print(f"bench/predict.py: no PBC images at {root}; pass --root", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hybridwbc-bench-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        model = Path(args.model) if args.model else _train(tmp, args.train_per_class)
        train_s = time.perf_counter() - t
        if is_pyfunc_dir(model):
            pyfunc_dir = verify_pyfunc_dir(model)
            pipe = WBCPipeline.load(model / "artifacts" / PIPELINE_ARTIFACT)
        else:
            pipe = WBCPipeline.load(model)
            pyfunc_dir = save_pyfunc(pipe, tmp / "pyfunc")
        paths = _images(root, args.n)
        print(f"model: {model} ({type(pipe.featurizer).__name__} + {type(pipe.estimator).__name__}, "
              f"classes {pipe.classes_}); {len(paths)} images from {root}"
              + (f"; trained in {train_s:.1f} s" if not args.model else ""), flush=True)

        for p in paths[:3]:
            pipe.predict_paths([p])
        lat = []
        for p in paths[: args.n_single]:
            t = time.perf_counter()
            pipe.predict_paths([p])
            lat.append(time.perf_counter() - t)
        lat_ms = 1000 * np.asarray(lat)
        print(f"single image: median {np.median(lat_ms):.1f} ms, p95 {np.percentile(lat_ms, 95):.1f} ms "
              f"over {len(lat_ms)} images", flush=True)

        t = time.perf_counter()
        pipe.predict_paths(paths, n_jobs=1)
        batch1_s = time.perf_counter() - t
        print(f"batch of {len(paths)} (n_jobs=1): {len(paths) / batch1_s:.1f} img/s", flush=True)
        t = time.perf_counter()
        df = pipe.predict_paths(paths, n_jobs=args.jobs)
        batch_s = time.perf_counter() - t
        n_err = int((df["status"] != "ok").sum())
        print(f"batch of {len(paths)} (n_jobs={args.jobs}): {len(paths) / batch_s:.1f} img/s ({n_err} error rows)",
              flush=True)

        rest = _rest(pyfunc_dir, paths, args.clients, args.seconds, args.workers, tmp / "server.log")
        print(f"REST ({args.clients} clients, {args.seconds:.0f} s, {args.workers} workers): "
              f"{rest['rest_img_per_s']:.1f} img/s, {rest['rest_errors']} errors of {rest['rest_requests']} requests, "
              f"median request {rest['rest_latency_median_ms']:.0f} ms", flush=True)
    result = {"latency_median_ms": round(float(np.median(lat_ms)), 2),
              "latency_p95_ms": round(float(np.percentile(lat_ms, 95)), 2),
              "batch_img_per_s": round(len(paths) / batch_s, 2),
              "batch_img_per_s_jobs1": round(len(paths) / batch1_s, 2),
              "rest_img_per_s": round(rest["rest_img_per_s"], 2),
              "rest_errors": int(rest["rest_errors"]), "rest_requests": int(rest["rest_requests"]),
              "batch_error_rows": n_err, "n": len(paths), "n_single": len(lat_ms), "jobs": args.jobs,
              "clients": args.clients, "seconds": args.seconds, "workers": args.workers,
              "featurizer": type(pipe.featurizer).__name__, "estimator": type(pipe.estimator).__name__}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
