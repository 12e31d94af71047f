"""Training curves of a CNN (the study's Fig. 4): loss and accuracy per epoch.

Same conventions as :mod:`hybridwbc.report.plots` (one PNG per call, Agg backend, lazy
matplotlib import, returns the path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["training_curves_png", "history_metrics"]


def history_metrics(history: Mapping[str, Sequence[float]]) -> list[tuple[int, dict]]:
    """Per-epoch metrics ready for a tracker: ``[(step, {"train_loss": ..., ...}), ...]``.

    Keys: ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``lr``, ``epoch_s``
    (those present and finite); ``step`` is the 1-based epoch.
    """
    rename = {"loss": "train_loss", "accuracy": "train_accuracy"}
    n = max((len(v) for v in history.values()), default=0)
    out = []
    for e in range(n):
        row = {}
        for k, v in history.items():
            if e < len(v) and v[e] is not None and np.isfinite(v[e]):
                row[rename.get(k, k)] = float(v[e])
        out.append((e + 1, row))
    return out


def training_curves_png(history: Mapping[str, Sequence[float]], path, title: str = "",
                        best_epoch: int | None = None) -> Path:
    """Plot loss (left) and accuracy (right) per epoch, training and validation.

    Parameters
    ----------
    history : mapping of str to sequence of float
        ``loss``, ``accuracy`` and optionally ``val_loss``, ``val_accuracy``
        (as in ``CNNClassifier.history_``).
    path : path-like
        Output PNG.
    title : str, optional
    best_epoch : int, optional
        1-based epoch whose weights were kept; marked with a dashed line.

    Returns
    -------
    Path
    """
    from hybridwbc.report.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.2), dpi=110)
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        for prefix, name, style in (("", "training", "-"), ("val_", "validation (inference mode)", "--")):
            values = np.asarray(history.get(prefix + key, []), dtype=float)
            if len(values) and np.isfinite(values).any():
                ax.plot(np.arange(1, len(values) + 1), values, style, marker="o", markersize=3, label=name)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle=":", linewidth=1, label=f"kept (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title or "CNN training", fontsize=9)
    return save_figure(fig, path)
