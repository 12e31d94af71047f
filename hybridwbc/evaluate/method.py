"""The evaluation of one method of a run, and the files it writes.

:func:`evaluate_method` takes one built estimator and what every method of a run shares
(:class:`RunData`: the kept rows, the feature table, labels, groups), and

1. predicts every row out of sample (:func:`~hybridwbc.evaluate.protocol.predict_out_of_sample`);
   the splits are drawn over all rows, so a test row the method cannot score (no cell found for a
   method that needs segmentation) is a *skipped* row of its coverage, never silently dropped;
2. scores the predictions per cell on the scored rows and on all test rows (a skipped row counted
   wrong: the ``all_`` metrics), and where the config asks also collapsed to binary groups, per
   subject, and on a LEAKY random cell split of the same rows (reported only to show how much such a
   split inflates the score); each variant records how its interval was resampled
   (:data:`CI_RESAMPLING` tags), and cross-validation also logs each split's scores (``split<k>_``);
3. writes ``predictions.csv``, ``per_class_report.csv``, ``risk_coverage.csv``, ``duplicates.csv``
   (exact duplicates across a split) and the figures of :mod:`hybridwbc.report`;
4. keeps the final model (:func:`~hybridwbc.evaluate.protocol.final_model`) and, when it holds a
   trained CNN, its training curves;
5. fits the applicability domain per training split (the share of held-out rows it flags is
   ``ood_share_test``) and, on the final model's training rows only, the domain saved with it;
6. writes the explanations (:mod:`hybridwbc.evaluate.explanations`: a Grad-CAM gallery for a CNN, the
   permutation importance of the feature families for handcrafted features) and ``metrics.json``.

It returns a :class:`MethodResult`; saving the model and tracking are the caller's (``run.py``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hybridwbc.config import enum_value
from hybridwbc.evaluate.explanations import FILES as EXPLANATION_FILES
from hybridwbc.evaluate.explanations import write_explanations
from hybridwbc.evaluate.metrics import aggregate_by_group, evaluate_predictions, most_confident_errors, to_binary
from hybridwbc.evaluate.protocol import (
    Predictions,
    final_model,
    fit_domain,
    held_out_ood_share,
    predict_out_of_sample,
    with_skipped,
)
from hybridwbc.models.parts import trained_cnn

__all__ = ["RunData", "MethodResult", "evaluate_method", "ARTIFACTS", "SPLIT_METRICS"]

log = logging.getLogger("hybridwbc")

#: Files a method may write into its folder, in the order they are logged (those that exist).
ARTIFACTS = ("predictions.csv", "per_class_report.csv", "confusion_matrix.png", "confusion_matrix_binary.png",
             "confusion_matrix_subjects.png", "errors_most_confident.png", "roc.png", "metrics.json",
             "duplicates.csv", "reliability.png", "risk_coverage.csv", "risk_coverage.png", "training_curves.png",
             *EXPLANATION_FILES)


@dataclass
class RunData:
    """What every method of one run shares.

    Attributes
    ----------
    cfg : DictConfig
        The composed config (``eval``, ``seed``, ``features.name`` are read).
    experiment : str
    kept : DataFrame
        Every manifest row (every image the scan accepted), in feature-table order.
    features : ndarray of shape (n, n_features), float64
        NaN rows where the featurizer skipped the image (see ``skip_reason``).
    y, groups : ndarray of shape (n,), object
        Labels, and split groups (subjects, else content hashes).
    subjects : bool
        Whether the rows carry subject ids (bootstrap and per-subject scores resample them).
    banner : str
        Where the data came from, for the run's summary lines.
    skip_reason : ndarray of shape (n,), object, optional
        Why the featurizer skipped a row (``""``: featurized).
    source : {"real", "synthetic"}
        Whether the rows are real images or the built-in synthetic stand-in (model cards say which).
    segment : callable ``image -> Segmentation``, optional
        The run's segmentation (outlines in the explanation gallery).
    image_paths : ndarray of shape (n,), object, optional
        The files a method reading images (a CNN) reads: the normalised copies where a ``preprocess`` is
        fitted (:meth:`hybridwbc.features.preprocessed.PreprocessedFeaturizer.normalised_files`); default
        ``kept["path"]``.
    """

    cfg: object
    experiment: str
    kept: pd.DataFrame
    features: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    subjects: bool
    banner: str = ""
    skip_reason: np.ndarray | None = None
    segment: object = None
    source: str = "real"
    image_paths: np.ndarray | None = None

    @property
    def model_paths(self) -> np.ndarray:
        """The image files a method reading images gets, ``(n,) object`` (see ``image_paths``)."""
        return self.kept["path"].to_numpy(dtype=object) if self.image_paths is None else self.image_paths

    def usable(self, input_kind: str) -> np.ndarray:
        """Rows a method with this ``classifier.input`` can fit on and score, ``(n,) bool``.

        Methods that read features need a featurized row; a CNN reading the image itself needs only
        a readable image (a cell the segmentation missed is still scored).
        """
        reason = (np.full(len(self.y), "", dtype=object) if self.skip_reason is None
                  else np.asarray(self.skip_reason, dtype=object))
        if input_kind == "paths":
            return np.array([not str(r).startswith("ImageReadError") for r in reason], dtype=bool)
        return reason == ""


@dataclass
class MethodResult:
    """What :func:`evaluate_method` found.

    Attributes
    ----------
    metrics : dict of str to float
        Everything written to ``metrics.json``.
    pred : Predictions
        The out-of-sample predictions (per cell).
    final : fitted estimator
        The model to keep.
    epochs : list of (int, dict)
        Per-epoch CNN metrics (``epoch.<name>``) for a tracker; empty without a CNN.
    tags : dict of str to str
        ``ci.resampling.<variant>``: what each variant's bootstrap resampled.
    domain : ApplicabilityDomain or None
        Fitted on the final model's training rows (``None`` when ``eval.domain.enabled`` is false).
    """

    metrics: dict
    pred: Predictions
    final: object
    epochs: list = field(default_factory=list)
    tags: dict = field(default_factory=dict)
    domain: object = None


#: Metrics logged per split under cross-validation (``split<k>_<metric>``), for repeated-split tables.
SPLIT_METRICS = ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro")


def evaluate_method(data: RunData, name: str, method_cfg, estimator, X: np.ndarray, out_dir, common: dict,
                    names=None) -> MethodResult:
    """Evaluate one method on ``X`` (its design matrix of ``data``'s rows, whose columns ``names`` names) and
    write its files to ``out_dir``.

    ``common`` (run-level numbers: images, skipped, data and feature times) is added to the metrics.
    Times: ``fit_predict_s`` (the evaluated splits), ``leaky_fit_predict_s`` (the leaky reference's fits),
    ``refit_s`` (the final model under cross-validation), ``eval_s`` (metrics, intervals, figures only) and
    ``cnn_fit_s`` (CNN training inside all of these, trainings read from the cache excluded).
    """
    cfg, ev = data.cfg, data.cfg.eval
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    protocol = enum_value(ev.protocol)
    usable = data.usable(enum_value(method_cfg.input))
    t = time.perf_counter()
    pred, splits, fitted = predict_out_of_sample(
        estimator, X, data.y, data.groups, protocol=protocol, test_size=ev.test_size, n_splits=ev.n_splits,
        grouped=ev.grouped, seed=cfg.seed, usable=usable)
    times = {"fit_predict_s": time.perf_counter() - t, "leaky_fit_predict_s": 0.0}
    cnn_s = _cnn_seconds(fitted)
    title = f"{data.experiment}: {cfg.features.name} + {name} ({protocol})"
    metrics, result, tags, leaky = _scores(data, pred, estimator, X, usable, out_dir, title, times)
    cnn_s += _cnn_seconds(leaky)
    t = time.perf_counter()
    _write_predictions(data, pred, splits, result, metrics, out_dir, title)
    times["eval_s"] = time.perf_counter() - t + times.pop("scores_s")
    t = time.perf_counter()
    final = final_model(estimator, fitted, protocol, X, data.y, data.groups, usable)
    times["refit_s"] = time.perf_counter() - t
    if protocol != "holdout":
        cnn_s += _cnn_seconds([final])
    epochs = _cnn_report(final, metrics, out_dir, title)
    domain = _domain(data, fitted, splits, final, protocol, X, usable, metrics)
    t = time.perf_counter()
    metrics.update(write_explanations(data, enum_value(method_cfg.input), pred, splits, fitted, X, names, usable,
                                      out_dir, title))
    times["explain_s"] = time.perf_counter() - t
    metrics.update(common)
    metrics.update({k: round(v, 3) for k, v in times.items()})
    if trained_cnn(final) is not None:
        metrics["cnn_fit_s"] = round(cnn_s, 3)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return MethodResult(metrics=metrics, pred=pred, final=final, epochs=epochs, tags=tags, domain=domain)


def _domain(data: RunData, fitted: list, splits: list, final, protocol: str, X, usable, metrics: dict):
    """Held-out share flagged per split (``ood_share_test``, over the rows the method scored) and the final
    model's domain (its training rows only)."""
    settings = data.cfg.eval.get("domain") if hasattr(data.cfg.eval, "get") else None
    if settings is None or not settings.enabled:
        return None
    params = {"quantile": float(settings.quantile), "n_neighbors": int(settings.n_neighbors)}
    splits = [(train[usable[train]], test[usable[test]]) for train, test in splits]
    shares = held_out_ood_share(fitted, splits, X, data.groups, **params)
    metrics.update({k: v for k, v in shares.items() if k != "domains"})
    if protocol == "holdout":  # the final model is the split's: its domain is that split's
        return shares["domains"][0]
    return fit_domain(final, X[usable], data.groups[usable], **params)


def _cnn_seconds(fitted) -> float:
    """Seconds spent training the CNNs inside fitted estimators (trainings read from the cache count 0)."""
    total = 0.0
    for est in fitted:
        cnn = trained_cnn(est)
        if cnn is not None and not getattr(cnn, "from_cache_", False):
            total += float(getattr(cnn, "fit_seconds_", 0.0))
    return total


def _coverage(pred: Predictions) -> dict:
    """Test rows of the splits, those scored and those skipped (no cell found, unreadable)."""
    n_scored, n_skipped = len(pred.rows), len(pred.skipped)
    n = n_scored + n_skipped
    return {"n_test_rows": float(n), "n_scored": float(n_scored), "n_skipped_test": float(n_skipped),
            "coverage": float(n_scored / n) if n else float("nan")}


def _split_scores(apred: Predictions, protocol: str) -> dict:
    """Each split's scores on all its test rows (``split<k>_<metric>``; a skipped row counts wrong, as in the
    ranking) under cross-validation; ``{}`` otherwise. ``apred`` comes from :func:`with_skipped`."""
    from hybridwbc.evaluate.metrics import classification_metrics

    if protocol != "cv":
        return {}
    out = {}
    for k in np.unique(apred.fold):
        on = apred.fold == k
        m = classification_metrics(apred.y_true[on], apred.y_pred[on], None, apred.classes)
        out.update({f"split{int(k)}_{key}": m[key] for key in SPLIT_METRICS})
    return out


#: What each variant's bootstrap interval resamples, by metric prefix (``{unit}``: subjects where the
#: rows have subject ids, else images). The leaky split ignores subjects, so its rows are resampled as cells.
CI_RESAMPLING = {"": "{unit}", "all_": "{unit}", "binary_": "{unit}", "subject_": "subjects",
                 "leaky_": "cells (the leaky split ignores subjects)"}


def _scores(data: RunData, pred: Predictions, estimator, X, usable, out_dir: Path, title: str, times: dict
            ) -> tuple:
    """``(metrics, per-cell result, tags, leaky fitted estimators)``: per-cell metrics on the scored rows and
    on all test rows, coverage, per-split scores, plus the binary, per-subject and leaky variants the config
    asks for. ``times`` receives ``leaky_fit_predict_s`` and ``scores_s``."""
    from omegaconf import OmegaConf

    from hybridwbc.report.plots import confusion_matrix_png

    t0 = time.perf_counter()
    cfg, ev = data.cfg, data.cfg.eval
    kw = {"positive": ev.positive_label, "n_bootstrap": ev.n_bootstrap, "ci": ev.ci, "seed": cfg.seed}
    boot_groups = data.groups[pred.rows] if data.subjects else None
    result = evaluate_predictions(pred, boot_groups, **kw)
    metrics = dict(result.metrics)
    metrics.update(_coverage(pred))
    apred = with_skipped(pred, data.y)
    metrics.update(_split_scores(apred, enum_value(ev.protocol)))
    if len(pred.skipped):
        ares = evaluate_predictions(apred, data.groups[apred.rows] if data.subjects else None, **kw).metrics
    else:  # every test row was scored: the same numbers
        ares = result.metrics
    metrics.update({f"all_{k}": v for k, v in ares.items()})
    variants = ["", "all_"]
    if ev.binary_groups:
        # on all test rows (a skipped row counts wrong), like the ranking
        bpred = to_binary(apred, OmegaConf.to_container(ev.binary_groups), ev.binary_positive)
        bres = evaluate_predictions(bpred, data.groups[apred.rows] if data.subjects else None,
                                    **{**kw, "positive": ev.binary_positive})
        metrics.update({f"binary_{k}": v for k, v in bres.metrics.items()})
        confusion_matrix_png(bres.confusion, bres.classes, out_dir / "confusion_matrix_binary.png", title)
        variants.append("binary_")
    if ev.subject_level and data.subjects:
        spred, _ = aggregate_by_group(pred, data.groups[pred.rows])
        sres = evaluate_predictions(spred, None, **kw)
        metrics.update({f"subject_{k}": v for k, v in sres.metrics.items()})
        confusion_matrix_png(sres.confusion, sres.classes, out_dir / "confusion_matrix_subjects.png",
                             f"{title}, per subject")
        variants.append("subject_")
    leaky = []
    if ev.leaky_reference:
        # The same method on a random cell-level split that ignores subjects: LEAKY, reported only to
        # show how much such a split inflates the score (as in studies that split by cell).
        t = time.perf_counter()
        lpred, _, leaky = predict_out_of_sample(estimator, X, data.y, data.groups,
                                                protocol=enum_value(ev.protocol), test_size=ev.test_size,
                                                n_splits=ev.n_splits, grouped=False, seed=cfg.seed, usable=usable)
        times["leaky_fit_predict_s"] = time.perf_counter() - t
        t0 += times["leaky_fit_predict_s"]
        lres = evaluate_predictions(lpred, None, **kw)
        metrics.update({f"leaky_{k}": v for k, v in lres.metrics.items()})
        variants.append("leaky_")
    unit = "subjects" if data.subjects else "images"
    tags = {f"ci.resampling.{v.rstrip('_') or 'cell'}": CI_RESAMPLING[v].format(unit=unit) for v in variants}
    times["scores_s"] = time.perf_counter() - t0
    return metrics, result, tags, leaky


def _write_predictions(data: RunData, pred: Predictions, splits, result, metrics: dict, out_dir: Path,
                       title: str) -> None:
    """The error gallery, duplicates, predictions, per-class report, calibration numbers and figures."""
    from hybridwbc.calibration import calibration_metrics, risk_coverage
    from hybridwbc.data.splits import cross_split_duplicates
    from hybridwbc.report.calibration import reliability_png, risk_coverage_png
    from hybridwbc.report.plots import confusion_matrix_png, error_gallery_png, roc_png

    ev = data.cfg.eval
    worst = most_confident_errors(pred, ev.n_error_gallery)
    error_gallery_png(data.kept["path"].to_numpy()[pred.rows[worst]], pred.y_true[worst], pred.y_pred[worst],
                      pred.proba[worst].max(axis=1), out_dir / "errors_most_confident.png",
                      f"{title}: most confident errors")
    dups = pd.concat([cross_split_duplicates(data.kept, tr, te) for tr, te in splits], ignore_index=True)
    metrics["n_cross_split_duplicates"] = float(len(dups))
    if len(dups):
        dups.to_csv(out_dir / "duplicates.csv", index=False)
        log.warning("%d exact duplicate image(s) on both sides of a split (duplicates.csv)", len(dups))
    preds = data.kept.iloc[pred.rows][["path", "label", "subject"]].reset_index(drop=True)
    preds.insert(3, "fold", pred.fold)
    preds.insert(4, "predicted", pred.y_pred)
    for j, c in enumerate(pred.classes):
        preds[f"p_{c}"] = pred.proba[:, j]
    preds["status"], preds["reason"] = "scored", ""
    if len(pred.skipped):
        skipped = data.kept.iloc[pred.skipped][["path", "label", "subject"]].reset_index(drop=True)
        skipped.insert(3, "fold", pred.skipped_fold)
        skipped["status"] = "skipped"
        skipped["reason"] = (np.asarray(data.skip_reason, dtype=object)[pred.skipped]
                             if data.skip_reason is not None else "")
        preds = pd.concat([preds, skipped], ignore_index=True)
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


def _cnn_report(final, metrics: dict, out_dir: Path, title: str) -> list:
    """Training curves and CNN numbers of the trained CNN inside ``final`` (none: ``[]``); the epoch metrics."""
    cnn = trained_cnn(final)
    if cnn is None:
        return []
    from hybridwbc.report.training import history_metrics, training_curves_png

    epochs = [(step, {f"epoch.{k}": v for k, v in row.items()}) for step, row in history_metrics(cnn.history_)]
    training_curves_png(cnn.history_, out_dir / "training_curves.png", f"{title}: CNN training",
                        best_epoch=cnn.best_epoch_)
    metrics.update({"cnn_best_epoch": float(cnn.best_epoch_),
                    "cnn_val_accuracy": float(cnn.val_accuracy_ if cnn.val_accuracy_ is not None else np.nan)})
    return epochs
