"""The domain-shift experiment's table (Markdown) and its accuracy-against-k figure.

Inputs are the rows of :func:`hybridwbc.evaluate.shift.shift_rows` (one per arm and ``k``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["plot_accuracy_vs_k", "shift_markdown"]

KEYS = ["preprocess", "representation", "augmentation", "head"]


def _arm(row) -> str:
    rep = row["representation"] + (f" ({row['augmentation']})" if row["augmentation"] != "-" else "")
    return f"{rep} + {row['head']}, {row['preprocess']}"


def _select(table: pd.DataFrame, arm: dict) -> pd.DataFrame:
    return table[np.logical_and.reduce([table[k] == v for k, v in arm.items()])].sort_values("k")


def plot_accuracy_vs_k(table: pd.DataFrame, best: dict, path: str | Path) -> None:
    """Accuracy on the target test cells against ``k`` labelled target cells per class: the chosen setting and
    the same arm without normalisation (error bars: the bootstrap CI), and every other arm faint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for _, arm in table[KEYS].drop_duplicates().iterrows():
        sub = _select(table, arm.to_dict())
        ax.plot(sub["k"], sub["accuracy"], color="0.8", lw=0.8, zorder=1)
    for arm, colour in ((best, "C0"), ({**best, "preprocess": "none"}, "C1")):
        sub = _select(table, arm)
        if not len(sub):
            continue
        err = np.vstack([sub["accuracy"] - sub["accuracy_ci_low"], sub["accuracy_ci_high"] - sub["accuracy"]])
        ax.errorbar(sub["k"], sub["accuracy"], yerr=np.clip(err, 0, None), marker="o", capsize=3, color=colour,
                    label=_arm(sub.iloc[0]), zorder=3)
    ax.set_xlabel("labelled target cells per class (k)")
    ax.set_ylabel("accuracy on the target test cells")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Few-shot head refit (grey: every other arm)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(r) -> str:
    return f"{r['accuracy']:.3f} [{r['accuracy_ci_low']:.3f}, {r['accuracy_ci_high']:.3f}]"


def _class_counts(y: np.ndarray, pool: np.ndarray, test: np.ndarray) -> str:
    classes = sorted(set(y.tolist()))
    lines = ["| class | pool (labels a few-shot arm may use) | test |", "|---|---|---|"]
    lines += [f"| {c} | {int((y[pool] == c).sum())} | {int((y[test] == c).sum())} |" for c in classes]
    return "\n".join(lines)


def _majority(y: np.ndarray, pool: np.ndarray, test: np.ndarray) -> str:
    """The baseline every arm must beat: always answering the pool's most frequent class."""
    values, counts = np.unique(y[pool], return_counts=True)
    top = values[np.argmax(counts)]
    acc = float(np.mean(y[test] == top))
    return (f"**Baseline**: always answering the pool's most frequent class (`{top}`) scores accuracy {acc:.3f} "
            f"(balanced accuracy {1 / len(set(y[test].tolist())):.3f}) on the test part; read every accuracy below "
            "against it, and the balanced accuracy beside it.")


def shift_markdown(table: pd.DataFrame, best: dict, coverage: pd.DataFrame, y_target: np.ndarray, pool: np.ndarray,
                   test: np.ndarray, n_source: int, command: str, run_id: str | None) -> str:
    """The experiment's ``results.md``: provenance, coverage, the zero-shot table of every arm with CIs, the
    few-shot table (mean ± sd over draws), and the chosen setting beside no normalisation."""
    ks = sorted(table["k"].unique())
    zero = table[table["k"] == 0].sort_values("accuracy", ascending=False, kind="stable")
    skipped = coverage[coverage["reason"] != ""]
    out = [
        "# Domain shift: trained on PBC (wbc5), scored on BCCD's white cells (another lab, stain and camera)",
        "",
        f"Command: `{command}`; MLflow run `{run_id}`. Source: {n_source} PBC cells. Target: "
        f"{int(coverage['n_cells'].sum())} white cells cut from {len(coverage)} typed BCCD fields "
        f"({len(skipped)} fields gave no cell: "
        + (", ".join(f"{n} × {r}" for r, n in skipped["reason"].value_counts().items()) or "none") + "). "
        "The target cells are split by field into a pool (the only target labels any arm uses) and a test part "
        "(scored by every arm, never fitted on).",
        "",
        _class_counts(np.asarray(y_target, dtype=object), pool, test),
        "",
        _majority(np.asarray(y_target, dtype=object), pool, test),
        "",
        "Accuracy is over **all** test cells (a cell a representation cannot read counts as wrong); the CI is a "
        "percentile bootstrap over test cells (one cell per field). Normalisers are fitted on PBC images only. "
        "CNN arms use a frozen PBC-pretrained backbone (`make pretrain`; `augmentation` names its training "
        "augmentation); `hybrid` is handcrafted features beside those embeddings.",
        "",
        f"**Chosen setting** (highest zero-shot accuracy on the *pool*, not the test part): {_arm(best)}.",
        "",
        "| setting | k | accuracy [95% CI] | balanced accuracy |",
        "|---|---|---|---|",
    ]
    for arm in (best, {**best, "preprocess": "none"}):
        for _, r in _select(table, arm).iterrows():
            out.append(f"| {_arm(r)} | {int(r['k'])} | {_fmt(r)} | {r['balanced_accuracy']:.3f} |")
    out += ["", "## Zero-shot (k = 0): every method × normalisation × augmentation", "",
            "| representation | augmentation | head | preprocess | accuracy [95% CI] | balanced accuracy | "
            "scored / test cells |", "|---|---|---|---|---|---|---|"]
    for _, r in zero.iterrows():
        out.append(f"| {r['representation']} | {r['augmentation']} | {r['head']} | {r['preprocess']} | {_fmt(r)} | "
                   f"{r['balanced_accuracy']:.3f} | {int(r['n_scored'])} / {int(r['n_test'])} |")
    out += ["", "## Few-shot head refit: accuracy (mean ± sd over draws) against k labelled target cells per class",
            "", "Where the pool holds fewer than k cells of a class, all of them are used (see the counts above).",
            "", "| setting | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for _, arm in zero[KEYS].iterrows():
        sub = _select(table, arm.to_dict()).set_index("k")
        cells = [f"{sub.loc[k, 'accuracy']:.3f} ± {sub.loc[k, 'accuracy_sd']:.3f}" if k in sub.index else "–"
                 for k in ks]
        out.append(f"| {_arm(arm)} | " + " | ".join(cells) + " |")
    out += ["", "![accuracy against k](accuracy_vs_k.png)", ""]
    return "\n".join(out)
