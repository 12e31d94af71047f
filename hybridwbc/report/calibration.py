"""Calibration figures: the reliability diagram and the risk-coverage curve (numbers in :mod:`hybridwbc.calibration`).

Each function writes one PNG and returns its path (matplotlib's Agg backend, imported lazily).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from hybridwbc.calibration import expected_calibration_error, reliability_table, risk_coverage
from hybridwbc.report.plots import pyplot, save_figure

__all__ = ["reliability_png", "risk_coverage_png"]


def reliability_png(y_true, proba, classes: Sequence[str], path, n_bins: int = 15, title: str = "") -> Path:
    """Reliability diagram: accuracy vs mean confidence per bin, with the bin counts below.

    Returns
    -------
    pathlib.Path of the written PNG.
    """
    plt = pyplot()
    t = reliability_table(y_true, proba, classes, n_bins)
    ece = expected_calibration_error(y_true, proba, classes, n_bins)
    width = 1.0 / int(n_bins)
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(4.2, 5.0), dpi=110, sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(t["bin_low"], t["accuracy"].fillna(0.0), width=width, align="edge", edgecolor="black",
           color="#4c72b0", label="accuracy")
    lo = np.fmin(t["accuracy"], t["confidence"]).fillna(0.0)
    gap = (t["accuracy"] - t["confidence"]).abs().fillna(0.0)
    ax.bar(t["bin_low"], gap, bottom=lo, width=width, align="edge", facecolor="none", edgecolor="#c44e52",
           hatch="//", lw=0.8, label="|accuracy - mean confidence|")
    ax.plot(t["bin_low"] + width / 2, t["confidence"], "o", ms=3, c="#c44e52", label="mean confidence")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title((title + "\n" if title else "") + f"ECE = {ece:.3f} ({int(n_bins)} bins)", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    axc.bar(t["bin_low"], t["count"], width=width, align="edge", color="grey", edgecolor="black")
    axc.set_xlim(0, 1)
    axc.set_xlabel("confidence (top-label probability)")
    axc.set_ylabel("cells")
    return save_figure(fig, path)


def risk_coverage_png(y_true, proba, classes: Sequence[str], path, title: str = "") -> Path:
    """Accuracy of the kept cells vs coverage, as the confidence threshold rises.

    Returns
    -------
    pathlib.Path of the written PNG.
    """
    plt = pyplot()
    rc = risk_coverage(y_true, proba, classes)
    rc = rc[rc["n_kept"] > 0]
    fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=110)
    ax.step(rc["coverage"], rc["accuracy"], where="post", lw=2)
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("coverage (share of cells not sent to a human)")
    ax.set_ylabel("accuracy on the kept cells")
    for t in (0.5, 0.8, 0.9):
        kept = rc[rc["threshold"] >= t]
        if len(kept):
            r = kept.iloc[0]
            ax.plot(r["coverage"], r["accuracy"], "o", ms=4, label=f"min_confidence={t}: coverage "
                    f"{r['coverage']:.2f}, accuracy {r['accuracy']:.3f}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=7)
    ax.set_title(title or "risk-coverage", fontsize=9)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
