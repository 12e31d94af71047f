"""Embedding extraction speed: the framework (tf.data from disk + cache) vs a bare ``model.predict``.

    .venv/bin/python bench/embed.py [--n 1000] [--data ../shared/data/pbc] [--size 96] [--batch 64]

One command measures, on the same N images and the same backbone (``compact``, as configured in
``conf/classifier/cnn_softmax.yaml``):

* ``bare``: the images are decoded and resized into memory first (not timed), then
  ``model.predict(images, batch_size)`` is timed;
* ``framework``: :func:`hybridwbc.cnn.embed.extract_embeddings` from the files on disk, with a
  fresh embedding cache (hashing, parallel read + decode, Keras, cache writes all timed);
* ``cached``: the same call again, now served from the cache (no Keras).

Each timed pass runs after a warm-up pass on a few images (graph tracing excluded) and the best of
``--repeat`` passes is kept. The last line is JSON: ``framework_img_per_s``, ``bare_img_per_s``,
``ratio`` (framework / bare; target >= 0.85) and ``cached_speedup`` (framework time / cached time).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _images(data: Path, n: int, seed: int = 0) -> list[str]:
    from hybridwbc.data.io import IMAGE_SUFFIXES

    files = sorted(str(p) for p in data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        sys.exit(f"bench/embed.py: no images under {data}; pass --data <folder of images>.")
    rng = np.random.default_rng(seed)
    return [files[i] for i in rng.choice(len(files), size=min(n, len(files)), replace=False)]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "pbc"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=24)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)

    import keras

    from hybridwbc.cnn.build import build_backbone
    from hybridwbc.cnn.embed import extract_embeddings
    from hybridwbc.cnn.images import image_dataset

    paths = _images(Path(args.data), args.n)
    keras.utils.set_random_seed(0)
    model = build_backbone("compact", args.size, params={"depth": args.depth, "width": args.width})

    # preload for the bare baseline with the very same decode/resize (not timed)
    images = np.concatenate([x.numpy() for x, _ in image_dataset(paths, args.size, args.batch)])
    warm = images[: args.batch]
    model.predict(warm, batch_size=args.batch, verbose=0)
    extract_embeddings(model, paths[: args.batch], args.size, batch_size=args.batch)

    bare_s = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        bare = model.predict(images, batch_size=args.batch, verbose=0)
        bare_s.append(time.perf_counter() - t)

    fw_s, cached_s = [], []
    for _ in range(args.repeat):
        cache = Path(tempfile.mkdtemp(prefix="hybridwbc-bench-"))
        try:
            t = time.perf_counter()
            res = extract_embeddings(model, paths, args.size, cache_dir=cache, batch_size=args.batch)
            fw_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            again = extract_embeddings(model, paths, args.size, cache_dir=cache, batch_size=args.batch)
            cached_s.append(time.perf_counter() - t)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    assert again.n_cached == len(paths) and again.n_computed == 0
    n = len(res.index)
    err = float(np.max(np.abs(res.X - bare[res.index]))) if n else float("nan")
    out = {
        "n_images": len(paths), "n_skipped": int(len(res.skipped)), "input_size": args.size, "batch": args.batch,
        "bare_s": round(min(bare_s), 3), "framework_s": round(min(fw_s), 3), "cached_s": round(min(cached_s), 3),
        "max_abs_diff_vs_bare": err,
        "framework_img_per_s": round(n / min(fw_s), 1),
        "bare_img_per_s": round(len(images) / min(bare_s), 1),
    }
    out["ratio"] = round(out["framework_img_per_s"] / out["bare_img_per_s"], 3)
    out["cached_speedup"] = round(min(fw_s) / min(cached_s), 1)
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
