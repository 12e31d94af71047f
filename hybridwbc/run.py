"""Run one experiment: ``python -m hybridwbc.run +experiment=<name> [key=value ...]``.

This module orchestrates and holds no science: it composes the config, builds
every object, then calls the data layer, the feature table, the evaluation
(:mod:`hybridwbc.evaluate`, which scores each method and writes its files into
the Hydra run folder ``outputs/<date>/<time>/``), saves the model
(:mod:`hybridwbc.serve`) and hands everything to the tracker (MLflow).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from hybridwbc.cli import print_error
from hybridwbc.config import enum_value, register_schemas
from hybridwbc.errors import HybridWBCError

__all__ = ["main", "run_experiment"]

log = logging.getLogger("hybridwbc")

register_schemas()


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
    from hybridwbc.tracking import Tracker, quiet_third_party, run_name

    quiet_third_party()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    choices = {k: v for k, v in (choices or {}).items() if v is not None and not k.startswith("hydra")}
    t0 = time.perf_counter()
    tracking = cfg.tracking
    if cfg.get("pretrain") is not None:
        return _pretrain(cfg, run_dir, experiment, choices, command)
    if cfg.get("shift") is not None:
        return _shift(cfg, run_dir, experiment, choices, command)
    method_cfgs = dict(cfg.methods) if cfg.get("methods") else {cfg.classifier.name: cfg.classifier}
    label = next(iter(method_cfgs)) if len(method_cfgs) == 1 else f"{len(method_cfgs)} methods"
    name = tracking.run_name or run_name(experiment, label, cfg.seed)
    with Tracker(tracking.enabled, tracking.uri, tracking.artifact_root,
                 tracking.experiment_name or experiment, name) as tracker:
        _track_config(cfg, tracker, run_dir, experiment, choices, command, method_cfgs)
        # 1. build every object before any heavy work: a bad config fails in seconds
        featurizer, estimators = _build(cfg, method_cfgs)
        # 2. data, 3. features (cached by content hash + featurizer settings)
        data, rows, common, featurizer = _data_and_features(cfg, tracker, run_dir, experiment, featurizer, t0)
        # 4. evaluate each method on the same rows and splits
        results = {}
        for method, est in estimators.items():
            if len(estimators) == 1:
                results[method] = _run_method(rows, featurizer, method, method_cfgs[method], est, tracker, run_dir,
                                              common)
            else:
                with tracker.child(run_name(experiment, method, cfg.seed)) as child:
                    results[method] = _run_method(rows, featurizer, method, method_cfgs[method], est, child,
                                                  run_dir / method, common)
        head = _compare(results, tracker, run_dir, common) if len(results) > 1 else next(iter(results))
        if len(results) > 1:
            tracker.log_headline(results[head]["metrics"])
        summary = _final_summary(rows, head, results, name, tracker, run_dir, time.perf_counter() - t0)
        tracker.describe(summary)
    print(summary, flush=True)
    out = results[head]
    return {"metrics": out["metrics"], "run_id": tracker.run_id, "run_dir": run_dir, "model_dir": out["model_dir"],
            "source": data.source, "run_name": name,
            "methods": {n: {"metrics": r["metrics"], "run_id": r["run_id"]} for n, r in results.items()}}


def _tracked(cfg, run_dir: Path, experiment: str, choices: dict, command, label: str):
    """A :class:`~hybridwbc.tracking.Tracker` for a run that is not a method comparison (pretrain, domain
    shift), and the function that logs its config and provenance (:func:`_track_config`) once it has started."""
    from hybridwbc.tracking import Tracker, run_name

    tracking = cfg.tracking
    name = tracking.run_name or run_name(experiment, label, cfg.seed)
    tracker = Tracker(tracking.enabled, tracking.uri, tracking.artifact_root, tracking.experiment_name or experiment,
                      name)
    return tracker, lambda: _track_config(cfg, tracker, run_dir, experiment, choices, command)


def _pretrain(cfg, run_dir: Path, experiment: str, choices: dict, command) -> dict:
    """``+experiment=pretrain``: train the backbone on every image and export it (:mod:`hybridwbc.cnn.pretrain`)."""
    from hybridwbc.cnn.pretrain import pretrain

    command = command or f"python -m hybridwbc.run +experiment={experiment}"
    tracker, start = _tracked(cfg, run_dir, experiment, choices, command, cfg.backbone.backbone)
    with tracker:
        start()
        info = pretrain(cfg, tracker, run_dir, command)
    print(f"Pretrained backbone: {info['path']} (sha256 {info['sha256'][:16]}..., {info['n_images']} images of "
          f"{info['data']}, validation accuracy {info['val_accuracy']}); MLflow run {tracker.run_id}. Use it with "
          f"backbone.weights={info['path']}", flush=True)
    return {"metrics": {"val_accuracy": info["val_accuracy"]}, "run_id": tracker.run_id, "run_dir": run_dir,
            "model_dir": run_dir / "model", "source": info["source"], "run_name": tracker.run_name, "methods": {},
            "pretrained": info}


def _shift(cfg, run_dir: Path, experiment: str, choices: dict, command) -> dict:
    """``+experiment=domain_shift``: every arm on another lab's cells (:mod:`hybridwbc.evaluate.shift`)."""
    from hybridwbc.evaluate.shift import run_shift

    command = command or f"python -m hybridwbc.run +experiment={experiment}"
    tracker, start = _tracked(cfg, run_dir, experiment, choices, command, "arms")
    with tracker:
        start()
        out = run_shift(cfg, tracker, run_dir, command)
    print((run_dir / "results.md").read_text().split("## Zero-shot")[0], flush=True)
    print(f"Domain-shift table: {run_dir / 'results.md'}; MLflow run {tracker.run_id}", flush=True)
    return {"metrics": {}, "run_id": tracker.run_id, "run_dir": run_dir, "model_dir": None, "source": "real",
            "run_name": tracker.run_name, "methods": {}, "shift": out}


