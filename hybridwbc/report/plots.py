"""Figures a researcher looks at: confusion matrix, ROC curve, a gallery of the most confident errors.

Each function writes one PNG and returns its path. Matplotlib is imported
lazily with the non-interactive Agg backend (:func:`pyplot`); :func:`save_figure`
is how every figure of :mod:`hybridwbc.report` is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["pyplot", "save_figure", "confusion_matrix_png", "roc_png", "error_gallery_png", "family_importance_png"]


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> Path:
    """Lay out ``fig``, write it to ``path`` (PNG; parent folders created) and close it; returns the path."""
    plt = pyplot()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def confusion_matrix_png(cm: np.ndarray, classes: Sequence[str], path, title: str = "") -> Path:
    """Plot a confusion matrix with counts and row-normalised colours.

    Parameters
    ----------
    cm : ndarray of shape (n_classes, n_classes), dtype int
        Rows are true classes, columns predicted.
    classes : sequence of str
    path : path-like
        Output PNG.
    """
    plt = pyplot()
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.8 + 0.7 * n), dpi=110)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix", fontsize=9)
    return save_figure(fig, path)


def roc_png(is_positive: np.ndarray, score: np.ndarray, path, title: str = "") -> Path:
    """Plot a ROC curve with its AUC.

    Parameters
    ----------
    is_positive : ndarray of shape (n,), dtype bool
    score : ndarray of shape (n,), dtype float
        Probability (or score) of the positive class.
    path : path-like
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = pyplot()
    fpr, tpr, _ = roc_curve(is_positive, score)
    auc = roc_auc_score(is_positive, score)
    fig, ax = plt.subplots(figsize=(4, 4), dpi=110)
    ax.plot(fpr, tpr, lw=2, label=f"AUC = {auc:.3f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(title or "ROC", fontsize=9)
    ax.legend(loc="lower right")
    return save_figure(fig, path)


def error_gallery_png(paths, y_true, y_pred, confidence, path, title: str = "", ncols: int = 4) -> Path | None:
    """A gallery of misclassified images, captioned ``true -> predicted (confidence)``.

    Parameters
    ----------
    paths : sequence of str
        Image files, most confident error first.
    y_true, y_pred : sequence of str
    confidence : sequence of float
    path : path-like
        Output PNG.

    Returns
    -------
    pathlib.Path or None
        ``None`` when there are no errors to show.
    """
    from hybridwbc.data.io import read_image
    from hybridwbc.errors import ImageReadError

    if len(paths) == 0:
        return None
    plt = pyplot()
    n = len(paths)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 2.6 * nrows), dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (p, t, pr, c) in enumerate(zip(paths, y_true, y_pred, confidence)):
        ax = axes.ravel()[k]
        try:
            ax.imshow(read_image(p))
        except ImageReadError:
            ax.text(0.5, 0.5, "unreadable", ha="center")
        ax.set_title(f"{t} -> {pr} ({c:.2f})", fontsize=7)
    fig.suptitle(title or "most confident errors", fontsize=9)
    return save_figure(fig, path)


def family_importance_png(table, path, title: str = "") -> Path | None:
    """Bars of each feature family's permutation importance with their intervals, one panel per stage.

    Parameters
    ----------
    table : DataFrame
        :func:`hybridwbc.evaluate.importance.family_importance`'s table (``stage``, ``family``,
        ``drop_mean``, ``drop_lo``, ``drop_hi``; ``boot_lo``, ``boot_hi`` where computed). Black whiskers:
        the bootstrap interval of the held-out rows; orange: the range of the permutation repeats.
    path : path-like
        Output PNG.

    Returns
    -------
    pathlib.Path or None
        ``None`` for an empty table.
    """
    if len(table) == 0:
        return None
    plt = pyplot()
    stages = list(dict.fromkeys(table["stage"]))
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 0.45 * table.groupby("stage").size().max()
                                                       + 1.4), dpi=100, squeeze=False)
    for ax, stage in zip(axes[0], stages):
        t = table[table["stage"] == stage].iloc[::-1]
        ypos = np.arange(len(t))
        ax.barh(ypos, t["drop_mean"], color="#a6bddb", zorder=1)
        ax.hlines(ypos, t["drop_lo"], t["drop_hi"], color="#dd8452", lw=7, alpha=0.7, zorder=2)
        if "boot_lo" in t and np.isfinite(t["boot_lo"]).all():
            err = np.vstack([t["drop_mean"] - t["boot_lo"], t["boot_hi"] - t["drop_mean"]]).clip(min=0)
            ax.errorbar(t["drop_mean"], ypos, xerr=err, fmt="o", color="black", ms=3, capsize=4, lw=1.5, zorder=3)
        ax.set_yticks(ypos, t["family"])
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_title(stage, fontsize=9)
        ax.set_xlabel("drop in balanced accuracy", fontsize=8)
        ax.tick_params(labelsize=8)
    fig.suptitle((title or "permutation importance by feature family (held-out rows)")
                 + "\nbar and dot: mean drop; black: 95% bootstrap of held-out rows; orange: range of repeats",
                 fontsize=9)
    return save_figure(fig, path)
