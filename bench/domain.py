"""Applicability domain of the all_hem model: held-out C-NMC cells vs PBC cells.

Builds the ``all_hem`` setup as ``python -m hybridwbc.run +experiment=all_hem`` composes it
(C-NMC, handcrafted features through the feature cache, the configured classifier,
subject-grouped 5-fold CV) and measures the applicability domain
(:mod:`hybridwbc.models.domain`, settings from ``eval.domain``):

* ``fold_shares``: per CV split, the share of the held-out subjects' cells that the domain
  fitted on that split's training rows flags (goal <= 0.05);
* ``pbc_share``: the share of PBC cells (``--per-class`` per class, seeded sample) that the
  domain of the model fitted on all C-NMC rows flags (goal >= 0.95), among the cells the
  all_hem featurizer could featurize; ``pbc_share_all`` counts a cell with no cell found as
  flagged too (it gets an error row, never an answer);
* what the all_hem classifier itself answers on those PBC cells (the saturation the domain
  check guards against).

The threshold is the configured training quantile (0.99), not tuned to these files.
The last line is JSON.

Usage::

    HYBRIDWBC_DATA=/path/to/shared/data python bench/domain.py [--per-class 100] [--seed 0]
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


def _data_root() -> Path:
    for p in (os.environ.get("HYBRIDWBC_DATA"), ROOT / ".." / "shared" / "data", "/work/shared/data"):
        if p and Path(p).is_dir():
            return Path(p).resolve()
    raise SystemExit("bench/domain.py needs the real data: set HYBRIDWBC_DATA to the folder holding cnmc/ and pbc/.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-jobs", type=int, default=1)
    args = ap.parse_args(argv)

    from hybridwbc.config import build_estimator, build_featurizer, compose_experiment, enum_value
    from hybridwbc.data.dataset import load_dataset
    from hybridwbc.data.manifest import scan
    from hybridwbc.data.splits import split_groups
    from hybridwbc.evaluate.protocol import final_model, fit_domain, held_out_ood_share, predict_out_of_sample
    from hybridwbc.features.table import design_names, featurize_manifest
    from hybridwbc.models.domain import domain_representation

    data_root = _data_root()
    cfg = compose_experiment("all_hem", [f"paths.root={ROOT}", f"data.root={data_root}",
                                         f"seed={args.seed}", "progress=false"])
    cache = str(ROOT / ".cache" / "hybridwbc" / "features")
    ev, dom = cfg.eval, cfg.eval.domain
    params = {"quantile": float(dom.quantile), "n_neighbors": int(dom.n_neighbors)}
    t = time.perf_counter()
    data = load_dataset(cfg.data, cfg.paths.root, cfg.paths.cache_dir, seed=cfg.seed)
    featurizer = build_featurizer(cfg.features)
    table = featurize_manifest(featurizer, data.manifest, cache_dir=cache, n_jobs=args.n_jobs, progress=False)
    kept = data.manifest.iloc[table.index].reset_index(drop=True)
    y, groups, X = kept["label"].to_numpy(dtype=object), split_groups(kept), table.X
    est = build_estimator(cfg.classifier, cfg.seed, feature_names=design_names("features", table.names))
    protocol = enum_value(ev.protocol)
    pred, splits, fitted = predict_out_of_sample(est, X, y, groups, protocol=protocol, test_size=ev.test_size,
                                                 n_splits=ev.n_splits, grouped=ev.grouped, seed=cfg.seed)
    shares = held_out_ood_share(fitted, splits, X, groups, **params)
    folds = []
    for d, fit, (train, test) in zip(shares["domains"], fitted, splits):
        out = ~d.inside(domain_representation(fit, X[test]))
        folds.append({"n_train": int(len(train)), "n_test": int(len(test)), "flagged": int(out.sum()),
                      "share": round(float(out.mean()), 4), "threshold": round(d.threshold_, 4),
                      "subjects_test": int(len(set(groups[test])))})
    final = final_model(est, fitted, protocol, X, y, groups)
    domain = fit_domain(final, X, groups, **params)
    print(f"== C-NMC: {len(y)} cells, {len(set(groups))} subjects, {len(splits)} folds; held-out flagged "
          f"{shares['ood_share_test']:.4f} (per fold {[f['share'] for f in folds]}); final threshold "
          f"{domain.threshold_:.3f} ({time.perf_counter() - t:.1f} s)", flush=True)

    t = time.perf_counter()
    pbc = scan(data_root / "pbc", "pbc").manifest
    rng = np.random.default_rng(args.seed)
    pick = np.concatenate([rng.choice(np.flatnonzero(pbc["label"].to_numpy() == c),
                                      size=min(args.per_class, int((pbc["label"] == c).sum())), replace=False)
                           for c in sorted(pbc["label"].unique())])
    sample = pbc.iloc[np.sort(pick)].reset_index(drop=True)
    ptable = featurize_manifest(featurizer, sample, cache_dir=cache, n_jobs=args.n_jobs, progress=False)
    labels = sample["label"].to_numpy()[ptable.index]
    R = domain_representation(final, ptable.X)
    dist = domain.distance(R)
    flagged = dist > domain.threshold_
    proba = final.predict_proba(ptable.X)
    pos = list(final.classes_).index("all")
    per_class = {c: round(float(flagged[labels == c].mean()), 4) for c in sorted(set(labels))}
    result = {
        "cnmc": {"n_cells": int(len(y)), "n_subjects": int(len(set(groups))), "folds": folds,
                 "ood_share_test": round(shares["ood_share_test"], 4),
                 "ood_share_test_max": round(shares["ood_share_test_max"], 4),
                 "threshold_final": round(domain.threshold_, 4), "quantile": params["quantile"],
                 "n_neighbors": domain.n_neighbors_},
        "pbc": {"n_sampled": int(len(sample)), "n_featurized": int(len(ptable.index)),
                "n_no_cell": int(len(ptable.skipped)), "pbc_share": round(float(flagged.mean()), 4),
                "pbc_share_all": round(float((flagged.sum() + len(ptable.skipped)) / len(sample)), 4),
                "per_class": per_class,
                "distance_median": round(float(np.median(dist)), 3),
                "distance_min": round(float(dist.min()), 3),
                "p_all_mean": round(float(proba[:, pos].mean()), 4),
                "p_all_std": round(float(proba[:, pos].std()), 4),
                "share_called_all": round(float((proba[:, pos] >= 0.5).mean()), 4),
                "seconds": round(time.perf_counter() - t, 1)},
        "goals": {"held_out_le_0.05": bool(shares["ood_share_test"] <= 0.05),
                  "pbc_ge_0.95": bool(flagged.mean() >= 0.95)},
    }
    print(f"== PBC: {len(sample)} sampled, {len(ptable.index)} featurized, flagged {flagged.mean():.4f} "
          f"(per class {per_class}); the model calls 'all' for {(proba[:, pos] >= 0.5).mean():.3f} of them",
          flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