def _stage(stage: str, seconds: float, detail: str = "") -> None:
    """The one log line of a finished stage: its name, its wall time and what it produced."""
    log.info("%-28s %7.1f s  %s", stage, seconds, detail)


def _final_summary(rows, head: str, results: dict, name: str, tracker, run_dir: Path, seconds: float) -> str:
    """The run's closing lines (:func:`hybridwbc.report.summary.format_final`)."""
    from hybridwbc.report.summary import format_final

    cfg = rows.cfg
    store = cfg.tracking.uri
    default = store == f"sqlite:///{cfg.paths.root}/mlflow.db"  # the store `make ui` opens
    return format_final(rows.experiment, rows.banner, name, tracker.run_id, run_dir, head, results[head]["metrics"],
                        results[head]["model_dir"], n_methods=len(results), seconds=seconds, store=store,
                        ui="make ui" if default else f"mlflow ui --backend-store-uri {store} --host 127.0.0.1")


def _track_config(cfg, tracker, run_dir: Path, experiment: str, choices: dict, command,
                  method_cfgs: dict | None = None) -> None:
    """Write and log the resolved config; log choices and the config's params; tag the run with its provenance
    (commit, command, config hash, code version, library versions) and, for method runs (``method_cfgs``),
    the methods and the role (``single`` or ``comparison``)."""
    from hybridwbc.config import code_version, config_hash
    from hybridwbc.tracking import flatten, git_commit, library_versions

    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
    tracker.log_artifact(run_dir / "config.yaml")
    params = {f"choice.{k}": v for k, v in choices.items()}
    params.update({k: v for k, v in flatten(resolved).items()
                   if k.split(".")[0] in ("seed", "data", "eval") or k in ("features.name", "classifier.name")})
    if method_cfgs is not None:
        params["methods"] = ",".join(method_cfgs)
    tracker.log_params(params)
    tracker.set_tags({"git_commit": git_commit(cfg.paths.root), "experiment": experiment,
                      "command": command or f"python -m hybridwbc.run +experiment={experiment}",
                      "config_hash": config_hash(cfg), "code_version": code_version(),
                      **({"role": "comparison" if len(method_cfgs) > 1 else "single"} if method_cfgs is not None
                         else {}),
                      **{f"version.{k}": v for k, v in library_versions().items()}})


