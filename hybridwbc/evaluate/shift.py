"""Domain shift: train on one lab's cells, score on another lab's, zero-shot and with a few target labels.

``python -m hybridwbc.run +experiment=domain_shift``. The source is ``cfg.data`` (PBC, the wbc5 classes);
the target is another lab's typed cells (BCCD fields' white cells, :mod:`hybridwbc.data.fieldcells`),
split by field into a *pool* (the only target labels any arm may use) and a *test* part (scored by
every arm, never fitted on). Every arm is a representation under one normalisation:

* ``handcrafted``: the handcrafted features of the normalised image;
* ``cnn:<variant>``: the embeddings of a frozen pretrained backbone (``shift.backbones``: variant ->
  weights file from ``make pretrain``, e.g. trained without and with acquisition augmentation);
* ``hybrid:<variant>``: both, side by side;

times a head (``shift.heads``: the classical heads of the methods, SVM and random forest). The
normaliser of each arm is fitted on source images only, and applied the same way to target images.

For each arm and each ``k`` of ``shift.shots`` the head is refitted on the source rows plus ``k``
labelled target cells per class drawn from the pool (each repeated ``shift.target_repeat`` times;
``k = 0``: the source alone, the zero-shot arm), ``shift.draws`` times with different draws, and
scores every test cell. A test cell that a representation cannot read (no cell found) counts as
wrong (accuracy over all test rows) and is reported apart (coverage).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone

from hybridwbc.errors import ConfigError

__all__ = ["Representation", "pool_test_split", "draw_shots", "score_arm", "shift_rows"]

log = logging.getLogger("hybridwbc")


@dataclass
class Representation:
    """One representation of the source and target rows under one normalisation.

    Attributes
    ----------
    preprocess : str
    name : str
        ``handcrafted``, ``cnn:<variant>`` or ``hybrid:<variant>``.
    source, target : ndarray of shape (n_source, d), (n_target, d), dtype float64
        NaN rows: not readable by this representation.
    """

    preprocess: str
    name: str
    source: np.ndarray
    target: np.ndarray

    @property
    def augmentation(self) -> str:
        return self.name.split(":", 1)[1] if ":" in self.name else "-"


def pool_test_split(y: np.ndarray, fields: np.ndarray, pool_fraction: float, seed: int) -> tuple:
    """``(pool, test)`` row positions of the target cells, whole fields on one side, stratified by class; the
    cells of a class with too few fields to stratify are all test cells.

    Raises
    ------
    ConfigError
        If ``pool_fraction`` is not in (0, 1).
    """
    from hybridwbc.data.splits import holdout_split

    if not 0.0 < float(pool_fraction) < 1.0:
        raise ConfigError(f"shift.pool_fraction must be in (0, 1); received {pool_fraction!r}.")
    y, fields = np.asarray(y, dtype=object), np.asarray(fields, dtype=object)
    k = max(2, int(round(1.0 / min(float(pool_fraction), 1 - float(pool_fraction)))))
    # a class with fewer fields than the split needs cannot be stratified: its cells are all test cells
    rare = [c for c in set(y.tolist()) if len(set(fields[y == c].tolist())) < k]
    common = np.flatnonzero(~np.isin(y, rare))
    a, b = holdout_split(y[common], fields[common], test_size=min(float(pool_fraction), 1 - float(pool_fraction)),
                         seed=int(seed), grouped=True)
    pool, test = (b, a) if float(pool_fraction) <= 0.5 else (a, b)
    return np.sort(common[pool]), np.sort(np.concatenate([common[test], np.flatnonzero(np.isin(y, rare))]))


def draw_shots(y_pool: np.ndarray, usable: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions (in the pool) of ``k`` usable cells per class, drawn without replacement (all of a class's
    cells where it has fewer)."""
    out = []
    for c in sorted(set(y_pool[usable].tolist())):
        members = np.flatnonzero(usable & (y_pool == c))
        out.append(rng.choice(members, size=min(int(k), len(members)), replace=False))
    return np.sort(np.concatenate(out)) if out else np.empty(0, np.int64)


def _fit_predict(head, Xs, ys, gs, Xt, yt, gt, Xtest, repeat: int):
    from hybridwbc.evaluate.protocol import fit_estimator

    if len(Xt):
        Xs = np.vstack([Xs, np.repeat(Xt, repeat, axis=0)])
        ys = np.concatenate([ys, np.repeat(yt, repeat)])
        gs = np.concatenate([gs, np.repeat(gt, repeat)])
    model = fit_estimator(clone(head), Xs, ys, gs)
    return model.predict(Xtest)


