"""Atomic writes: the target appears whole or not at all, and no temporary file is left behind."""

import os

import pytest

from hybridwbc.data.atomic import atomic_path, write_text_atomic


def test_a_completed_write_replaces_the_target_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    write_text_atomic(target, "old\n")
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert os.listdir(target.parent) == ["table.csv"]


def test_a_failed_write_keeps_the_old_target_and_removes_the_temporary(tmp_path):
    target = write_text_atomic(tmp_path / "cache.npy", "whole")
    with pytest.raises(KeyboardInterrupt, match="stopped half way"):
        with atomic_path(target, fsync=True) as tmp:
            tmp.write_bytes(b"hal")
            raise KeyboardInterrupt("stopped half way")
    assert target.read_bytes() == b"whole"
    assert os.listdir(tmp_path) == ["cache.npy"]


def test_a_failed_folder_write_removes_the_temporary_folder(tmp_path):
    target = tmp_path / "models" / "abc123"
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "state.json").write_text("{}")
            raise OSError("disk full")
    assert not target.exists() and os.listdir(target.parent) == []


def test_the_temporary_keeps_the_suffixes_and_is_new_each_time(tmp_path):
    """Writers pick the format by the name (PIL's '.png', Keras' '.weights.h5'); two writers never share it."""
    target = tmp_path / "pbc8_compact96.weights.h5"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a.name.endswith(".weights.h5") and b.name.endswith(".weights.h5")
        assert a != b and a.parent == b.parent == tmp_path and a.name.startswith(f".tmp-{os.getpid()}-")
        assert not a.exists() and not b.exists()
        a.write_text("a")
        b.write_text("b")
    assert target.read_text() == "a"  # the outer block ends last and wins
