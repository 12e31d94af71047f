"""Peak memory of CNN training and of embedding extraction on 1,000 vs 6,000 images: flat within 10%?

    .venv/bin/python bench/memory.py [--sizes 1000 6000] [--data ../shared/data/pbc] [--width 8]

Each measurement runs in a fresh child process (so peaks do not mix) and reports that process's peak
resident set size (``ru_maxrss``):

* ``train``: ``CNNClassifier.fit`` for one full epoch over N images (the tf.data stream, the on-disk
  decoded-image cache, a 10% validation split), with a narrow compact backbone to keep it short; memory
  of the stream does not depend on the backbone's width;
* ``extract``: ``extract_embeddings`` of N images from disk into a fresh on-disk cache.

The last line is JSON: peak MB per mode and size, and ``<mode>_ratio`` = peak(largest) / peak(smallest)
(target <= 1.10).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _paths(data: Path, n: int):
    import numpy as np

    from hybridwbc.data.io import IMAGE_SUFFIXES

    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < n:
        sys.exit(f"bench/memory.py: {data} holds {len(files)} images, fewer than {n}.")
    pick = np.random.default_rng(0).choice(len(files), size=n, replace=False)
    paths = [str(files[i]) for i in sorted(pick)]
    labels = [Path(p).parent.name for p in paths]
    return paths, labels


def child(mode: str, n: int, data: str, width: int) -> None:
    import numpy as np

    paths, labels = _paths(Path(data), n)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hybridwbc-mem-") as tmp:
        if mode == "train":
            from hybridwbc.cnn.estimators import CNNClassifier

            CNNClassifier(input_size=96, backbone_params={"depth": 4, "width": width}, epochs=1, batch_size=32,
                          validation_fraction=0.1, verbose=0).fit(np.asarray(paths, dtype=object).reshape(-1, 1),
                                                                   np.asarray(labels, dtype=object))
        else:
            from hybridwbc.cnn.build import build_backbone
            from hybridwbc.cnn.embed import extract_embeddings

            model = build_backbone("compact", 96, params={"depth": 4, "width": width})
            res = extract_embeddings(model, paths, 96, cache_dir=tmp, batch_size=64)
            assert len(res.index) == n
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"mode": mode, "n": n, "peak_mb": round(peak_mb, 1), "s": round(time.perf_counter() - t, 1)}))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "pbc"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 6000])
    ap.add_argument("--modes", nargs="+", default=["extract", "train"])
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--child", nargs=2, metavar=("MODE", "N"))
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), args.data, args.width)
        return {}
    out: dict = {}
    for mode in args.modes:
        for n in args.sizes:
            proc = subprocess.run([sys.executable, __file__, "--child", mode, str(n), "--data", args.data,
                                   "--width", str(args.width)], capture_output=True, text=True, check=True)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            out[f"{mode}_{n}_peak_mb"] = row["peak_mb"]
            out[f"{mode}_{n}_s"] = row["s"]
        lo, hi = out[f"{mode}_{min(args.sizes)}_peak_mb"], out[f"{mode}_{max(args.sizes)}_peak_mb"]
        out[f"{mode}_ratio"] = round(hi / lo, 3)
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
