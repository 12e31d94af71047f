"""Train/test splits that never leak.

Rows are grouped before splitting: by subject where the data set has subject
ids, and otherwise by image content hash, so exact duplicate images always
fall on the same side. Every split is checked: a group on both sides raises.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

from hybridwbc.errors import ConfigError, DataLayoutError

__all__ = ["split_groups", "holdout_split", "kfold_splits", "assert_disjoint", "cross_split_duplicates"]


def split_groups(manifest: pd.DataFrame) -> np.ndarray:
    """Group id of each row: its subject where known, else its content hash.

    Parameters
    ----------
    manifest : DataFrame with columns ``subject`` and ``sha256``

    Returns
    -------
    groups : ndarray of shape (n_rows,), dtype object
    """
    subj = manifest["subject"].fillna("").astype(str).to_numpy()
    sha = manifest["sha256"].fillna("").astype(str).to_numpy()
    path = manifest["path"].astype(str).to_numpy()
    return np.where(subj != "", "subject:" + subj, np.where(sha != "", "sha:" + sha, "path:" + path)).astype(object)


def has_subjects(manifest: pd.DataFrame) -> bool:
    """Whether the manifest carries subject ids."""
    return bool((manifest["subject"].fillna("").astype(str) != "").any())


def assert_disjoint(groups: np.ndarray, train: np.ndarray, test: np.ndarray) -> None:
    """Raise if any group has rows on both sides of a split.

    Raises
    ------
    DataLayoutError
        Naming up to five shared groups.
    """
    shared = set(np.asarray(groups)[train]) & set(np.asarray(groups)[test])
    if shared:
        raise DataLayoutError(
            f"Split leaks: {len(shared)} group(s) on both sides, e.g. {sorted(shared)[:5]}. "
            "Expected every subject (or duplicate image) on one side only. This is a bug in the splitter."
        )


def _check_counts(y: np.ndarray, groups: np.ndarray, n_splits: int) -> None:
    labels, counts = np.unique(y, return_counts=True)
    for label in labels:
        n_groups = len(set(groups[y == label]))
        if n_groups < n_splits:
            raise DataLayoutError(
                f"Class {label!r} has {n_groups} subject/image group(s), fewer than the {n_splits} splits asked for. "
                "Fix: lower eval.n_splits (or raise eval.test_size), or add data for that class."
            )


def kfold_splits(y, groups, n_splits: int = 5, seed: int = 0, grouped: bool = True
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stratified (and grouped) k-fold splits.

    Parameters
    ----------
    y : array-like of shape (n,)
    groups : array-like of shape (n,)
        From :func:`split_groups`.
    n_splits : int, default 5
    seed : int, default 0
    grouped : bool, default True
        ``False`` gives a plain stratified split by row that ignores subjects:
        *leaky* where subjects exist, kept only to show how much it inflates scores.

    Yields
    ------
    train, test : ndarray of int
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y)
    groups = np.asarray(groups)
    if n_splits < 2:
        raise ConfigError(f"eval.n_splits must be at least 2; received {n_splits}.")
    if grouped:
        _check_counts(y, groups, n_splits)
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        for train, test in splitter.split(np.zeros(len(y)), y, groups):
            assert_disjoint(groups, train, test)
            yield train, test
    else:
        _check_counts(y, np.arange(len(y)), n_splits)
        for train, test in StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(
                np.zeros(len(y)), y):
            yield train, test


def holdout_split(y, groups, test_size: float = 0.2, seed: int = 0, grouped: bool = True
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One fixed, stratified, grouped train/test split.

    Uses the first fold of a stratified group k-fold with
    ``k = round(1 / test_size)``, so the test share is close to ``test_size``
    and no group straddles the split.

    Returns
    -------
    train, test : ndarray of int
    """
    if not 0.0 < float(test_size) < 0.5 + 1e-9:
        raise ConfigError(f"eval.test_size must be in (0, 0.5]; received {test_size}.")
    k = max(2, int(round(1.0 / float(test_size))))
    return next(iter(kfold_splits(y, groups, n_splits=k, seed=seed, grouped=grouped)))


def cross_split_duplicates(manifest: pd.DataFrame, train: np.ndarray, test: np.ndarray) -> pd.DataFrame:
    """Exact duplicate images (same content hash) found on both sides of a split.

    Returns
    -------
    DataFrame with columns ``sha256``, ``train_path``, ``test_path`` (empty when clean).
    """
    tr = manifest.iloc[train]
    te = manifest.iloc[test]
    shared = set(tr["sha256"]) & set(te["sha256"]) - {""}
    rows = []
    for h in sorted(shared):
        rows.append({"sha256": h, "train_path": tr.loc[tr["sha256"] == h, "path"].iloc[0],
                     "test_path": te.loc[te["sha256"] == h, "path"].iloc[0]})
    return pd.DataFrame(rows, columns=["sha256", "train_path", "test_path"])
