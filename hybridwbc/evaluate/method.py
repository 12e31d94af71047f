"""The evaluation of one method of a run, and the files it writes.

:func:`evaluate_method` takes one built estimator and what every method of a run shares
(:class:`RunData`: the kept rows, the feature table, labels, groups), and

1. predicts every row out of sample (:func:`~hybridwbc.evaluate.protocol.predict_out_of_sample`);
2. scores the predictions per cell, and where the config asks also collapsed to binary groups,
   per subject, and on a LEAKY random cell split of the same rows (reported only to show how
   much such a split inflates the score);
3. writes ``predictions.csv``, ``per_class_report.csv``, ``risk_coverage.csv``, ``duplicates.csv``
   (exact duplicates across a split) and the figures of :mod:`hybridwbc.report`;
4. keeps the final model (:func:`~hybridwbc.evaluate.protocol.final_model`) and, when it holds a
   trained CNN, its training curves;
5. fits the applicability domain per training split (the share of held-out rows it flags is
   ``ood_share_test``) and, on the final model's training rows only, the domain saved with it;
6. writes ``metrics.json``.

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
from hybridwbc.evaluate.metrics import aggregate_by_group, evaluate_predictions, most_confident_errors, to_binary
from hybridwbc.evaluate.protocol import Predictions, final_model, fit_domain, held_out_ood_share, predict_out_of_sample
from hybridwbc.models.parts import trained_cnn

__all__ = ["RunData", "MethodResult", "evaluate_method", "ARTIFACTS"]

log = logging.getLogger("hybridwbc")

#: Files a method may write into its folder, in the order they are logged (those that exist).
ARTIFACTS = ("predictions.csv", "per_class_report.csv", "confusion_matrix.png", "confusion_matrix_binary.png",
             "confusion_matrix_subjects.png", "errors_most_confident.png", "roc.png", "metrics.json",
             "duplicates.csv", "reliability.png", "risk_coverage.csv", "risk_coverage.png", "training_curves.png")


@dataclass
class RunData:
    """What every method of one run shares.

    Attributes
    ----------
    cfg : DictConfig
        The composed config (``eval``, ``seed``, ``features.name`` are read).
    experiment : str
    kept : DataFrame
        Manifest rows that were featurized, in feature-table order.
    features : ndarray of shape (n, n_features), float64
    y, groups : ndarray of shape (n,), object
        Labels, and split groups (subjects, else content hashes).
    subjects : bool
        Whether the rows carry subject ids (bootstrap and per-subject scores resample them).
    banner : str
        Where the data came from, for the run's summary lines.
    """

    cfg: object
    experiment: str
    kept: pd.DataFrame
    features: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    subjects: bool
    banner: str = ""


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
    domain : ApplicabilityDomain or None
        Fitted on the final model's training rows (``None`` when ``eval.domain.enabled`` is false).
    """

    metrics: dict
    pred: Predictions
    final: object
    epochs: list = field(default_factory=list)
    domain: object = None


def evaluate_method(data: RunData, name: str, method_cfg, estimator, X: np.ndarray, out_dir, common: dict
                    ) -> MethodResult:
    """Evaluate one method on ``X`` (its design matrix of ``data``'s rows) and write its files to ``out_dir``.

    ``common`` (run-level numbers: images, skipped, data and feature times) is added to the metrics.
    """
    cfg, ev = data.cfg, data.cfg.eval
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    protocol = enum_value(ev.protocol)
    t = time.perf_counter()
    pred, splits, fitted = predict_out_of_sample(
        estimator, X, data.y, data.groups, protocol=protocol, test_size=ev.test_size, n_splits=ev.n_splits,
        grouped=ev.grouped, seed=cfg.seed)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    title = f"{data.experiment}: {cfg.features.name} + {name} ({protocol})"
    metrics, result = _scores(data, pred, estimator, X, out_dir, title)
    _write_predictions(data, pred, splits, result, metrics, out_dir, title)
    eval_s = time.perf_counter() - t
    final = final_model(estimator, fitted, protocol, X, data.y, data.groups)
    epochs = _cnn_report(final, metrics, out_dir, title)
    domain = _domain(data, fitted, splits, final, protocol, X, metrics)
    metrics.update(common)
    metrics.update({"fit_predict_s": round(fit_s, 3), "eval_s": round(eval_s, 3)})
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return MethodResult(metrics=metrics, pred=pred, final=final, epochs=epochs, domain=domain)