def _build(cfg, method_cfgs: dict) -> tuple:
    """The featurizer, and each method's estimator built with the names of its design matrix's columns."""
    from hybridwbc.config import build_estimator, build_featurizer, build_preprocess
    from hybridwbc.features.table import design_names

    featurizer = build_featurizer(cfg.features)
    build_preprocess(cfg)  # a bad preprocess setting fails here, before any image is read
    names = list(featurizer.feature_names())
    estimators = {name: build_estimator(m, cfg.seed, feature_names=design_names(enum_value(m.input), names))
                  for name, m in method_cfgs.items()}
    return featurizer, estimators


def _data_and_features(cfg, tracker, run_dir: Path, experiment: str, featurizer, t0: float) -> tuple:
    """Load the data set and featurize it (behind the fitted ``preprocess``, if any); ``(data, RunData of the kept
    rows, run-level metrics, the featurizer used)``."""
    import pandas as pd

    from hybridwbc.cnn.pretrain import check_unseen, weights_files
    from hybridwbc.data.dataset import load_dataset
    from hybridwbc.data.manifest import manifest_hash
    from hybridwbc.data.splits import has_subjects, split_groups
    from hybridwbc.errors import DataLayoutError
    from hybridwbc.evaluate.method import RunData
    from hybridwbc.features.table import featurize_manifest, full_table
    from hybridwbc.tracking import dataset_name

    data = load_dataset(cfg.data, cfg.paths.root, cfg.paths.cache_dir, seed=cfg.seed)
    manifest = data.manifest
    for weights in sorted(weights_files({"methods": cfg.get("methods"), "classifier": cfg.classifier})):
        check_unseen(weights, manifest["sha256"].tolist(), f"data {cfg.data.name!r}")
    digest = manifest_hash(manifest)
    tracker.set_tags({"data.source": data.source, "data.root": str(data.root), "data.manifest_hash": digest})
    tracker.log_dataset(manifest[["path", "label"]], dataset_name(cfg.data.name, data.source), data.root, digest)
    manifest.to_csv(run_dir / "manifest.csv", index=False)
    tracker.log_artifact(run_dir / "manifest.csv")
    data_s = time.perf_counter() - t0
    _stage("data", data_s, f"{len(manifest)} images of {experiment!r} on {_banner(data)}, classes "
           f"{manifest['label'].value_counts().sort_index().to_dict()}")
    t = time.perf_counter()
    featurizer = _preprocessed(cfg, featurizer, manifest.reset_index(drop=True), tracker, run_dir)
    table = featurize_manifest(featurizer, manifest,
                               cache_dir=cfg.paths.cache_dir + "/features" if cfg.features.cache else None,
                               n_jobs=cfg.features.n_jobs, progress=cfg.progress)
    features_s = time.perf_counter() - t
    _stage("features", features_s, f"{len(table.skipped)} images skipped, {table.n_cached} read from the cache")
    skipped = pd.concat([data.scan.rejected.assign(stage="scan"), table.skipped.assign(stage="features")],
                        ignore_index=True)
    skipped.to_csv(run_dir / "skipped.csv", index=False)
    tracker.log_artifact(run_dir / "skipped.csv")
    kept = manifest.reset_index(drop=True)
    features, reasons = full_table(table, kept["path"].tolist())
    y = kept["label"].to_numpy(dtype=object)
    if len(set(y[reasons == ""])) < 2:
        raise DataLayoutError(
            f"After skipping {len(table.skipped)} unreadable or cell-less images, {len(set(y[reasons == '']))} "
            f"class(es) remain in {str(data.root)!r}; classification needs two. See skipped.csv in {run_dir}."
        )
    if cfg.features.overlays:
        from hybridwbc.report.overlay import manifest_overlays

        if manifest_overlays(featurizer, kept[reasons == ""], run_dir / "segmentation_overlays.png",
                             n_per_class=cfg.eval.n_overlays_per_class, seed=cfg.seed):
            tracker.log_artifact(run_dir / "segmentation_overlays.png")
    common = {"n_images": float(len(manifest)), "n_skipped": float(len(skipped)), "data_s": round(data_s, 3),
              "features_s": round(features_s, 3), "features_cached": float(table.n_cached)}
    tracker.set_tags({"ci.resampling": "subjects" if has_subjects(kept) else "images"})
    image_paths = _normalised_images(cfg, featurizer, kept, reasons)
    rows = RunData(cfg=cfg, experiment=experiment, kept=kept, features=features, y=y, groups=split_groups(kept),
                   subjects=has_subjects(kept), banner=_banner(data), skip_reason=reasons,
                   segment=getattr(featurizer, "segment", None), source=data.source, image_paths=image_paths)
    return data, rows, common, featurizer


