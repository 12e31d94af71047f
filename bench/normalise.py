"""Image normalisation (``preprocess``): speed on PBC crops, and how far it moves other labs' colours towards PBC's.

1. **Speed.** ``--per-class`` PBC cells per class (a seeded draw, about 300 in all) are normalised by each
   method (``none`` is the baseline; Macenko also with ``rescale=False``; ``scale=cell`` is timed too, it
   segments every cell), the reference
   fitted on ``--fit`` other PBC cells (the training images). Two figures per method:
   ``ips_read_normalise``: images/s read from disk and normalised in ``--n-jobs`` processes (as the feature
   table runs), and ``ips_normalise_1core``: images/s of the normalisation alone, images in memory, one core.
2. **Colour distance to PBC.** The colour family of the handcrafted features (moments of R, G, B, H, S, V,
   L, a, b in the nucleus, the cytoplasm and the whole cell) of the same PBC cells and of every cell of
   ``wbcseg/`` (CellaVision blog and Jiangxi Tecom: other labs, no labels used), with each method fitted
   on the PBC training cells and applied to both. Per feature, the 1-D Wasserstein distance between the
   lab's cells and PBC's, in units of PBC's standard deviation of that feature; averaged per feature group
   (region x colour space) and over all colour features. ``none`` is the distance before normalisation.

The last line is JSON. Usage::

    HYBRIDWBC_DATA=/path/to/shared/data python bench/normalise.py [--per-class 38] [--fit 100] [--n-jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

METHODS = ("none", "reinhard", "macenko", "greyworld")
SPACES = {"R": "RGB", "G": "RGB", "B": "RGB", "H": "HSV", "S": "HSV", "V": "HSV", "L": "Lab", "a": "Lab", "b": "Lab"}


def _data_root() -> Path:
    return Path(os.environ.get("HYBRIDWBC_DATA", ROOT.parent / "shared" / "data"))


def pbc_paths(root: Path, per_class: int, n_fit: int, seed: int) -> tuple[list[str], list[str]]:
    """``(evaluation cells, fit cells)``: disjoint seeded draws, ``per_class`` per class and ``n_fit`` in all."""
    rng = np.random.default_rng(seed)
    classes = sorted(p for p in (root / "pbc").iterdir() if p.is_dir())
    evaluate, rest = [], []
    for c in classes:
        files = sorted(str(p) for p in c.glob("*.jpg"))
        order = rng.permutation(len(files))
        evaluate += [files[i] for i in order[:per_class]]
        rest += [files[i] for i in order[per_class:]]
    fit = [rest[i] for i in sorted(rng.choice(len(rest), n_fit, replace=False))]
    return evaluate, fit


def _normalise_chunk(norm, paths):
    from hybridwbc.data.io import read_image

    return sum(norm.transform_image(read_image(p)).shape[0] > 0 for p in paths)


def speed(norm, paths: list[str], images: list, n_jobs: int) -> dict:
    """Images/s read + normalised in ``n_jobs`` processes, and normalised alone on one core."""
    from joblib import Parallel, delayed

    chunks = [paths[i::n_jobs * 4] for i in range(n_jobs * 4)]
    Parallel(n_jobs=n_jobs)(delayed(_normalise_chunk)(norm, c[:2]) for c in chunks[:n_jobs])  # start the workers
    t = time.perf_counter()
    done = sum(Parallel(n_jobs=n_jobs)(delayed(_normalise_chunk)(norm, c) for c in chunks))
    wall = time.perf_counter() - t
    t = time.perf_counter()
    for im in images:
        norm.transform_image(im)
    alone = time.perf_counter() - t
    return {"ips_read_normalise": round(done / wall, 1),
            "ips_normalise_1core": round(len(images) / alone, 1) if norm.active else None}  # none: the identity


def _colour_chunk(featurizer, images):
    from hybridwbc.errors import HybridWBCError

    out = []
    for im in images:
        try:
            out.append(featurizer.featurize(im))
        except HybridWBCError:
            continue
    return out


def colour_features(featurizer, images: list, n_jobs: int) -> np.ndarray:
    """Colour features of the images where a cell was found: ``(n_found, n_features) float64``."""
    from joblib import Parallel, delayed

    parts = Parallel(n_jobs=n_jobs)(delayed(_colour_chunk)(featurizer, images[i::n_jobs * 2])
                                    for i in range(n_jobs * 2))
    return np.asarray([v for part in parts for v in part], np.float64)


def distances(ref: np.ndarray, other: np.ndarray, names: list[str]) -> dict:
    """Mean Wasserstein distance (in PBC standard deviations) per region x colour space, and over all features."""
    from scipy.stats import wasserstein_distance

    sd = np.maximum(ref.std(0), 1e-9)
    d = np.array([wasserstein_distance(ref[:, j] / sd[j], other[:, j] / sd[j]) for j in range(ref.shape[1])])
    groups: dict[str, list[float]] = {}
    for j, name in enumerate(names):
        region, channel = name.split("__")[1].split("_")[:2]
        groups.setdefault(f"{region}_{SPACES[channel]}", []).append(d[j])
    out = {k: round(float(np.mean(v)), 3) for k, v in sorted(groups.items())}
    out["all"] = round(float(d.mean()), 3)
    return out


def main(argv=None) -> dict:
    from hybridwbc.data.io import read_image
    from hybridwbc.features.handcrafted import HandcraftedFeaturizer
    from hybridwbc.features.preprocessed import PreprocessedFeaturizer
    from hybridwbc.preprocess import ImageNormaliser

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=38)
    ap.add_argument("--fit", type=int, default=100)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    root = _data_root()
    evaluate, fit = pbc_paths(root, args.per_class, args.fit, args.seed)
    images = [read_image(p) for p in evaluate]
    fit_images = [read_image(p) for p in fit]
    labs = {lab: [read_image(p) for p in sorted((root / "wbcseg" / lab / "images").iterdir())]
            for lab in ("cvblog", "tecom")}
    colour = HandcraftedFeaturizer(families=["colour"])
    names = list(colour.feature_names())
    result = {"n_pbc": len(images), "n_fit": len(fit_images), "n_jobs": args.n_jobs,
              "n_wbcseg": {k: len(v) for k, v in labs.items()}, "speed": {}, "distance": {}, "cells_found": {}}
    settings = {m: {"method": m} for m in METHODS}
    settings["macenko_rescale_false"] = {"method": "macenko", "rescale": False}
    settings["none+scale_cell"] = {"scale": "cell"}
    for key, params in settings.items():
        norm = ImageNormaliser(**params, fit_images=args.fit, seed=args.seed).fit(
            fit_images if params.get("method", "none") != "none" else [])
        result["speed"][key] = speed(norm, evaluate, images, args.n_jobs)
        print(key, result["speed"][key], flush=True)
        if norm.scale != "none":
            continue
        feats = PreprocessedFeaturizer(colour, norm)
        ref = colour_features(feats, images, args.n_jobs)
        result["cells_found"][key] = {"pbc": len(ref)}
        result["distance"][key] = {}
        for lab, ims in labs.items():
            other = colour_features(feats, ims, args.n_jobs)
            result["cells_found"][key][lab] = len(other)
            result["distance"][key][lab] = distances(ref, other, names)
            print(key, lab, result["distance"][key][lab]["all"], flush=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