def _domain(data: RunData, fitted: list, splits: list, final, protocol: str, X, metrics: dict):
    """Held-out share flagged per split (``ood_share_test``) and the final model's domain (its training rows only)."""
    settings = data.cfg.eval.get("domain") if hasattr(data.cfg.eval, "get") else None
    if settings is None or not settings.enabled:
        return None
    params = {"quantile": float(settings.quantile), "n_neighbors": int(settings.n_neighbors)}
    shares = held_out_ood_share(fitted, splits, X, data.groups, **params)
    metrics.update({k: v for k, v in shares.items() if k != "domains"})
    if protocol == "holdout":  # the final model is the split's: its domain is that split's
        return shares["domains"][0]
    return fit_domain(final, X, data.groups, **params)


def _scores(data: RunData, pred: Predictions, estimator, X, out_dir: Path, title: str) -> tuple:
    """``(metrics, per-cell result)``: per-cell metrics, plus the binary, per-subject and leaky variants the
    config asks for."""
    from omegaconf import OmegaConf

    from hybridwbc.report.plots import confusion_matrix_png

    cfg, ev = data.cfg, data.cfg.eval
    boot_groups = data.groups[pred.rows] if data.subjects else None
    result = evaluate_predictions(pred, boot_groups, positive=ev.positive_label, n_bootstrap=ev.n_bootstrap,
                                  ci=ev.ci, seed=cfg.seed)
    metrics = dict(result.metrics)
    if ev.binary_groups:
        bpred = to_binary(pred, OmegaConf.to_container(ev.binary_groups), ev.binary_positive)
        bres = evaluate_predictions(bpred, boot_groups, positive=ev.binary_positive,
                                    n_bootstrap=ev.n_bootstrap, ci=ev.ci, seed=cfg.seed)
        metrics.update({f"binary_{k}": v for k, v in bres.metrics.items()})
        confusion_matrix_png(bres.confusion, bres.classes, out_dir / "confusion_matrix_binary.png", title)
    if ev.subject_level and data.subjects:
        spred, _ = aggregate_by_group(pred, data.groups[pred.rows])
        sres = evaluate_predictions(spred, None, positive=ev.positive_label, n_bootstrap=ev.n_bootstrap,
                                    ci=ev.ci, seed=cfg.seed)
        metrics.update({f"subject_{k}": v for k, v in sres.metrics.items()})
        confusion_matrix_png(sres.confusion, sres.classes, out_dir / "confusion_matrix_subjects.png",
                             f"{title}, per subject")
    if ev.leaky_reference:
        # The same method on a random cell-level split that ignores subjects: LEAKY, reported only to
        # show how much such a split inflates the score (as in studies that split by cell).
        lpred, _, _ = predict_out_of_sample(estimator, X, data.y, data.groups, protocol=enum_value(ev.protocol),
                                            test_size=ev.test_size, n_splits=ev.n_splits, grouped=False,
                                            seed=cfg.seed)
        lres = evaluate_predictions(lpred, None, positive=ev.positive_label, n_bootstrap=ev.n_bootstrap,
                                    ci=ev.ci, seed=cfg.seed)
        metrics.update({f"leaky_{k}": v for k, v in lres.metrics.items()})
    return metrics, result


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
    metrics.update({"cnn_fit_s": float(cnn.fit_seconds_), "cnn_best_epoch": float(cnn.best_epoch_),
                    "cnn_val_accuracy": float(cnn.val_accuracy_ if cnn.val_accuracy_ is not None else np.nan)})
    return epochs