def _preprocessed(cfg, featurizer, kept, tracker, run_dir: Path):
    """``featurizer`` behind the ``preprocess`` normaliser fitted on the training split's images only (the split
    :func:`~hybridwbc.evaluate.protocol.make_splits` draws for the evaluation, whose model is the one saved);
    ``featurizer`` itself when ``preprocess`` changes nothing."""
    import json

    from hybridwbc.config import build_preprocess
    from hybridwbc.data.splits import split_groups
    from hybridwbc.evaluate.protocol import make_splits
    from hybridwbc.features.preprocessed import PreprocessedFeaturizer

    norm = build_preprocess(cfg)
    if not norm.active:
        return featurizer
    t = time.perf_counter()
    ev = cfg.eval
    train, _ = make_splits(kept["label"].to_numpy(dtype=object), split_groups(kept), "holdout",
                           test_size=ev.test_size, grouped=ev.grouped, seed=cfg.seed)[0]
    norm.fit_files(kept["path"].to_numpy()[train])
    described = norm.describe()
    (run_dir / "preprocess.json").write_text(json.dumps(described, indent=2, sort_keys=True))
    tracker.log_artifact(run_dir / "preprocess.json")
    tracker.set_tags({"preprocess.key": norm.state_key(), "preprocess.n_fit_images": str(norm.n_fit_images_)})
    _stage("preprocess fit", time.perf_counter() - t, f"{norm.method} / scale {norm.scale} on "
           f"{norm.n_fit_images_} of {len(train)} training images (key {norm.state_key()})")
    return PreprocessedFeaturizer(featurizer, norm)


def _normalised_images(cfg, featurizer, kept, reasons):
    """The normalised copies of the images, for methods that read image files (a CNN), or ``None`` (no
    ``preprocess``, or every method reads features). A row whose image could not be normalised becomes
    unusable for them (its reason marks it unreadable)."""
    methods = dict(cfg.methods) if cfg.get("methods") else {cfg.classifier.name: cfg.classifier}
    if not hasattr(featurizer, "normalised_files") or all(enum_value(m.input) == "features" for m in methods.values()):
        return None
    t = time.perf_counter()
    files, failed = featurizer.normalised_files(kept["path"].tolist(), kept["sha256"].tolist(),
                                                cfg.paths.cache_dir + "/preprocessed", progress=cfg.progress)
    for i, reason in failed.items():
        if not str(reasons[i]).startswith("ImageReadError"):
            reasons[i] = f"ImageReadError: no normalised image ({reason})"
    _stage("normalised images", time.perf_counter() - t, f"{len(files) - len(failed)} PNGs for the methods "
           f"reading images, {len(failed)} could not be normalised")
    return files


def _banner(data) -> str:
    return "the BUILT-IN SYNTHETIC data set" if data.source == "synthetic" else f"real data at {data.root}"


