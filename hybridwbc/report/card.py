"""The model card saved in every model folder (``MODEL_CARD.md``), written from the run that made the model.

:func:`write_model_card` says what the model classifies, the data it was trained on (counts, licence,
citation), how it was evaluated (:func:`protocol_sentence`, shared with :mod:`hybridwbc.report.paper`),
its metrics with 95% bootstrap intervals, coverage, calibration, the domain it knows and where it is known
to fail. Nothing in it is typed by hand: a number that the run did not measure is left out.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pandas as pd

from hybridwbc.serve.pipeline import CARD_FILE

__all__ = ["protocol_sentence", "metric_rows", "write_model_card", "model_card"]


#: (metric prefix, what the variant scores) in the order a card or report lists them.
CARD_VARIANTS = (("all_", "per cell, all test rows (a skipped row counts wrong)"),
                 ("", "per cell, the test rows the method scored"),
                 ("subject_", "per subject (cells' probabilities averaged)"),
                 ("binary_", "binary groups"),
                 ("leaky_", "LEAKY random cell split (ignores subjects; reference only)"))
CARD_METRICS = ("balanced_accuracy", "accuracy", "f1_macro", "f1_weighted", "sensitivity", "specificity", "roc_auc")


def protocol_sentence(params: dict, subjects: bool) -> str:
    """One sentence on how a run was evaluated, from its flat ``eval.*`` params (MLflow params or a config).

    >>> protocol_sentence({"eval.protocol": "cv", "eval.n_splits": 5, "eval.n_bootstrap": 1000}, True)[:40]
    '5-fold cross-validation with whole subje'
    """
    proto = str(params.get("eval.protocol", "holdout"))
    unit = "whole subjects" if subjects else "images (exact duplicates kept together by content hash)"
    if proto == "cv":
        split = f"{params.get('eval.n_splits', '?')}-fold cross-validation with {unit} left out"
    else:
        split = f"one held-out test split of {float(params.get('eval.test_size', 0.2)):.0%} of {unit}"
    ci = (f"95% bootstrap confidence intervals ({params.get('eval.n_bootstrap', '?')} resamples of "
          f"{'subjects' if subjects else 'images'})")
    return (f"{split}; every prediction is out of sample (anything tuned, calibrated or early-stopped sees the "
            f"training rows of its split only), and the final model is refitted on all rows; {ci}.")


def metric_rows(metrics: dict) -> list:
    """``(variant, metric, value, ci_low, ci_high)`` of every card metric present, in :data:`CARD_VARIANTS` order
    (the scored-rows variant left out when every test row was scored: it repeats the all-rows one)."""
    rows = []
    for prefix, what in CARD_VARIANTS:
        if prefix == "" and "all_balanced_accuracy" in metrics and not metrics.get("n_skipped_test"):
            continue
        for k in CARD_METRICS:
            if prefix + k in metrics:
                rows.append((what, k, metrics[prefix + k], metrics.get(f"{prefix}{k}_ci_low"),
                             metrics.get(f"{prefix}{k}_ci_high")))
    return rows


def _fmt(v, lo, hi) -> str:
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else f"{v:.3f}"


def _data_lines(data_cfg, source: str, kept: pd.DataFrame, scored) -> list:
    counts = pd.DataFrame({"images": kept["label"].value_counts(),
                           "segmented and featurized": kept.loc[scored, "label"].value_counts()}).fillna(0)
    synthetic = source != "real"
    lines = ["## Training data", "",
             f"- Data set: `{data_cfg.name}`" + (" — the BUILT-IN SYNTHETIC stand-in (no real images were found); "
                                                 "a demonstration only" if synthetic else " (real images)"),
             f"- Images: {data_cfg.acquisition or 'not described in the data config (data.acquisition)'}"
             if not synthetic else "- Images: synthetic cells drawn by `hybridwbc.data.synthetic`",
             f"- Licence: {(data_cfg.licence or 'unknown: set data.licence') if not synthetic else 'n/a (generated)'}",
             f"- {len(kept)} images, {int(scored.sum())} segmented and featurized"]
    if kept["subject"].fillna("").astype(str).ne("").any():
        lines[-1] += f", from {kept['subject'].nunique()} subjects"
    lines += ["", "| class | images | segmented and featurized |", "|---|---|---|"]
    lines += [f"| {c} | {int(r['images'])} | {int(r['segmented and featurized'])} |" for c, r in counts.iterrows()]
    return lines


def _failure_lines(metrics: dict, per_class: Path | None, notes, domain: dict | None, synthetic: bool) -> list:
    lines = ["## Domain and known failures", ""]
    if synthetic:
        lines.append("- Trained on synthetic cells: it has not seen a real microscope image.")
    if domain:
        lines.append(f"- Applicability domain: {domain.get('method')} (quantile {domain.get('quantile')}, "
                     f"{domain.get('n_neighbors')} neighbours, threshold {domain.get('threshold', 0):.3g}, "
                     f"{domain.get('n_train')} training rows); `predict` answers `out_of_domain` outside it.")
    if "ood_share_test" in metrics:
        lines.append(f"- Held-out cells outside their training split's domain: {metrics['ood_share_test']:.1%}.")
    if per_class is not None and Path(per_class).is_file():
        rep = pd.read_csv(per_class).sort_values("recall")
        weak = rep.head(min(3, len(rep)))
        lines.append("- Weakest classes (recall on held-out cells): "
                     + ", ".join(f"{r['class']} {r['recall']:.2f} (n={int(r['support'])})" for _, r in weak.iterrows()))
    if metrics.get("n_skipped_test"):
        lines.append(f"- {metrics['n_skipped_test']:.0f} test images could not be scored (no cell found or "
                     "unreadable): `predict` returns an error row for such an image, never a guess.")
    lines += [f"- {' '.join(str(n).split())}" for n in notes or ()]
    lines.append("- Not validated on other laboratories, stains, scanners or magnifications than its training data; "
                 "a research tool, not a medical device.")
    return lines


def model_card(rows, method: str, classifier: str, metrics: dict, run_id: str | None, run_name: str | None,
               per_class: Path | None = None, domain: dict | None = None) -> str:
    """The card's Markdown text; ``rows`` is the run's :class:`~hybridwbc.evaluate.method.RunData`."""
    from omegaconf import OmegaConf

    from hybridwbc.tracking import flatten

    cfg = rows.cfg
    source = getattr(rows, "source", "real")
    scored = (pd.Series(rows.skip_reason, dtype=object).fillna("") == "").to_numpy() \
        if rows.skip_reason is not None else pd.Series(True, index=rows.kept.index).to_numpy()
    evals = OmegaConf.to_container(cfg.eval, resolve=True, enum_to_str=True)
    params = {f"eval.{k}": v for k, v in flatten(evals).items()}
    classes = sorted(map(str, set(rows.y)))
    what_in = ("a smear field (cells segmented and aggregated)" if cfg.features.name == "field"
               else "an image of one white cell")
    title = run_name or f"{rows.experiment} · {method}"
    lines = [f"# Model card: {title}", "",
             f"Written by hybridwbc on {_dt.date.today().isoformat()} from MLflow run `{run_id or '(not tracked)'}`; "
             "every number below is that run's.", "",
             "## What it classifies", "",
             f"- {len(classes)} classes: {', '.join(f'`{c}`' for c in classes)}",
             f"- Input: {what_in}; output: one label and a probability per class (`python -m hybridwbc.predict`)",
             f"- Model: features `{cfg.features.name}` + classifier `{classifier}` (method `{method}` of experiment "
             f"`{rows.experiment}`, seed {cfg.seed})", ""]
    lines += _data_lines(cfg.data, source, rows.kept, scored)
    lines += ["", "## Evaluation protocol", "", protocol_sentence(params, bool(rows.subjects)), "",
              "## Metrics (value [95% CI])", "", "| scored on | metric | value |", "|---|---|---|"]
    lines += [f"| {what} | {k} | {_fmt(v, lo, hi)} |" for what, k, v, lo, hi in metric_rows(metrics)]
    if "n_test_rows" in metrics:
        lines += ["", "## Coverage", "",
                  f"{metrics.get('n_scored', 0):.0f} of {metrics['n_test_rows']:.0f} test rows scored "
                  f"(coverage {metrics.get('coverage', float('nan')):.3f})."]
    cal = {k: metrics[k] for k in ("ece", "brier", "log_loss", "aurc") if k in metrics}
    if cal:
        lines += ["", "## Calibration", "", "; ".join(f"{k} {v:.3f}" for k, v in cal.items())
                  + " (held-out predictions; lower is better)."]
    lines += [""] + _failure_lines(metrics, per_class, cfg.get("notes"), domain, source != "real")
    lines += ["", "## How to cite the data", "",
              (cfg.data.citation or "not given: set data.citation") if source == "real" else "n/a (synthetic)", ""]
    return "\n".join(lines)


def write_model_card(model_dir, rows, method: str, classifier: str, metrics: dict, run_id: str | None,
                     run_name: str | None, per_class: Path | None = None) -> Path:
    """Write ``MODEL_CARD.md`` into ``model_dir`` (a saved model folder, whose ``model.json`` gives the domain)."""
    import json

    model_dir = Path(model_dir)
    meta = model_dir / "model.json"
    domain = json.loads(meta.read_text()).get("domain") if meta.is_file() else None
    path = model_dir / CARD_FILE
    path.write_text(model_card(rows, method, classifier, metrics, run_id, run_name, per_class, domain))
    return path
