"""What a run prints: one headline per method, and the closing summary that names the run, its folder,
its headline metric with the interval and the commands to try next."""

from __future__ import annotations

from hybridwbc.tracking import UI_QUERY

#: Where the UI opens on its model-training view (MLflow 3.17 defaults to its GenAI view).
UI_URL = f"http://127.0.0.1:5000/#/experiments?{UI_QUERY}"

__all__ = ["UI_URL", "KEYS", "HEADLINE", "headline_key", "headline", "format_final"]

#: Metrics shown, each for the per-cell scores and the binary, per-subject and leaky variants present.
KEYS = ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "sensitivity", "specificity", "roc_auc")

#: The metric runs are ranked by (a comparison's best): balanced accuracy on all test rows, a skipped row wrong.
HEADLINE = "all_balanced_accuracy"


def headline_key(metrics: dict) -> str:
    """The headline metric's key in ``metrics``: :data:`HEADLINE`, else ``balanced_accuracy``."""
    return HEADLINE if HEADLINE in metrics else "balanced_accuracy"


def headline(metrics: dict) -> str:
    """``balanced accuracy 0.958 [0.877, 1.000] (95% CI, all test rows), coverage 24/24``."""
    key = headline_key(metrics)
    lo, hi = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    ci = f" [{lo:.3f}, {hi:.3f}] (95% CI{', all test rows' if key == HEADLINE else ''})" if lo is not None else ""
    text = f"balanced accuracy {metrics[key]:.3f}{ci}"
    if "n_scored" in metrics and "n_test_rows" in metrics:
        text += f", scored {metrics['n_scored']:.0f}/{metrics['n_test_rows']:.0f} test rows"
    return text


def _metric_lines(metrics: dict) -> list:
    lines = []
    for prefix in ("", "binary_", "subject_", "leaky_"):
        for k in KEYS:
            if prefix + k in metrics:
                lo, hi = metrics.get(f"{prefix}{k}_ci_low"), metrics.get(f"{prefix}{k}_ci_high")
                ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None else ""
                lines.append(f"   {prefix + k:<26} {metrics[prefix + k]:.4f}{ci}")
    if "ood_share_test" in metrics:
        lines.append(f"   {'ood_share_test':<26} {metrics['ood_share_test']:.4f} (held-out cells outside "
                     "their training split's applicability domain)")
    return lines


def format_final(experiment: str, banner: str, name: str, run_id, run_dir, method: str, metrics: dict, model_dir,
                 n_methods: int = 1, seconds: float | None = None, store: str | None = None,
                 ui: str = "make ui") -> str:
    """The closing summary of a run.

    ``== <run name>`` with the data and the time, the headline metric with its 95% CI (of the best method of
    a comparison), the method's metrics, the MLflow run (name and id, or that tracking was off), the run's
    folder and model, and the commands to try next (``make ui``, ``python -m hybridwbc.predict ...``,
    ``python -m hybridwbc.report ...``); ``ui`` is the command that opens the UI on ``store``.
    """
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    best = f"best of {n_methods} methods: {method}; " if n_methods > 1 else ""
    lines = [f"== {name}: done{took} on {banner}",
             f"   headline: {best}{headline(metrics)}",
             *_metric_lines(metrics),
             f"   MLflow run: {name!r} ({run_id}) in {store}" if run_id else "   MLflow run: (tracking disabled)",
             f"   run folder: {run_dir}",
             f"   model: {model_dir} (model card: {model_dir}/MODEL_CARD.md)",
             "   next:"]
    if run_id:
        lines.append(f"     {ui:<60} # the MLflow UI: open {UI_URL}")
    lines.append(f"     {'python -m hybridwbc.predict model=' + str(model_dir) + ' input=<images> output=p.csv':<60}"
                 " # label new images")
    if run_id:
        lines.append(f"     {'python -m hybridwbc.report --run ' + str(run_id) + ' --uri ' + str(store):<60}"
                     " # methods paragraph, tables, checklist")
    return "\n".join(lines)
