"""The summary a run prints for each method: the headline metrics with their intervals, and where things are."""

from __future__ import annotations

__all__ = ["KEYS", "format_summary"]

#: Metrics shown, each for the per-cell scores and the binary, per-subject and leaky variants present.
KEYS = ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "sensitivity", "specificity", "roc_auc")


def format_summary(experiment: str, banner: str, features: str, method: str, metrics: dict, run_id, run_dir) -> str:
    """Lines ``== <experiment>: <features> + <method> on <data>``, then ``   <metric> <value> [<ci>]`` per metric."""
    lines = [f"== {experiment}: {features} + {method} on {banner}"]
    for prefix in ("", "binary_", "subject_", "leaky_"):
        for k in KEYS:
            if prefix + k in metrics:
                lo, hi = metrics.get(f"{prefix}{k}_ci_low"), metrics.get(f"{prefix}{k}_ci_high")
                ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None else ""
                lines.append(f"   {prefix + k:<26} {metrics[prefix + k]:.4f}{ci}")
    if "ood_share_test" in metrics:
        lines.append(f"   {'ood_share_test':<26} {metrics['ood_share_test']:.4f} (held-out cells outside "
                     "their training split's applicability domain)")
    lines.append(f"   run dir: {run_dir}")
    lines.append(f"   MLflow run: {run_id or '(tracking disabled)'}")
    return "\n".join(lines)
