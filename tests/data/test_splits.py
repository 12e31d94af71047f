import numpy as np
import pandas as pd
import pytest

from hybridwbc.data.splits import assert_disjoint, cross_split_duplicates, holdout_split, kfold_splits, split_groups
from hybridwbc.errors import ConfigError, DataLayoutError


def _manifest(n_subjects=10, per_subject=4, with_subjects=True):
    rows = []
    for s in range(n_subjects):
        for i in range(per_subject):
            rows.append({"path": f"/d/{s}_{i}.png", "label": "all" if s % 2 else "hem",
                         "subject": f"S{s}" if with_subjects else "", "sha256": f"{s:04d}{i:04d}"})
    return pd.DataFrame(rows)


def test_groups_are_subjects_else_content_hash():
    m = _manifest()
    g = split_groups(m)
    assert len(set(g)) == 10 and g[0] == "subject:S0"
    m2 = _manifest(with_subjects=False)
    m2.loc[1, "sha256"] = m2.loc[0, "sha256"]  # an exact duplicate
    g2 = split_groups(m2)
    assert g2[0] == g2[1] and len(set(g2)) == len(m2) - 1


def test_holdout_is_grouped_stratified_and_sized():
    m = _manifest(n_subjects=20)
    y, g = m["label"].to_numpy(), split_groups(m)
    train, test = holdout_split(y, g, test_size=0.2, seed=3)
    assert set(g[train]).isdisjoint(set(g[test]))
    assert len(test) == pytest.approx(0.2 * len(m), abs=4)
    assert set(y[test]) == {"all", "hem"}
    again = holdout_split(y, g, test_size=0.2, seed=3)
    np.testing.assert_array_equal(test, again[1])


def test_kfold_covers_every_row_once_without_leaks():
    m = _manifest(n_subjects=15)
    y, g = m["label"].to_numpy(), split_groups(m)
    seen = np.concatenate([test for _, test in kfold_splits(y, g, n_splits=5, seed=0)])
    assert sorted(seen.tolist()) == list(range(len(m)))


def test_duplicates_never_straddle_a_split():
    m = _manifest(n_subjects=10, with_subjects=False)
    m.loc[[0, 5, 9], "sha256"] = "dup"  # three copies of one image
    y, g = m["label"].to_numpy(), split_groups(m)
    for train, test in kfold_splits(y, g, n_splits=4, seed=1):
        assert cross_split_duplicates(m, train, test).empty


def test_leaky_split_ignores_subjects_and_duplicates_are_reported():
    m = _manifest(n_subjects=10)
    y, g = m["label"].to_numpy(), split_groups(m)
    train, test = holdout_split(y, g, test_size=0.25, seed=0, grouped=False)
    assert set(g[train]) & set(g[test])  # by construction a random split leaks subjects
    m.loc[train[0], "sha256"] = m.loc[test[0], "sha256"]
    d = cross_split_duplicates(m, train, test)
    assert len(d) == 1 and list(d.columns) == ["sha256", "train_path", "test_path"]


def test_assert_disjoint_raises_on_leak():
    g = np.array(["a", "a", "b"])
    with pytest.raises(DataLayoutError, match=r"Split leaks: 1 group\(s\) on both sides"):
        assert_disjoint(g, np.array([0]), np.array([1, 2]))


def test_too_few_groups_and_bad_settings():
    m = _manifest(n_subjects=4)
    y, g = m["label"].to_numpy(), split_groups(m)
    with pytest.raises(DataLayoutError, match="fewer than the 5 splits"):
        list(kfold_splits(y, g, n_splits=5))
    with pytest.raises(ConfigError, match="n_splits must be at least 2"):
        list(kfold_splits(y, g, n_splits=1))
    with pytest.raises(ConfigError, match=r"test_size must be in \(0, 0.5\]"):
        holdout_split(y, g, test_size=0.9)
