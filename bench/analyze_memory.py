"""Peak memory of ``analyze`` over growing numbers of synthetic 640x480 fields: does it stream?

For each size, a fresh process analyses that many synthetic fields (five white cells each, among red cells
and platelets; written once under ``--work``) with a saved model trained on synthetic cells, and reports
its peak resident memory (``ru_maxrss`` of the child). Flat means the largest size's peak is within a few
percent of the smallest's.

Usage::

    python bench/analyze_memory.py [--sizes 100 1000] [--work /tmp/bench_analyze_memory]

The last line printed is JSON: ``{"sizes", "peak_mb", "ratio", "seconds"}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]


def prepare(work: Path, n: int) -> tuple[Path, Path]:
    """A saved synthetic model and a folder of ``n`` synthetic fields (reused when present)."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    from hybridwbc.data.manifest import scan
    from hybridwbc.data.slides import generate_slides
    from hybridwbc.data.synthetic import generate_dataset
    from hybridwbc.features.simple import ColourShapeFeaturizer
    from hybridwbc.features.table import featurize_manifest
    from hybridwbc.serve.pipeline import WBCPipeline

    model = work / "model"
    if not (model / "model.json").is_file():
        generate_dataset(work / "cells", CLASSES, n_per_class=30, size=96)
        m = scan(work / "cells", "folders").manifest
        f = ColourShapeFeaturizer()
        t = featurize_manifest(f, m, progress=False)
        est = RandomForestClassifier(n_estimators=50, random_state=0).fit(t.X, m["label"].iloc[t.index])
        WBCPipeline(f, est).save(model)
    fields = work / f"fields_{n}"
    if not (fields / "truth.csv").is_file():
        rng = np.random.default_rng(0)
        generate_slides(fields, {"slide": [list(rng.choice(CLASSES, 5)) for _ in range(n)]}, cell_size=160)
    return model, fields


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_analyze_memory"))
    ap.add_argument("--n-jobs", type=int, default=1)
    args = ap.parse_args(argv)
    peaks, secs = [], []
    for n in args.sizes:
        model, fields = prepare(args.work, n)
        code = ("import resource, sys; from hybridwbc.serve.analyze import analyze; "
                f"analyze({str(model)!r}, {str(fields / 'slide')!r}, {str(args.work / f'out_{n}')!r}, "
                f"n_jobs={args.n_jobs}, crop=96, window=160, tracking='none'); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        t0 = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        secs.append(round(time.perf_counter() - t0, 1))
        peaks.append(int(out.stdout.strip().splitlines()[-1]) / 1024)
        print(f"{n} fields: peak {peaks[-1]:.1f} MB, {secs[-1]} s (children before: {before / 1024:.1f} MB)")
    res = {"sizes": args.sizes, "peak_mb": [round(p, 1) for p in peaks], "ratio": round(peaks[-1] / peaks[0], 3),
           "seconds": secs}
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
