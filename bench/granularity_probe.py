"""Probe: do granularity features separate eosinophils and basophils on PBC?

Reads ``pbc/eosinophil``, ``pbc/basophil`` and, as ``other``, an equal-sized
sample drawn evenly from the other PBC classes; segments each image once and
computes the granular spectra (:mod:`hybridwbc.features.handcrafted`) and the
colour statistics. Reports 5-fold stratified cross-validated balanced accuracy
of an RBF SVM (StandardScaler + SVC; C and gamma chosen by an inner 3-fold
grid search on the training folds only) for {eosinophil, basophil, other},
on granularity alone and on granularity + colour. Images where no cell is
found are counted and left out.

Usage::

    python bench/granularity_probe.py [--per-class 300] [--seed 0] [--gran-subsample 1] ...

The last line printed is JSON with keys ``granularity``, ``granularity_colour``
(balanced accuracies), ``n`` and ``skipped``.
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
from hybridwbc.segment import Segmenter  # noqa: E402


def default_root() -> Path:
    env = os.environ.get("HYBRIDWBC_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "pbc"


def sample_files(root: Path, per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    out = []
    for label in ("eosinophil", "basophil"):
        files = sorted((root / label).glob("*.jpg"))
        pick = rng.choice(len(files), size=min(per_class, len(files)), replace=False)
        out += [(files[i], label) for i in sorted(pick)]
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in ("eosinophil", "basophil"))
    each = int(np.ceil(per_class / max(1, len(others))))
    pool = []
    for label in others:
        files = sorted((root / label).glob("*.jpg"))
        pick = rng.choice(len(files), size=min(each, len(files)), replace=False)
        pool += [(files[i], "other") for i in sorted(pick)]
    return out + pool[:per_class]


def cv_balanced_accuracy(x, y, seed: int) -> float:
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    inner = GridSearchCV(
        make_pipeline(StandardScaler(), SVC(kernel="rbf", class_weight="balanced")),
        {"svc__C": [1.0, 10.0, 100.0], "svc__gamma": ["scale", 0.3, 0.03, 0.003]},
        cv=StratifiedKFold(3, shuffle=True, random_state=seed),
        scoring="balanced_accuracy",
        n_jobs=1,
    )
    outer = StratifiedKFold(5, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(inner, x, y, cv=outer, scoring="balanced_accuracy", n_jobs=1)))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=default_root())
    ap.add_argument("--per-class", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gran-length", type=int, default=8)
    ap.add_argument("--gran-element", type=int, default=10)
    ap.add_argument("--gran-subsample", type=int, default=1)
    ap.add_argument("--gran-channels", default="gray,g")
    args = ap.parse_args(argv)
    feat = HandcraftedFeaturizer(
        families=("granularity", "colour"), segmenter=Segmenter(mode="crop"), gran_length=args.gran_length,
        gran_element=args.gran_element, gran_subsample=args.gran_subsample,
        gran_channels=tuple(args.gran_channels.split(",")))
    names = feat.feature_names()
    gran_cols = [i for i, n in enumerate(names) if n.startswith("granularity__")]
    files = sample_files(args.root, args.per_class, args.seed)
    if not files:
        raise SystemExit(f"No PBC images under {args.root}; pass --root.")
    rows, labels, skipped = [], [], 0
    t0 = time.perf_counter()
    for path, label in files:
        try:
            rows.append(feat.featurize(read_image(path)))
            labels.append(label)
        except NoCellFoundError:
            skipped += 1
    t_feat = time.perf_counter() - t0
    x = np.vstack(rows)
    y = np.array(labels)
    acc_g = cv_balanced_accuracy(x[:, gran_cols], y, args.seed)
    acc_gc = cv_balanced_accuracy(x, y, args.seed)
    counts = {c: int((y == c).sum()) for c in ("eosinophil", "basophil", "other")}
    print(f"PBC {counts}, skipped (no cell) {skipped}, features {t_feat:.1f} s "
          f"({len(files) / t_feat:.1f} images/s)")
    print(f"5-fold CV balanced accuracy, RBF SVM: granularity alone {acc_g:.3f}; "
          f"granularity + colour {acc_gc:.3f}")
    res = {"granularity": acc_g, "granularity_colour": acc_gc, "n": int(len(y)), "skipped": skipped,
           "settings": {k: getattr(args, k) for k in ("per_class", "gran_length", "gran_element",
                                                       "gran_subsample", "gran_channels")}}
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
