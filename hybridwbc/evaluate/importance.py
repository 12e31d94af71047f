"""Permutation importance by feature family, on held-out rows only.

A feature *family* is the prefix of a column name before ``__`` (``geometry``, ``colour``, ``texture``,
``size_ratio``, ``granularity``; ``embedding`` for a cascade stage's CNN embeddings). The importance of
a family is the drop in balanced accuracy when all of its columns are permuted *together* (one row
permutation for the whole family, so correlated columns inside it cannot stand in for each other):

    drop_f = score(held-out rows) - score(held-out rows, family f permuted)

Each split's fitted model is scored on that split's test rows only (never on rows it was fitted on);
the predictions of all splits are pooled before scoring, as the run's own metrics are. This is repeated
``n_repeats`` times with fresh permutations; the table gives the mean drop, its standard deviation and
the 2.5-97.5 % percentile interval over repeats (``drop_lo``, ``drop_hi``: the permutations' variation
only), and a bootstrap interval of the mean drop (``boot_lo``, ``boot_hi``: the held-out rows resampled,
whole subjects where ``groups`` are given, ``n_bootstrap`` times; the sampling variation, which on a
small test set is the larger one).

An estimator with ``stage_views`` is also scored stage by stage on what each stage sees: a
:class:`~hybridwbc.models.cascade.CascadeClassifier`'s stage 1 on every held-out row against
special-or-other labels and stage 2 on the held-out rows of the other classes; the head of a
:class:`~hybridwbc.cnn.heads.EmbeddingClassifier` (``hybrid``) on the CNN's embeddings (one family,
``embedding``) and the handcrafted columns. The embeddings are computed once per split. The whole model is
scored (``stage = "model"``) where its input holds feature columns only (no image paths, so no CNN runs per
permutation).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["family_of", "family_columns", "family_importance", "importance_markdown", "balanced_accuracy"]

COLUMNS = ["stage", "family", "n_columns", "baseline", "drop_mean", "drop_sd", "drop_lo", "drop_hi", "boot_lo",
           "boot_hi", "n_repeats", "n_rows"]


def family_of(name: str) -> str:
    """The family of a column name: the part before ``__`` (the name itself without one)."""
    return str(name).split("__", 1)[0]


def family_columns(names) -> dict:
    """Family -> column indices, in first-seen order; the ``path`` column is no family."""
    out: dict = {}
    for i, n in enumerate(names):
        if str(n) != "path":
            out.setdefault(family_of(n), []).append(i)
    return {k: np.asarray(v, dtype=int) for k, v in out.items()}


def _views(est, X, y, names, whole: bool) -> list:
    """``(stage, model, X, y, names, rows)`` to score for one fitted estimator on its test rows."""
    views = [("model", est, X, y, list(names), np.arange(len(y)))] if whole else []
    if hasattr(est, "stage_views"):  # a cascade's stages, a head on CNN embeddings
        views += list(est.stage_views(X, y, names))
    return views


def balanced_accuracy(truth: np.ndarray, pred: np.ndarray, classes: np.ndarray) -> float:
    """Mean recall over the classes present in ``truth`` (scikit-learn's ``balanced_accuracy_score``), fast
    enough to rescore bootstrap samples; ``truth`` and ``pred`` are codes into ``classes``, ``(n,)`` int."""
    n = len(classes)
    support = np.bincount(truth, minlength=n)
    hits = np.bincount(truth[truth == pred], minlength=n)
    present = support > 0
    return float(np.mean(hits[present] / support[present]))


def _encode(code: dict, pred) -> np.ndarray:
    """Predicted labels as codes of ``code`` (a label the truth never has: -1)."""
    return np.array([code.get(str(v), -1) for v in pred], dtype=int)


def _boot_interval(truth, base, permuted: list, groups, n_bootstrap: int, rng, n_classes: int) -> tuple:
    """2.5-97.5 % bootstrap interval of the mean (over repeats) drop, resampling rows or whole groups."""
    if n_bootstrap <= 0:
        return np.nan, np.nan
    labels, codes = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(codes == g) for g in range(len(labels))]
    classes = np.arange(n_classes)
    out = []
    for _ in range(int(n_bootstrap)):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        b = balanced_accuracy(truth[idx], base[idx], classes)
        out.append(np.mean([b - balanced_accuracy(truth[idx], p[idx], classes) for p in permuted]))
    return float(np.percentile(out, 2.5)), float(np.percentile(out, 97.5))


def family_importance(fitted: list, splits: list, X, y, names, usable=None, n_repeats: int = 10,
                      seed: int = 0, whole: bool = True, groups=None, n_bootstrap: int = 200) -> pd.DataFrame:
    """Permutation importance of each feature family, pooled over the held-out rows of every split.

    Parameters
    ----------
    fitted : list of fitted estimators, one per split
    splits : list of (train, test) index arrays
        Only the test rows are used.
    X : ndarray of shape (n, n_columns)
    y : ndarray of shape (n,)
    names : sequence of str
        Names of ``X``'s columns (``<family>__<feature>``).
    usable : ndarray of shape (n,), bool, optional
        Rows the method scores (those it skipped are left out).
    n_repeats : int, default 10
    seed : int, default 0
    whole : bool, default True
        Also score the whole model (``stage = "model"``); pass False where predicting runs a CNN.
    groups : ndarray of shape (n,), optional
        Subjects: the bootstrap resamples whole subjects (``None``: rows).
    n_bootstrap : int, default 200
        Bootstrap samples of the held-out rows (0: no ``boot_`` interval).

    Returns
    -------
    DataFrame
        One row per stage and family: :data:`COLUMNS`, sorted by stage then decreasing mean drop.

    Raises
    ------
    ValueError
        If ``names`` does not name every column of ``X``, or ``n_repeats`` < 2.
    """
    X, y = np.asarray(X), np.asarray(y, dtype=object)
    if len(names) != X.shape[1]:
        raise ValueError(f"names has {len(names)} entries but X has {X.shape[1]} columns.")
    if int(n_repeats) < 2:
        raise ValueError(f"n_repeats must be at least 2 (an interval needs repeats); received {n_repeats}.")
    usable = np.ones(len(y), bool) if usable is None else np.asarray(usable, bool)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups, dtype=object).astype(str)
    pooled: dict = {}  # stage -> list of (model, X_stage, y_stage, names, groups of its rows)
    for est, (_, test) in zip(fitted, splits):
        test = test[usable[test]]
        if len(test):
            for stage, model, xs, ys, cols, rows in _views(est, X[test], y[test], names, whole):
                pooled.setdefault(stage, []).append((model, np.asarray(xs), np.asarray(ys, dtype=object), cols,
                                                     groups[test][rows]))
    rng = np.random.default_rng(seed)
    rows = []
    for stage, parts in pooled.items():
        labels, truth = np.unique(np.concatenate([p[2] for p in parts]).astype(str), return_inverse=True)
        code = {c: k for k, c in enumerate(labels)}
        base = _encode(code, np.concatenate([np.asarray(m.predict(xs), dtype=object) for m, xs, *_ in parts]))
        baseline = balanced_accuracy(truth, base, np.arange(len(labels)))
        stage_groups = np.concatenate([p[4] for p in parts])
        for family, idx in family_columns(parts[0][3]).items():
            permuted = []
            for _ in range(int(n_repeats)):
                preds = []
                for model, xs, *_ in parts:
                    xp = xs.copy()
                    xp[:, idx] = xs[rng.permutation(len(xs))][:, idx]
                    preds.append(np.asarray(model.predict(xp), dtype=object))
                permuted.append(_encode(code, np.concatenate(preds)))
            drops = np.array([baseline - balanced_accuracy(truth, p, np.arange(len(labels))) for p in permuted])
            lo, hi = _boot_interval(truth, base, permuted, stage_groups, n_bootstrap, rng, len(labels))
            rows.append({"stage": stage, "family": family, "n_columns": len(idx), "baseline": baseline,
                         "drop_mean": drops.mean(), "drop_sd": drops.std(ddof=1), "drop_lo": np.percentile(drops, 2.5),
                         "drop_hi": np.percentile(drops, 97.5), "boot_lo": lo, "boot_hi": hi,
                         "n_repeats": int(n_repeats), "n_rows": len(truth)})
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["stage", "drop_mean"], ascending=[True, False], kind="stable").reset_index(drop=True)


def importance_markdown(table: pd.DataFrame, title: str = "") -> str:
    """The table as Markdown: per stage, each family's mean drop in balanced accuracy and its interval."""
    lines = [f"## {title}", ""] if title else []
    lines += ["Drop in balanced accuracy when a feature family is permuted on held-out rows: the mean over "
              "repeats, the 2.5-97.5 % range of the repeats (permutation noise), and a 95 % bootstrap interval "
              "of the held-out rows (whole subjects where there are subjects).", "",
              "| stage | family | columns | baseline | drop | repeats | bootstrap | rows |",
              "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples(index=False):
        lines.append(f"| {r.stage} | {r.family} | {r.n_columns} | {r.baseline:.3f} | {r.drop_mean:+.3f} | "
                     f"[{r.drop_lo:+.3f}, {r.drop_hi:+.3f}] | [{r.boot_lo:+.3f}, {r.boot_hi:+.3f}] | {r.n_rows} |")
    return "\n".join(lines) + "\n"
