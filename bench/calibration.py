"""Calibration before and after: ECE, Brier score and log loss of the classical heads on held-out cells.

For each experiment (default ``pbc8`` and ``all_hem``) the config is composed as
``python -m hybridwbc.run +experiment=<name>`` would compose it, the data set is
loaded and featurized through the feature cache, and each head is fitted on the
experiment's training split(s) only (``holdout``: one 80/20 split; ``cv``:
grouped k-fold, whole subjects out) and scored on the held-out cells:

* ``svm``: the project's SVM head as configured (``conf/classifier/svm.yaml``:
  :class:`hybridwbc.calibration.CalibratedModel`, sigmoid on a 20% calibration split);
* ``random_forest``: ``conf/classifier/random_forest.yaml`` (raw forest votes);
* ``random_forest+sigmoid`` / ``random_forest+isotonic`` / ``random_forest+temperature``:
  the forest inside ``CalibratedModel``;
* ``svm@isotonic`` / ``svm@temperature`` (not run by default): that config with
  another ``method``.

``CalibratedModel`` receives the training split's groups (subjects on C-NMC),
so its calibration split never shares a subject with its fitting split.
Reliability diagrams go to ``--out`` (default ``outputs/calibration``). The
last line is JSON: ``{experiment: {head: {ece, brier, log_loss, accuracy,
balanced_accuracy, n_test}}}``.

Usage::

    python bench/calibration.py [--experiments pbc8 all_hem] [--max-per-class 150] [--heads svm random_forest ...]
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

HEADS = ["svm", "random_forest", "random_forest+sigmoid", "random_forest+isotonic",
         "random_forest+temperature"]


def _compose(experiment: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from hybridwbc.config import register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(ROOT / "hybridwbc" / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"+experiment={experiment}", f"paths.root={ROOT}", "progress=false",
                                            *overrides])


def _head(name: str, seed: int):
    from hybridwbc.calibration import CalibratedModel
    from hybridwbc.config import build_estimator

    name, _, inner = name.partition("@")  # svm@temperature: that config with another method
    base, _, method = name.partition("+")
    extra = [f"classifier.estimator.method={inner}"] if inner else []
    cfg = _compose("wbc5", [f"classifier={base}", f"seed={seed}", *extra]).classifier
    est = build_estimator(cfg, seed)
    return CalibratedModel(est, method=method, random_state=seed) if method else est


def _fit(est, X, y, groups):
    import inspect

    from sklearn.model_selection import GridSearchCV

    if isinstance(est, GridSearchCV) or "groups" in inspect.signature(est.fit).parameters:
        return est.fit(X, y, groups=groups)
    return est.fit(X, y)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiments", nargs="+", default=["pbc8", "all_hem"])
    ap.add_argument("--heads", nargs="+", default=HEADS)
    ap.add_argument("--max-per-class", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "outputs" / "calibration"))
    args = ap.parse_args(argv)

    from sklearn.base import clone

    from hybridwbc.calibration import calibration_metrics
    from hybridwbc.config import build_featurizer
    from hybridwbc.data.dataset import load_dataset
    from hybridwbc.data.splits import holdout_split, kfold_splits, split_groups
    from hybridwbc.evaluate import classification_metrics
    from hybridwbc.features.table import featurize_manifest
    from hybridwbc.report.calibration import reliability_png

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for exp in args.experiments:
        overrides = [f"seed={args.seed}"]
        if args.max_per_class:
            overrides.append(f"data.max_per_class={args.max_per_class}")
        cfg = _compose(exp, overrides)
        data = load_dataset(cfg.data, cfg.paths.root, cfg.paths.cache_dir, seed=cfg.seed)
        featurizer = build_featurizer(cfg.features)
        t = time.perf_counter()
        table = featurize_manifest(featurizer, data.manifest, cache_dir=cfg.paths.cache_dir + "/features",
                                   n_jobs=1, progress=False)
        kept = data.manifest.iloc[table.index].reset_index(drop=True)
        y = kept["label"].to_numpy(dtype=object)
        groups = split_groups(kept)
        ev = cfg.eval
        protocol = getattr(ev.protocol, "value", ev.protocol)
        if protocol == "holdout":
            splits = [holdout_split(y, groups, ev.test_size, cfg.seed, ev.grouped)]
        else:
            splits = list(kfold_splits(y, groups, ev.n_splits, cfg.seed, ev.grouped))
        classes = sorted(set(y.tolist()))
        print(f"== {exp} ({data.source}): {len(y)} cells, {len(classes)} classes, {protocol} "
              f"({len(splits)} split(s)); features in {time.perf_counter() - t:.1f} s", flush=True)
        results[exp] = {}
        for head in args.heads:
            t = time.perf_counter()
            est0 = _head(head, cfg.seed)
            rows, probas, preds = [], [], []
            for train, test in splits:
                est = _fit(clone(est0), table.X[train], y[train], groups[train])
                p = np.zeros((len(test), len(classes)))
                for j, c in enumerate(est.classes_):
                    p[:, classes.index(c)] = est.predict_proba(table.X[test])[:, j]
                rows.append(test)
                probas.append(p)
                preds.append(np.asarray(classes, dtype=object)[p.argmax(axis=1)])
            rows, proba, pred = np.concatenate(rows), np.vstack(probas), np.concatenate(preds)
            m = calibration_metrics(y[rows], proba, classes)
            cm = classification_metrics(y[rows], pred, proba, classes)
            m.update({"accuracy": cm["accuracy"], "balanced_accuracy": cm["balanced_accuracy"],
                      "n_test": int(len(rows)), "fit_s": round(time.perf_counter() - t, 1)})
            results[exp][head] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()}
            reliability_png(y[rows], proba, classes, out_dir / f"{exp}_{head}.png", title=f"{exp}: {head}")
            print(f"   {head:<28} ECE {m['ece']:.4f}  Brier {m['brier']:.4f}  log loss {m['log_loss']:.4f}  "
                  f"acc {m['accuracy']:.4f}  bal acc {m['balanced_accuracy']:.4f}  ({m['fit_s']} s)", flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