def score_arm(rep: Representation, head, y_source, g_source, y_target, fields, pool, test, shots, draws: int,
              repeat: int, seed: int) -> dict:
    """Predictions of one arm on the test cells for every ``k``.

    Returns
    -------
    dict
        ``k -> ndarray (n_draws, n_test) of object``: predicted labels (``None`` for a test cell the
        representation cannot read).
    """
    ok_s = np.isfinite(rep.source).all(1)
    ok_t = np.isfinite(rep.target).all(1)
    Xs, ys, gs = rep.source[ok_s], np.asarray(y_source, object)[ok_s], np.asarray(g_source, object)[ok_s]
    test_ok = ok_t[test]
    out = {}
    for k in shots:
        n = 1 if int(k) == 0 else int(draws)
        preds = np.full((n, len(test)), None, dtype=object)
        for d in range(n):
            rng = np.random.default_rng([int(seed), int(k), d])
            pick = pool[draw_shots(np.asarray(y_target, object)[pool], ok_t[pool], int(k), rng)] if k else \
                np.empty(0, np.int64)
            if not test_ok.any():  # nothing this representation can read: every test cell stays unscored
                continue
            preds[d, test_ok] = _fit_predict(head, Xs, ys, gs, rep.target[pick], np.asarray(y_target, object)[pick],
                                             np.asarray(fields, object)[pick], rep.target[test][test_ok], repeat)
        out[int(k)] = preds
    return out


def _bootstrap(correct: np.ndarray, n_bootstrap: int, ci: float, seed: int) -> tuple:
    """Percentile interval of the mean of ``correct`` ((draws, n) bool) over resampled test cells."""
    rng = np.random.default_rng(seed)
    per_cell = correct.mean(0)
    stats = [per_cell[rng.integers(0, len(per_cell), len(per_cell))].mean() for _ in range(int(n_bootstrap))]
    a = (1 - ci) / 2
    return tuple(float(v) for v in np.quantile(stats, [a, 1 - a]))


def shift_rows(rep: Representation, head_name: str, preds: dict, y_test: np.ndarray, n_bootstrap: int,
               ci: float, seed: int) -> list[dict]:
    """Table rows of one arm: per ``k``, accuracy over all test cells (mean over draws, its sd, bootstrap CI
    over test cells), balanced accuracy, and coverage (test cells scored / all)."""
    from hybridwbc.evaluate.metrics import balanced_accuracy as balanced

    rows = []
    y_test = np.asarray(y_test, dtype=object)
    for k, p in preds.items():
        scored = np.array([v is not None for v in p[0]])
        correct = p == y_test[None, :]
        accs = correct.mean(1)
        lo, hi = _bootstrap(correct, n_bootstrap, ci, seed)
        bal = [balanced(y_test, np.where(scored, d, "<no cell>").astype(object)) for d in p]
        rows.append({"preprocess": rep.preprocess, "representation": rep.name.split(":")[0],
                     "augmentation": rep.augmentation, "head": head_name, "k": int(k), "n_draws": len(p),
                     "accuracy": float(accs.mean()), "accuracy_sd": float(accs.std(ddof=1)) if len(p) > 1 else 0.0,
                     "accuracy_ci_low": lo, "accuracy_ci_high": hi, "balanced_accuracy": float(np.mean(bal)),
                     "accuracy_scored": float(correct[:, scored].mean()) if scored.any() else float("nan"),
                     "n_scored": int(scored.sum()), "n_test": len(y_test)})
    return rows


def _target(cfg, progress: bool):
    """The target lab's typed cells (:func:`~hybridwbc.data.fieldcells.typed_field_cells`) and the coverage."""
    from hybridwbc.data.dataset import resolve_data_root
    from hybridwbc.data.fieldcells import typed_field_cells
    from hybridwbc.errors import DataLayoutError

    root, _ = resolve_data_root(cfg.data.get("root"), cfg.paths.root)
    if root is None or not (root / cfg.shift.target).is_dir():
        raise DataLayoutError(
            f"domain_shift needs the target lab's cells at <data root>/{cfg.shift.target} (BCCD fields with "
            "labels.csv); no real data was found. Set HYBRIDWBC_DATA to the folder holding pbc/ and bccd/.")
    return typed_field_cells(root / cfg.shift.target, cfg.paths.cache_dir, side=int(cfg.shift.cell_side),
                             min_iou=float(cfg.shift.min_iou), progress=progress)