def _run_method(rows, featurizer, name: str, method_cfg, estimator, tracker, out_dir: Path, common: dict) -> dict:
    """Evaluate one method (:func:`hybridwbc.evaluate.method.evaluate_method`), save its model and its model
    card, track it."""
    from hybridwbc.evaluate.method import ARTIFACTS, evaluate_method
    from hybridwbc.features.table import design_matrix, design_names
    from hybridwbc.report.card import write_model_card
    from hybridwbc.report.summary import headline
    from hybridwbc.serve.pipeline import CARD_FILE, WBCPipeline

    cfg = rows.cfg
    out_dir = Path(out_dir)
    input_kind = enum_value(method_cfg.input)
    if tracker.is_child:
        tracker.log_params({"method": name, "classifier.name": method_cfg.name,
                            "classifier.input": input_kind, "features.name": cfg.features.name})
    t = time.perf_counter()
    X = design_matrix(input_kind, list(rows.model_paths), rows.features)
    res = evaluate_method(rows, name, method_cfg, estimator, X, out_dir, common,
                          names=design_names(input_kind, featurizer.feature_names()))
    _stage(f"evaluate {name}", time.perf_counter() - t, headline(res.metrics))
    t = time.perf_counter()
    tracker.set_tags(res.tags)
    for step, row in res.epochs:
        tracker.log_metrics(row, step=step)
    pipeline = WBCPipeline(featurizer, res.final, info={
        "experiment": rows.experiment, "run_id": tracker.run_id, "data": cfg.data.name, "method": name,
        "features": cfg.features.name, "classifier": method_cfg.name}, input_kind=input_kind, domain=res.domain)
    model_dir = pipeline.save(out_dir / "model")
    write_model_card(model_dir, rows, name, method_cfg.name, res.metrics, tracker.run_id, tracker.run_name,
                     out_dir / "per_class_report.csv")
    tracker.log_metrics(res.metrics)
    tracker.log_headline(res.metrics)
    for f in ARTIFACTS:
        tracker.log_artifact(out_dir / f)
    tracker.log_artifact(model_dir, "model")
    tracker.log_artifact(model_dir / CARD_FILE)
    if tracker.run_id is not None and cfg.tracking.log_pyfunc:
        from hybridwbc.serve.pyfunc import log_pyfunc

        tracker.set_tags({"pyfunc_model_uri": log_pyfunc(pipeline).model_uri})
    _stage(f"save {name}", time.perf_counter() - t, f"model and {CARD_FILE} in {model_dir}"
           + (", logged to MLflow" if tracker.run_id else ""))
    return {"metrics": res.metrics, "run_id": tracker.run_id, "model_dir": model_dir, "pred": res.pred}


def _compare(results: dict, tracker, run_dir: Path, common: dict) -> str:
    """Rank the methods (:func:`hybridwbc.evaluate.compare.compare_methods`), track the result; the best's name."""
    from hybridwbc.evaluate.compare import compare_methods

    test = compare_methods(results, run_dir)
    best, second = test["best"], test["runner_up"]
    tracker.log_metrics({"mcnemar_p_value": test["p_value"], **common})
    tracker.set_tags({"best_method": best, "runner_up": second})
    tracker.log_artifact(run_dir / "comparison.csv")
    tracker.log_artifact(run_dir / "mcnemar.json")
    log.info("best: %s; McNemar vs %s: b=%s c=%s p=%.4g", best, second, test["b"], test["c"], test["p_value"])
    return best


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    choices = dict(hc.runtime.choices)
    experiment = choices.get("experiment") or "default"
    command = " ".join(["python -m hybridwbc.run", *hc.overrides.task])
    from hybridwbc.scale.sweep import apply_budget, job_budget
    from hybridwbc.serve.workers import available_cores

    capped = apply_budget(cfg, job_budget(hc.mode, hc.get("launcher"), available_cores()))
    if capped:
        log.info("Sweep job %s: inner workers capped so parallel jobs share the cores: %s", hc.job.num,
                 ", ".join(f"{k} {a}->{b}" for k, (a, b) in capped.items()))
    from hybridwbc.tracking import sigterm_fails_runs

    try:
        with sigterm_fails_runs():  # a run stopped from outside ends FAILED in MLflow, not RUNNING
            out = run_experiment(cfg, hc.runtime.output_dir, experiment, choices, command)
    except HybridWBCError as exc:
        sys.exit(print_error(exc))
    return out["metrics"].get("balanced_accuracy")


if __name__ == "__main__":
    main()
