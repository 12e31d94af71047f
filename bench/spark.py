"""Spark batch scoring against ``predict`` on the same PBC images, in one command.

Trains (or takes ``--model``) a wbc5 model (handcrafted features + SVM, ``data.max_per_class=60``), writes a
table of ``--n`` PBC image paths (spread over the classes, read from disk), then scores it twice:
``predict``'s batch path (``WBCPipeline.predict_paths``, ``n_jobs=<cores>``) and ``hybridwbc.scale.spark.score_table``
on ``local[<cores>]`` (``mlflow.pyfunc.spark_udf``, ``env_manager="local"``). Spark's session start is
timed apart from the scoring. The last line is JSON with ``predict_img_per_s``, ``spark_img_per_s``,
``ratio`` (Spark / predict throughput), ``identical`` (same rows, labels, statuses and probabilities
to 1e-9) and the settings.

Usage::

    python bench/spark.py [--model <model dir>] [--n 2000] [--cores 2] [--root ../shared/data/pbc]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def train(tmp: Path) -> str:
    from hybridwbc.config import compose_experiment
    from hybridwbc.run import run_experiment

    cfg = compose_experiment("wbc5", ["data.max_per_class=60", "tracking=disabled", "progress=false"])
    return str(run_experiment(cfg, tmp / "run", "wbc5")["model_dir"])


def image_table(root: Path, n: int, out: Path) -> Path:
    import pandas as pd

    classes = sorted(p for p in root.iterdir() if p.is_dir())
    per = -(-n // len(classes))
    paths = [str(f) for c in classes for f in sorted(c.glob("*.jpg"))[:per]][:n]
    pd.DataFrame({"path": paths}).to_csv(out, index=False)
    return out


def main() -> None:
    import numpy as np
    import pandas as pd

    from hybridwbc.scale.spark import score_table, spark_session
    from hybridwbc.serve.pipeline import WBCPipeline

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--root", default=str(ROOT.parent / "shared" / "data" / "pbc"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hybridwbc-bench-spark-") as tmp:
        tmp = Path(tmp)
        model = args.model or train(tmp)
        table = image_table(Path(args.root), args.n, tmp / "table.csv")
        paths = pd.read_csv(table)["path"].tolist()
        pipeline = WBCPipeline.load(model)
        t = time.perf_counter()  # what `predict` does once it has the paths (its CSV input refuses paths
        want = pipeline.predict_paths(paths, n_jobs=args.cores)  # outside the CSV's folder, as the data are here)
        predict_s = time.perf_counter() - t
        t = time.perf_counter()
        spark = spark_session(f"local[{args.cores}]", app="hybridwbc-bench")
        start_s = time.perf_counter() - t
        t = time.perf_counter()
        score_table(model, str(table), str(tmp / "scored.parquet"), spark=spark, partitions=args.cores * 4)
        spark_s = time.perf_counter() - t
        spark.stop()
        got = pd.read_parquet(tmp / "scored.parquet").sort_values("path", kind="stable").reset_index(drop=True)
        want = want.sort_values("path", kind="stable").reset_index(drop=True)
        probs = [c for c in want.columns if c == "confidence" or c.startswith("p_")]
        identical = (list(got.columns) == list(want.columns) and got["path"].tolist() == want["path"].tolist()
                     and all(got[c].fillna("").tolist() == want[c].fillna("").tolist()
                             for c in ("label", "status", "error"))
                     and np.allclose(got[probs].to_numpy(float), want[probs].to_numpy(float), atol=1e-9,
                                     equal_nan=True))
        n = len(want)
    print(f"predict {n / predict_s:.1f} img/s, Spark local[{args.cores}] {n / spark_s:.1f} img/s "
          f"(+{start_s:.1f} s session start); identical: {identical}", flush=True)
    print(json.dumps({"predict_img_per_s": round(n / predict_s, 2), "spark_img_per_s": round(n / spark_s, 2),
                      "ratio": round(predict_s / spark_s, 3), "identical": bool(identical), "n": n,
                      "errors": int((want["status"] == "error").sum()), "spark_start_s": round(start_s, 1),
                      "cores": args.cores}))


if __name__ == "__main__":
    main()
