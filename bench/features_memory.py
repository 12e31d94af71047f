"""Peak memory of handcrafted feature extraction over 1,000 vs 6,000 PBC images.

Each size runs in a fresh subprocess that streams the images from disk through
the framework's table layer (:func:`hybridwbc.features.table.featurize_paths`,
no cache, ``--jobs`` worker processes) and reports its peak resident memory,
the main process's (``ru_maxrss``), the largest worker's and the sum over all
processes (``VmHWM`` of each live worker, read from ``/proc`` before the pool
shuts down). Memory should not grow with the number of images: the table
itself is ``n x 203`` floats.

Usage::

    python bench/features_memory.py [--sizes 1000 6000] [--jobs 2]

The last line is JSON: ``{"sizes": [...], "peak_main_mb": [...], "peak_worker_mb": [...],
"peak_total_mb": [...], "ratio_main": r, "ratio_worker": r, "ratio_total": r, "seconds": [...]}``
(ratios: largest size over smallest).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path

def descendants(pid):
    # every live descendant process (Linux /proc), e.g. loky's worker processes
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for k in map(int, kids):
            out += [k] + descendants(k)
    return out

def hwm_mb(pid):
    # peak resident set (VmHWM) of one live process, in MB
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
from hybridwbc.features.handcrafted import HandcraftedFeaturizer
from hybridwbc.features.table import featurize_paths
root, n, jobs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
paths = sorted(str(p) for p in root.rglob("*.jpg"))
paths = (paths * (n // len(paths) + 1))[:n]
t = time.perf_counter()
table = featurize_paths(HandcraftedFeaturizer(), paths, shas=[""] * n, cache_dir=None, n_jobs=jobs, progress=False)
sec = time.perf_counter() - t
workers = [hwm_mb(p) for p in descendants(os.getpid())]  # loky workers are still alive here
print(json.dumps({"n": n, "rows": int(len(table.index)), "seconds": sec,
                  "main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_mb": max(workers + [resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]),
                  "total_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + sum(workers)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 6000])
    ap.add_argument("--jobs", type=int, default=2)
    env_root = os.environ.get("HYBRIDWBC_DATA")
    ap.add_argument("--root", default=str(Path(env_root) / "pbc" if env_root else ROOT.parent / "shared/data/pbc"))
    args = ap.parse_args()
    results = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, args.root, str(n), str(args.jobs)], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{n:>6} images: {r['seconds']:7.1f} s, {r['n'] / r['seconds']:6.1f} img/s, peak main "
              f"{r['main_mb']:7.1f} MB, peak worker {r['worker_mb']:7.1f} MB, all processes "
              f"{r['total_mb']:7.1f} MB", flush=True)
    summary = {
        "sizes": args.sizes, "jobs": args.jobs,
        "peak_main_mb": [round(r["main_mb"], 1) for r in results],
        "peak_worker_mb": [round(r["worker_mb"], 1) for r in results],
        "peak_total_mb": [round(r["total_mb"], 1) for r in results],
        "seconds": [round(r["seconds"], 1) for r in results],
        "ratio_main": round(results[-1]["main_mb"] / results[0]["main_mb"], 3),
        "ratio_worker": round(results[-1]["worker_mb"] / max(results[0]["worker_mb"], 1e-9), 3),
        "ratio_total": round(results[-1]["total_mb"] / results[0]["total_mb"], 3),
    }
    print(f"peak memory ratio {args.sizes[-1]} vs {args.sizes[0]} images: main {summary['ratio_main']}, "
          f"worker {summary['ratio_worker']}, all processes {summary['ratio_total']} (flat = 1.0)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
