"""Throughput of the handcrafted extractor vs a straightforward reference, on PBC.

Streams ``--n`` PBC images (default 500, spread over the classes) from disk.
For each image, in the same process:

* **fast**: ``read_image`` + :meth:`HandcraftedFeaturizer.featurize` (segment
  once, crop, OpenCV/NumPy family implementations);
* **reference**: ``read_image`` + the same segmentation +
  :func:`hybridwbc.features.reference.reference_features` (scikit-image
  ``regionprops``, ``graycomatrix``/``graycoprops``, ``scipy.stats`` moments
  and a direct transcription of CellProfiler's MeasureGranularity, on the full
  image).

Prints cells per second of both, their ratio and the largest absolute
difference between the two feature vectors; the last line is JSON with keys
``cells_per_s``, ``reference_cells_per_s``, ``ratio``, ``max_abs_diff`` (plus
``n``, ``skipped``, ``jobs``, ``worst_feature``). ``--jobs`` runs the fast
extractor over that many processes (the reference always runs in one).

Usage::

    python bench/features.py [--n 500] [--jobs 1] [--root ../shared/data/pbc]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from hybridwbc.data.io import read_image  # noqa: E402
from hybridwbc.errors import NoCellFoundError  # noqa: E402
from hybridwbc.features.handcrafted import HandcraftedFeaturizer  # noqa: E402
from hybridwbc.features.reference import reference_features  # noqa: E402
from hybridwbc.segment import Segmenter  # noqa: E402


def default_root() -> Path:
    env = os.environ.get("HYBRIDWBC_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "pbc"


def pick(root: Path, n: int) -> list[Path]:
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    lists = [sorted(c.glob("*.jpg")) for c in classes]
    out, i = [], 0
    while len(out) < n and any(i < len(lst) for lst in lists):
        for lst in lists:
            if i < len(lst) and len(out) < n:
                out.append(lst[i * 7 % len(lst)])
        i += 1
    return out


def _fast_one(args):
    feat, path = args
    try:
        return feat.featurize(read_image(path))
    except NoCellFoundError:
        return None


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=default_root())
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args(argv)
    files = pick(args.root, args.n)
    if not files:
        raise SystemExit(f"No PBC images under {args.root}; pass --root.")
    feat = HandcraftedFeaturizer(segmenter=Segmenter(mode="crop"))
    names = feat.feature_names()
    feat.featurize(read_image(files[0]))  # warm-up (OpenCV tables)

    t0 = time.perf_counter()
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs) as ex:
            fast = list(ex.map(_fast_one, [(feat, p) for p in files], chunksize=8))
    else:
        fast = [_fast_one((feat, p)) for p in files]
    t_fast = time.perf_counter() - t0

    t0 = time.perf_counter()
    ref = []
    for path in files:
        image = read_image(path)
        try:
            seg = feat.segment(image)
        except NoCellFoundError:
            ref.append(None)
            continue
        ref.append(reference_features(feat, seg.image, seg.primary))
    t_ref = time.perf_counter() - t0

    diffs = [np.abs(a - b) for a, b in zip(fast, ref) if a is not None and b is not None]
    skipped = sum(a is None for a in fast)
    dmax = np.max(np.vstack(diffs), 0) if diffs else np.zeros(len(names))
    worst = names[int(np.argmax(dmax))]
    res = {
        "cells_per_s": len(files) / t_fast,
        "reference_cells_per_s": len(files) / t_ref,
        "ratio": t_ref / t_fast,
        "max_abs_diff": float(dmax.max()),
        "n": len(files),
        "skipped": skipped,
        "jobs": args.jobs,
        "n_features": len(names),
        "worst_feature": worst,
    }
    print(f"{len(files)} PBC images ({skipped} no cell), {len(names)} features")
    print(f"fast: {res['cells_per_s']:.1f} cells/s ({args.jobs} job(s)); reference: "
          f"{res['reference_cells_per_s']:.1f} cells/s; ratio {res['ratio']:.1f}x; "
          f"max |fast - reference| = {res['max_abs_diff']:.3g} ({worst})")
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
