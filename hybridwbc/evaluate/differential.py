"""The white-cell differential of a smear: counts, percentages with Wilson intervals, flags, and agreement.

* :func:`wilson_interval` is the 95% Wilson score interval of a proportion ``k / n``
  (``(p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``), the interval CLSI H20-A2 tables
  for a differential count.
* :func:`differential` counts the cells of one group (a field or a sample): every class of the
  model, the cells left ``uncertain``, the cells cut by the border (not counted unless asked),
  the blast percentage where the model has a blast class, and the flags a reviewer needs.
* :func:`agreement` compares the pre-classification with the verified labels: percent
  agreement and Cohen's kappa overall, and one-vs-rest per class (the figures analyser
  evaluations publish).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["wilson_interval", "CountRules", "differential", "agreement", "BLAST_CLASSES", "UNCERTAIN"]

UNCERTAIN = "uncertain"
#: Class names that are blasts, wherever a model has them.
BLAST_CLASSES = ("blast", "lymphocyte:all", "all", "myeloblast", "lymphoblast")


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of the proportion ``k / n`` (in [0, 1]); ``(nan, nan)`` when ``n == 0``."""
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    den = 1 + z * z / n
    return float(max(0.0, (centre - half) / den)), float(min(1.0, (centre + half) / den))


@dataclass(frozen=True)
class CountRules:
    """What is counted and what is flagged.

    Attributes
    ----------
    min_count : int, default 100
        Fewer counted cells than this raises ``low_count`` (CLSI H20-A2 counts 100 or 200 cells).
    blast_threshold : float, default 5.0
        A blast percentage above this (percent) raises ``blasts``.
    uncertain_share : float, default 0.2
        More ``uncertain`` cells than this share of the classified cells raises ``many_uncertain``.
    count_border : bool, default False
        Count cells cut by the field border (off by default: the neighbouring field counts them).
    """

    min_count: int = 100
    blast_threshold: float = 5.0
    uncertain_share: float = 0.2
    count_border: bool = False


def _counted(cells: pd.DataFrame, rules: CountRules) -> pd.Series:
    """Boolean mask of the cells that enter the differential: status ``ok`` with a class label."""
    ok = (cells["status"] == "ok") & (cells["label"] != UNCERTAIN)
    if not rules.count_border:
        ok &= ~cells["border"].astype(bool)
    return ok


def differential(cells: pd.DataFrame, classes: Sequence[str], rules: CountRules = CountRules()) -> dict:
    """The differential of one group of cells.

    Parameters
    ----------
    cells : DataFrame
        Rows of ``cells.csv``: at least ``label``, ``status`` and ``border``.
    classes : sequence of str
        The model's classes.
    rules : CountRules

    Returns
    -------
    dict
        ``n_counted``, ``n_uncertain``, ``n_border``, ``n_error``; per class ``n_<c>``, ``pct_<c>``,
        ``ci_low_<c>`` and ``ci_high_<c>`` (percent); ``blast_pct`` (NaN without a blast class) with its
        interval; ``flags`` (``;``-joined: ``low_count``, ``blasts``, ``many_uncertain``).
    """
    counted = cells[_counted(cells, rules)] if len(cells) else cells
    n = int(len(counted))
    unc = int(((cells["label"] == UNCERTAIN) & (cells["status"] != "error")).sum()) if len(cells) else 0
    out = {"n_counted": n, "n_uncertain": unc,
           "n_border": int(cells["border"].astype(bool).sum()) if len(cells) else 0,
           "n_error": int((cells["status"] == "error").sum()) if len(cells) else 0}
    labels = counted["label"].astype(str).to_numpy() if n else np.array([], str)
    for c in classes:
        k = int((labels == c).sum())
        lo, hi = wilson_interval(k, n)
        out.update({f"n_{c}": k, f"pct_{c}": 100.0 * k / n if n else float("nan"),
                    f"ci_low_{c}": 100.0 * lo, f"ci_high_{c}": 100.0 * hi})
    blasts = [c for c in classes if c.lower() in BLAST_CLASSES]
    kb = int(np.isin(labels, blasts).sum())
    lo, hi = wilson_interval(kb, n) if blasts else (float("nan"), float("nan"))
    out.update({"blast_pct": 100.0 * kb / n if blasts and n else float("nan"),
                "blast_ci_low": 100.0 * lo, "blast_ci_high": 100.0 * hi})
    flags = []
    if n < rules.min_count:
        flags.append("low_count")
    if blasts and n and out["blast_pct"] > rules.blast_threshold:
        flags.append("blasts")
    if unc > rules.uncertain_share * max(1, n + unc):
        flags.append("many_uncertain")
    out["flags"] = ";".join(flags)
    return out


def agreement(pre: Sequence[str], verified: Sequence[str], classes: Sequence[str]) -> pd.DataFrame:
    """Agreement between pre-classification and verified labels.

    Parameters
    ----------
    pre, verified : sequence of str
        One label per cell; ``uncertain`` in ``pre`` counts as a disagreement wherever ``verified`` names a class.
    classes : sequence of str

    Returns
    -------
    DataFrame
        One row per class (one-vs-rest) and a final ``all`` row, with ``n_pre``, ``n_verified``,
        ``agreement`` (share of cells on which both agree) and ``kappa`` (Cohen's; NaN when undefined).

    Raises
    ------
    ValueError
        If ``pre`` and ``verified`` differ in length.
    """
    from sklearn.metrics import cohen_kappa_score

    pre = np.asarray(pre, dtype=str)
    ver = np.asarray(verified, dtype=str)
    if pre.shape != ver.shape:
        raise ValueError(f"pre and verified labels differ in length ({pre.size} vs {ver.size}); "
                         "pass one of each per cell.")

    def kappa(a, b):
        if a.size == 0 or (len(set(a.tolist()) | set(b.tolist())) < 2):
            return float("nan")
        return float(cohen_kappa_score(a, b))

    rows = []
    for c in classes:
        a, b = pre == c, ver == c
        rows.append({"class": c, "n_pre": int(a.sum()), "n_verified": int(b.sum()),
                     "agreement": float((a == b).mean()) if pre.size else float("nan"), "kappa": kappa(a, b)})
    rows.append({"class": "all", "n_pre": int(pre.size), "n_verified": int(ver.size),
                 "agreement": float((pre == ver).mean()) if pre.size else float("nan"), "kappa": kappa(pre, ver)})
    return pd.DataFrame(rows)
