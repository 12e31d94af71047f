"""Run one experiment: ``python -m hybridwbc.run +experiment=<name> [key=value ...]``.

This module orchestrates and holds no science: it composes the config, builds
every object, then calls the data layer, the feature table, the evaluation
and the tracker in turn, and writes what they return into the Hydra run folder
(``outputs/<date>/<time>/``), which the tracker logs to MLflow.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from hybridwbc.config import register_schemas
from hybridwbc.errors import HybridWBCError

__all__ = ["main", "run_experiment"]

log = logging.getLogger("hybridwbc")

register_schemas()


def _value(x):
    return getattr(x, "value", x)


def run_experiment(cfg: DictConfig, run_dir: str | Path, experiment: str = "default",
                   choices: dict | None = None, command: str | None = None) -> dict:
    """Featurize, fit, evaluate, save and track one composed config.

    With ``methods`` set in the config, every method is evaluated on the same
    rows and splits, each in a nested MLflow run, and ``comparison.csv`` ranks
    them (with a McNemar test of the best against the runner-up); otherwise
    the single ``classifier`` is evaluated in the run itself.

    Parameters
    ----------
    cfg : DictConfig
        A composed ``conf/config.yaml`` (with an experiment appended or not).
    run_dir : path-like
        Folder for this run's artifacts (the Hydra output folder).
    experiment : str
        Experiment name: the MLflow experiment, unless ``tracking.experiment_name`` is set.
    choices : dict, optional
        Config-group choices (logged as params).
    command : str, optional
        The command line that made the run (logged as the ``command`` tag).

    Returns
    -------
    dict
        ``metrics`` (of the single or the best method), ``run_id``, ``run_dir``,
        ``model_dir``, ``source`` and ``methods`` (name -> metrics, run id).
    """
    import pandas as pd

    from hybridwbc.config import build_estimator, build_featurizer, config_hash
    from hybridwbc.data.dataset import load_dataset
    from hybridwbc.data.manifest import manifest_hash
    from hybridwbc.data.splits import has_subjects, split_groups
    from hybridwbc.errors import DataLayoutError
    from hybridwbc.evaluate import mcnemar
    from hybridwbc.features.table import featurize_manifest
    from hybridwbc.tracking import Tracker, flatten, git_commit, library_versions

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    choices = {k: v for k, v in (choices or {}).items() if v is not None and not k.startswith("hydra")}
    t0 = time.perf_counter()
    tracking = cfg.tracking
    method_cfgs = dict(cfg.methods) if cfg.get("methods") else {cfg.classifier.name: cfg.classifier}
    with Tracker(tracking.enabled, tracking.uri, tracking.artifact_root,
                 tracking.experiment_name or experiment, tracking.run_name) as tracker:
        resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
        tracker.log_artifact(run_dir / "config.yaml")
        params = {f"choice.{k}": v for k, v in choices.items()}
        params.update({k: v for k, v in flatten(resolved).items()
                       if k.split(".")[0] in ("seed", "data", "eval") or k in ("features.name", "classifier.name")})
        params["methods"] = ",".join(method_cfgs)
        tracker.log_params(params)
        tracker.set_tags({"git_commit": git_commit(cfg.paths.root), "experiment": experiment,
                          "command": command or f"python -m hybridwbc.run +experiment={experiment}",
                          "config_hash": config_hash(cfg),
                          "role": "comparison" if len(method_cfgs) > 1 else "single",
                          **{f"version.{k}": v for k, v in library_versions().items()}})

        # 1. build every object before any heavy work: a bad config fails in seconds
        featurizer = build_featurizer(cfg.features)
        estimators = {name: build_estimator(m, cfg.seed) for name, m in method_cfgs.items()}

        # 2. data
        data = load_dataset(cfg.data, cfg.paths.root, cfg.paths.cache_dir, seed=cfg.seed)
        manifest = data.manifest
        tracker.set_tags({"data.source": data.source, "data.root": str(data.root),
                          "data.manifest_hash": manifest_hash(manifest)})
        banner = ("the BUILT-IN SYNTHETIC data set" if data.source == "synthetic"
                  else f"real data at {data.root}")
        log.info("Experiment %r on %s: %d images, classes %s", experiment, banner, len(manifest),
                 manifest["label"].value_counts().sort_index().to_dict())
        manifest.to_csv(run_dir / "manifest.csv", index=False)
        tracker.log_artifact(run_dir / "manifest.csv")
        data_s = time.perf_counter() - t0

        # 3. features (cached by content hash + featurizer settings)
        t = time.perf_counter()
        table = featurize_manifest(featurizer, manifest,
                                   cache_dir=cfg.paths.cache_dir + "/features" if cfg.features.cache else None,
                                   n_jobs=cfg.features.n_jobs, progress=cfg.progress)
        features_s = time.perf_counter() - t
        skipped = pd.concat([data.scan.rejected.assign(stage="scan"), table.skipped.assign(stage="features")],
                            ignore_index=True)
        skipped.to_csv(run_dir / "skipped.csv", index=False)
        tracker.log_artifact(run_dir / "skipped.csv")
        kept = manifest.iloc[table.index].reset_index(drop=True)
        y = kept["label"].to_numpy(dtype=object)
        if len(set(y)) < 2:
            raise DataLayoutError(
                f"After skipping {len(table.skipped)} unreadable or cell-less images, {len(set(y))} class(es) remain "
                f"in {str(data.root)!r}; classification needs two. See skipped.csv in {run_dir}."
            )
        groups = split_groups(kept)
        if cfg.features.overlays:
            from hybridwbc.overlay import manifest_overlays

            if manifest_overlays(featurizer, kept, run_dir / "segmentation_overlays.png",
                                 n_per_class=cfg.eval.n_overlays_per_class, seed=cfg.seed):
                tracker.log_artifact(run_dir / "segmentation_overlays.png")
        common = {"n_images": float(len(manifest)), "n_skipped": float(len(skipped)), "data_s": round(data_s, 3),
                  "features_s": round(features_s, 3), "features_cached": float(table.n_cached)}
        tracker.set_tags({"ci.resampling": "subjects" if has_subjects(kept) else "images"})
        ctx = _Context(cfg, experiment, featurizer, kept, table, y, groups, has_subjects(kept), banner)

        # 4. evaluate each method on the same rows and splits
        results = {}
        for name, est in estimators.items():
            if len(estimators) == 1:
                results[name] = _run_method(ctx, name, method_cfgs[name], est, tracker, run_dir, common)
            else:
                with tracker.child(name) as child:
                    results[name] = _run_method(ctx, name, method_cfgs[name], est, child, run_dir / name, common)
        if len(results) > 1:
            ranked = sorted(results, key=lambda n: -results[n]["metrics"]["balanced_accuracy"])
            rows = []
            for n in ranked:
                r = {"method": n, "run_id": results[n]["run_id"]}
                r.update({k: v for k, v in results[n]["metrics"].items()})
                rows.append(r)
            comp = pd.DataFrame(rows)
            best, second = ranked[0], ranked[1]
            a, b = results[best]["pred"], results[second]["pred"]
            assert np.array_equal(a.rows, b.rows), "methods were evaluated on different rows"
            test = mcnemar(a.y_true, a.y_pred, b.y_pred)
            comp.to_csv(run_dir / "comparison.csv", index=False)
            (run_dir / "mcnemar.json").write_text(json.dumps({"best": best, "runner_up": second, **test}, indent=2))
            tracker.log_metrics({"mcnemar_p_value": test["p_value"], **common})
            tracker.set_tags({"best_method": best, "runner_up": second})
            tracker.log_artifact(run_dir / "comparison.csv")
            tracker.log_artifact(run_dir / "mcnemar.json")
            print(f"== best: {best}; McNemar vs {second}: b={test['b']} c={test['c']} p={test['p_value']:.4g}")
            head = best
        else:
            head = next(iter(results))
    out = results[head]
    return {"metrics": out["metrics"], "run_id": tracker.run_id, "run_dir": run_dir, "model_dir": out["model_dir"],
            "source": data.source,
            "methods": {n: {"metrics": r["metrics"], "run_id": r["run_id"]} for n, r in results.items()}}


class _Context:
    """What every method of one run shares: config, data, feature table, labels and groups."""

    def __init__(self, cfg, experiment, featurizer, kept, table, y, groups, subjects, banner):
        self.cfg, self.experiment, self.featurizer = cfg, experiment, featurizer
        self.kept, self.table, self.y, self.groups = kept, table, y, groups
        self.subjects, self.banner = subjects, banner


def _run_method(ctx: _Context, name: str, method_cfg, estimator, tracker, out_dir: Path, common: dict) -> dict:
    """Evaluate one method, write its artifacts to ``out_dir`` and log them with ``tracker``."""
    from hybridwbc.calibration import calibration_metrics, reliability_png, risk_coverage, risk_coverage_png
    from hybridwbc.data.splits import cross_split_duplicates
    from hybridwbc.evaluate import (aggregate_by_group, evaluate_predictions, fit_estimator, most_confident_errors,
                                    predict_out_of_sample, to_binary)
    from hybridwbc.pipeline import WBCPipeline, design_matrix
    from hybridwbc.plots import confusion_matrix_png, error_gallery_png, roc_png

    import pandas as pd

    cfg, ev = ctx.cfg, ctx.cfg.eval
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if tracker.is_child:
        tracker.log_params({"method": name, "classifier.name": method_cfg.name,
                            "classifier.input": _value(method_cfg.input), "features.name": cfg.features.name})
    input_kind = _value(method_cfg.input)
    X = design_matrix(input_kind, ctx.kept["path"].tolist(), ctx.table.X)
    names = (["path"] if input_kind != "features" else []) + (list(ctx.table.names) if input_kind != "paths" else [])
    wants = {k: names for k in estimator.get_params(deep=True) if k == "feature_names" or k.endswith("__feature_names")}
    if wants:
        estimator.set_params(**wants)
    t = time.perf_counter()
    protocol = _value(ev.protocol)
    pred, splits, fitted = predict_out_of_sample(
        estimator, X, ctx.y, ctx.groups, protocol=protocol, test_size=ev.test_size, n_splits=ev.n_splits,
        grouped=ev.grouped, seed=cfg.seed)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    boot_groups = ctx.groups[pred.rows] if ctx.subjects else None
    result = evaluate_predictions(pred, boot_groups, positive=ev.positive_label, n_bootstrap=ev.n_bootstrap,
                                  ci=ev.ci, seed=cfg.seed)
    metrics = dict(result.metrics)
    title = f"{ctx.experiment}: {cfg.features.name} + {name} ({protocol})"
    if ev.binary_groups:
        bpred = to_binary(pred, OmegaConf.to_container(ev.binary_groups), ev.binary_positive)
        bres = evaluate_predictions(bpred, boot_groups, positive=ev.binary_positive,
                                    n_bootstrap=ev.n_bootstrap, ci=ev.ci, seed=cfg.seed)
        metrics.update({f"binary_{k}": v for k, v in bres.metrics.items()})
        confusion_matrix_png(bres.confusion, bres.classes, out_dir / "confusion_matrix_binary.png", title)
    if ev.subject_level and ctx.subjects:
        spred, _ = aggregate_by_group(pred, ctx.groups[pred.rows])
        sres = evaluate_predictions(spred, None, positive=ev.positive_label, n_bootstrap=ev.n_bootstrap,
                                    ci=ev.ci, seed=cfg.seed)
        metrics.update({f"subject_{k}": v for k, v in sres.metrics.items()})
        confusion_matrix_png(sres.confusion, sres.classes, out_dir / "confusion_matrix_subjects.png",
                             f"{title}, per subject")
    if ev.leaky_reference:
        # The same method on a random cell-level split that ignores subjects: LEAKY, reported only to
        # show how much such a split inflates the score (as in studies that split by cell).
        lpred, _, _ = predict_out_of_sample(estimator, X, ctx.y, ctx.groups, protocol=protocol,
                                            test_size=ev.test_size, n_splits=ev.n_splits, grouped=False,
                                            seed=cfg.seed)
        lres = evaluate_predictions(lpred, None, positive=ev.positive_label, n_bootstrap=ev.n_bootstrap,
                                    ci=ev.ci, seed=cfg.seed)
        metrics.update({f"leaky_{k}": v for k, v in lres.metrics.items()})
    worst = most_confident_errors(pred, ev.n_error_gallery)
    error_gallery_png(ctx.kept["path"].to_numpy()[pred.rows[worst]], pred.y_true[worst], pred.y_pred[worst],
                      pred.proba[worst].max(axis=1), out_dir / "errors_most_confident.png", f"{title}: most confident errors")
    dups = pd.concat([cross_split_duplicates(ctx.kept, tr, te) for tr, te in splits], ignore_index=True)
    metrics["n_cross_split_duplicates"] = float(len(dups))
    if len(dups):
        dups.to_csv(out_dir / "duplicates.csv", index=False)
        log.warning("%d exact duplicate image(s) on both sides of a split (duplicates.csv)", len(dups))
    preds = ctx.kept.iloc[pred.rows][["path", "label", "subject"]].reset_index(drop=True)
    preds.insert(3, "fold", pred.fold)
    preds.insert(4, "predicted", pred.y_pred)
    for j, c in enumerate(pred.classes):
        preds[f"p_{c}"] = pred.proba[:, j]
    preds.to_csv(out_dir / "predictions.csv", index=False)
    result.report.to_csv(out_dir / "per_class_report.csv", index=False)
    metrics.update(calibration_metrics(pred.y_true, pred.proba, pred.classes))
    reliability_png(pred.y_true, pred.proba, pred.classes, out_dir / "reliability.png", title=title)
    risk_coverage(pred.y_true, pred.proba, pred.classes).to_csv(out_dir / "risk_coverage.csv", index=False)
    risk_coverage_png(pred.y_true, pred.proba, pred.classes, out_dir / "risk_coverage.png", title=title)
    confusion_matrix_png(result.confusion, result.classes, out_dir / "confusion_matrix.png", title)
    if len(pred.classes) == 2:
        pos = ev.positive_label or pred.classes[1]
        roc_png(pred.y_true == pos, pred.proba[:, pred.classes.index(pos)], out_dir / "roc.png",
                f"{title}: {pos}")
    eval_s = time.perf_counter() - t

    # the model that is kept: the evaluated one (holdout) or a refit on all rows (cv)
    if protocol == "holdout":
        final = fitted[0]
    else:
        from sklearn.base import clone

        final = fit_estimator(clone(estimator), X, ctx.y, ctx.groups)
    cnn = _trained_cnn(final)
    if cnn is not None:
        from hybridwbc.training_plots import history_metrics, training_curves_png

        for step, row in history_metrics(cnn.history_):
            tracker.log_metrics({f"epoch.{k}": v for k, v in row.items()}, step=step)
        training_curves_png(cnn.history_, out_dir / "training_curves.png", f"{title}: CNN training",
                            best_epoch=cnn.best_epoch_)
        metrics.update({"cnn_fit_s": float(cnn.fit_seconds_), "cnn_best_epoch": float(cnn.best_epoch_),
                        "cnn_val_accuracy": float(cnn.val_accuracy_ if cnn.val_accuracy_ is not None else np.nan)})
    pipeline = WBCPipeline(ctx.featurizer, final, info={
        "experiment": ctx.experiment, "run_id": tracker.run_id, "data": cfg.data.name, "method": name,
        "features": cfg.features.name, "classifier": method_cfg.name}, input_kind=input_kind)
    model_dir = pipeline.save(out_dir / "model")
    if cnn is not None and not (model_dir / "cnn.keras").exists():
        cnn.save_keras(model_dir)  # model/cnn.keras: the trained backbone in Keras format
    metrics.update(common)
    metrics.update({"fit_predict_s": round(fit_s, 3), "eval_s": round(eval_s, 3)})
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    tracker.log_metrics(metrics)
    for f in ("predictions.csv", "per_class_report.csv", "confusion_matrix.png", "confusion_matrix_binary.png",
              "confusion_matrix_subjects.png", "errors_most_confident.png", "roc.png", "metrics.json",
              "duplicates.csv", "reliability.png", "risk_coverage.csv", "risk_coverage.png",
              "training_curves.png"):
        tracker.log_artifact(out_dir / f)
    tracker.log_artifact(model_dir, "model")
    if tracker.run_id is not None and cfg.tracking.log_pyfunc:
        from hybridwbc.serving import log_pyfunc

        tracker.set_tags({"pyfunc_model_uri": log_pyfunc(pipeline).model_uri})
    _summary(ctx.experiment, ctx.banner, cfg.features.name, name, metrics, tracker.run_id, out_dir)
    return {"metrics": metrics, "run_id": tracker.run_id, "model_dir": model_dir, "pred": pred}


def _trained_cnn(estimator):
    """The fitted CNN inside an estimator (itself, ``cnn_``, or a cascade's stage 2), or ``None``."""
    for part in (getattr(estimator, "cnn_", None), getattr(estimator, "embedder_", None),
                 getattr(getattr(estimator, "stage2_", None), "cnn_", None), estimator):
        if part is not None and all(hasattr(part, a) for a in ("history_", "best_epoch_", "save_keras")):
            return part
    return None


def _summary(experiment, banner, features, method, metrics, run_id, run_dir) -> None:
    keys = ["accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "sensitivity", "specificity", "roc_auc"]
    lines = [f"== {experiment}: {features} + {method} on {banner}"]
    for prefix in ("", "binary_", "subject_", "leaky_"):
        for k in keys:
            if prefix + k in metrics:
                lo, hi = metrics.get(f"{prefix}{k}_ci_low"), metrics.get(f"{prefix}{k}_ci_high")
                ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None else ""
                lines.append(f"   {prefix + k:<26} {metrics[prefix + k]:.4f}{ci}")
    lines.append(f"   run dir: {run_dir}")
    lines.append(f"   MLflow run: {run_id or '(tracking disabled)'}")
    print("\n".join(lines), flush=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    choices = dict(hc.runtime.choices)
    experiment = choices.get("experiment") or "default"
    command = " ".join(["python -m hybridwbc.run", *hc.overrides.task])
    try:
        out = run_experiment(cfg, hc.runtime.output_dir, experiment, choices, command)
    except HybridWBCError as exc:
        print(f"hybridwbc: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    return out["metrics"].get("balanced_accuracy")


if __name__ == "__main__":
    main()
