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
from omegaconf import DictConfig, OmegaConf

from hybridwbc.config import register_schemas
from hybridwbc.errors import HybridWBCError

__all__ = ["main", "run_experiment"]

log = logging.getLogger("hybridwbc")

register_schemas()


def _value(x):
    return getattr(x, "value", x)


def run_experiment(cfg: DictConfig, run_dir: str | Path, experiment: str = "default",
                   choices: dict | None = None) -> dict:
    """Featurize, fit, evaluate, save and track one composed config.

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

    Returns
    -------
    dict
        ``metrics``, ``run_id``, ``run_dir``, ``model_dir``, ``source``.
    """
    import numpy as np
    import pandas as pd

    from hybridwbc.config import build_estimator, build_featurizer
    from hybridwbc.data.dataset import load_dataset
    from hybridwbc.data.manifest import manifest_hash
    from hybridwbc.data.splits import cross_split_duplicates, has_subjects, split_groups
    from hybridwbc.errors import DataLayoutError
    from hybridwbc.evaluate import evaluate_predictions, fit_estimator, predict_out_of_sample, to_binary
    from hybridwbc.features.table import featurize_manifest
    from hybridwbc.pipeline import WBCPipeline, design_matrix
    from hybridwbc.plots import confusion_matrix_png, roc_png
    from hybridwbc.tracking import Tracker, flatten, git_commit, library_versions

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    choices = {k: v for k, v in (choices or {}).items() if v is not None and not k.startswith("hydra")}
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    tracking = cfg.tracking
    with Tracker(tracking.enabled, tracking.uri, tracking.artifact_root,
                 tracking.experiment_name or experiment, tracking.run_name) as tracker:
        resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
        tracker.log_artifact(run_dir / "config.yaml")
        params = {f"choice.{k}": v for k, v in choices.items()}
        params.update({k: v for k, v in flatten(resolved).items()
                       if k.split(".")[0] in ("seed", "data", "eval") or k in ("features.name", "classifier.name")})
        tracker.log_params(params)
        tracker.set_tags({"git_commit": git_commit(cfg.paths.root), "experiment": experiment,
                          **{f"version.{k}": v for k, v in library_versions().items()}})

        # 1. build every object before any heavy work: a bad config fails in seconds
        featurizer = build_featurizer(cfg.features)
        estimator = build_estimator(cfg.classifier, cfg.seed)

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
        timings["data_s"] = time.perf_counter() - t0

        # 3. features (cached by content hash + featurizer settings)
        t = time.perf_counter()
        table = featurize_manifest(featurizer, manifest,
                                   cache_dir=cfg.paths.cache_dir + "/features" if cfg.features.cache else None,
                                   n_jobs=cfg.features.n_jobs, progress=cfg.progress)
        timings["features_s"] = time.perf_counter() - t
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
        input_kind = _value(cfg.classifier.input)
        X = design_matrix(input_kind, kept["path"].tolist(), table.X)

        # 4. evaluate on out-of-sample predictions
        t = time.perf_counter()
        ev = cfg.eval
        protocol = _value(ev.protocol)
        pred, splits, fitted = predict_out_of_sample(
            estimator, X, y, groups, protocol=protocol, test_size=ev.test_size, n_splits=ev.n_splits,
            grouped=ev.grouped, seed=cfg.seed)
        timings["fit_predict_s"] = time.perf_counter() - t
        boot_groups = groups[pred.rows] if has_subjects(kept) else None
        result = evaluate_predictions(pred, boot_groups, positive=ev.positive_label, n_bootstrap=ev.n_bootstrap,
                                      ci=ev.ci, seed=cfg.seed)
        metrics = dict(result.metrics)
        if ev.binary_groups:
            bpred = to_binary(pred, OmegaConf.to_container(ev.binary_groups), ev.binary_positive)
            bres = evaluate_predictions(bpred, boot_groups, positive=ev.binary_positive,
                                        n_bootstrap=ev.n_bootstrap, ci=ev.ci, seed=cfg.seed)
            metrics.update({f"binary_{k}": v for k, v in bres.metrics.items()})
            confusion_matrix_png(bres.confusion, bres.classes, run_dir / "confusion_matrix_binary.png",
                                 f"{experiment}: {' vs '.join(bres.classes)}")
        dups = pd.concat([cross_split_duplicates(kept, tr, te) for tr, te in splits], ignore_index=True)
        metrics.update({"n_images": float(len(manifest)), "n_skipped": float(len(skipped)),
                        "n_cross_split_duplicates": float(len(dups))})
        if len(dups):
            dups.to_csv(run_dir / "duplicates.csv", index=False)
            log.warning("%d exact duplicate image(s) on both sides of a split (duplicates.csv)", len(dups))

        # 5. artifacts
        preds = kept.iloc[pred.rows][["path", "label", "subject"]].reset_index(drop=True)
        preds.insert(3, "fold", pred.fold)
        preds.insert(4, "predicted", pred.y_pred)
        for j, c in enumerate(pred.classes):
            preds[f"p_{c}"] = pred.proba[:, j]
        preds.to_csv(run_dir / "predictions.csv", index=False)
        result.report.to_csv(run_dir / "per_class_report.csv", index=False)
        confusion_matrix_png(result.confusion, result.classes, run_dir / "confusion_matrix.png",
                             f"{experiment} ({cfg.features.name} + {cfg.classifier.name}, {protocol})")
        if len(pred.classes) == 2:
            pos = ev.positive_label or pred.classes[1]
            roc_png(pred.y_true == pos, pred.proba[:, pred.classes.index(pos)], run_dir / "roc.png",
                    f"{experiment}: {pos} vs rest")
        timings["total_s"] = time.perf_counter() - t0

        # 6. the model that is kept: the evaluated one (holdout) or a refit on all rows (cv)
        if protocol == "holdout":
            final = fitted[0]
        else:
            from sklearn.base import clone

            final = fit_estimator(clone(estimator), X, y, groups)
        model_dir = WBCPipeline(featurizer, final, info={
            "experiment": experiment, "run_id": tracker.run_id, "data": cfg.data.name,
            "features": cfg.features.name, "classifier": cfg.classifier.name}, input_kind=input_kind
        ).save(run_dir / "model")
        metrics.update({k: round(v, 3) for k, v in timings.items()})
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        tracker.log_metrics(metrics)
        for name in ("predictions.csv", "per_class_report.csv", "confusion_matrix.png",
                     "confusion_matrix_binary.png", "roc.png", "metrics.json", "manifest.csv", "duplicates.csv"):
            tracker.log_artifact(run_dir / name)
        tracker.log_artifact(model_dir, "model")
    _summary(experiment, banner, cfg, metrics, tracker.run_id, run_dir)
    return {"metrics": metrics, "run_id": tracker.run_id, "run_dir": run_dir, "model_dir": model_dir,
            "source": data.source}


def _summary(experiment, banner, cfg, metrics, run_id, run_dir) -> None:
    keys = ["accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "sensitivity", "specificity", "roc_auc"]
    lines = [f"== {experiment}: {cfg.features.name} + {cfg.classifier.name} on {banner}"]
    for prefix in ("", "binary_"):
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
    try:
        out = run_experiment(cfg, hc.runtime.output_dir, experiment, choices)
    except HybridWBCError as exc:
        print(f"hybridwbc: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    return out["metrics"].get("balanced_accuracy")


if __name__ == "__main__":
    main()