def run_shift(cfg, tracker, run_dir, command: str) -> dict:
    """Every arm of the domain-shift experiment: ``results.csv``, ``results.md``, ``accuracy_vs_k.png``,
    ``target_coverage.csv`` in ``run_dir``, each logged to ``tracker``.

    Returns
    -------
    dict
        ``table`` (DataFrame of every arm and k), ``best`` (the row chosen on the pool), ``coverage``.

    Raises
    ------
    DataLayoutError
        No source data (the synthetic set) or no target folder.
    """
    from hydra.utils import instantiate
    from tqdm.auto import tqdm

    from hybridwbc.data.dataset import load_dataset
    from hybridwbc.data.splits import split_groups
    from hybridwbc.errors import DataLayoutError
    from hybridwbc.features.representations import backbone_record, representations
    from hybridwbc.report.shift import plot_accuracy_vs_k, shift_markdown

    sh = cfg.shift
    if {"cnn", "hybrid"} & set(sh.representations):
        for weights in sh.backbones.values():  # a missing or stale backbone fails now, not after an hour of arms
            backbone_record(weights)
    data = load_dataset(cfg.data, cfg.paths.root, cfg.paths.cache_dir, seed=cfg.seed)
    if data.source != "real":
        raise DataLayoutError("domain_shift found no real source data (the built-in synthetic set was loaded). "
                              "Set HYBRIDWBC_DATA to the folder holding pbc/ and bccd/.")
    source = data.manifest.reset_index(drop=True)
    target, coverage = _target(cfg, cfg.progress)
    target = target[target["label"].isin(set(source["label"]))].reset_index(drop=True)
    coverage.to_csv(run_dir / "target_coverage.csv", index=False)
    both = pd.concat([source, target], ignore_index=True)
    ns = len(source)
    y_s, g_s = source["label"].to_numpy(object), split_groups(source)
    y_t, fields = target["label"].to_numpy(object), target["subject"].to_numpy(object)
    pool, test = pool_test_split(y_t, fields, float(sh.pool_fraction), int(cfg.seed))
    heads = {name: instantiate(node, _convert_="all") for name, node in sh.heads.items()}
    tracker.log_params({"n_source": ns, "n_target": len(target), "n_pool": len(pool), "n_test": len(test),
                        "shots": ",".join(str(k) for k in sh.shots), "draws": int(sh.draws),
                        "target_repeat": int(sh.target_repeat)})
    rows, pool_rows = [], []
    arms = [(p, node) for p, node in sh.preprocess.items()]
    for p, node in tqdm(arms, desc="normalisations", disable=not cfg.progress):
        for name, X in representations(both, ns, node, cfg, dict(sh.backbones), tuple(sh.representations),
                                       progress=cfg.progress):
            rep = Representation(p, name, X[:ns], X[ns:])
            for head_name, head in heads.items():
                # scored on test + pool; the pool's zero-shot answers choose the setting without the test part
                preds = score_arm(rep, head, y_s, g_s, y_t, fields, pool, np.concatenate([test, pool]),
                                  list(sh.shots), int(sh.draws), int(sh.target_repeat), int(cfg.seed))
                on_test = {k: p_[:, :len(test)] for k, p_ in preds.items()}
                rows += shift_rows(rep, head_name, on_test, y_t[test], int(cfg.eval.n_bootstrap), float(cfg.eval.ci),
                                   int(cfg.seed))
                pool_rows += shift_rows(rep, head_name, {0: preds[0][:, len(test):]}, y_t[pool], 1,
                                        float(cfg.eval.ci), int(cfg.seed))
            pd.DataFrame(rows).to_csv(run_dir / "results.csv", index=False)  # partial results survive a crash
    table = pd.DataFrame(rows)
    keys = ["preprocess", "representation", "augmentation", "head"]
    chosen = pd.DataFrame(pool_rows).sort_values("accuracy", ascending=False, kind="stable").iloc[0]
    best = {k: chosen[k] for k in keys}
    table.to_csv(run_dir / "results.csv", index=False)
    plot_accuracy_vs_k(table, best, run_dir / "accuracy_vs_k.png")
    (run_dir / "results.md").write_text(shift_markdown(table, best, coverage, y_t, pool, test, ns, command,
                                                       tracker.run_id))
    for f in ("results.csv", "results.md", "accuracy_vs_k.png", "target_coverage.csv"):
        tracker.log_artifact(run_dir / f)
    _log_best(tracker, table, best)
    return {"table": table, "best": best, "coverage": coverage}


def _log_best(tracker, table: pd.DataFrame, best: dict) -> None:
    """Metrics of the chosen setting (``best_k<k>_accuracy``…) and of no normalisation (``none_…``)."""
    sel = np.logical_and.reduce([table[k] == v for k, v in best.items()])
    base = {**best, "preprocess": "none"}
    sel0 = np.logical_and.reduce([table[k] == v for k, v in base.items()])
    metrics = {}
    for prefix, rows in (("best", table[sel]), ("none", table[sel0])):
        for _, r in rows.iterrows():
            for m in ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "balanced_accuracy"):
                metrics[f"{prefix}_k{int(r['k'])}_{m}"] = float(r[m])
    tracker.log_metrics(metrics)
    tracker.set_tags({f"best.{k}": str(v) for k, v in best.items()})
