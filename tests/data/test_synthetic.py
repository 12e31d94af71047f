import numpy as np
import pandas as pd
import pytest

from hybridwbc.data.synthetic import PROFILES, CellProfile, draw_cell, generate_dataset, profile_for


def test_same_seed_same_image():
    a = draw_cell(np.random.default_rng(5), PROFILES["eosinophil"])
    b = draw_cell(np.random.default_rng(5), PROFILES["eosinophil"])
    np.testing.assert_array_equal(a.image, b.image)


def test_masks_are_consistent_and_sized():
    c = draw_cell(np.random.default_rng(0), PROFILES["lymphocyte"], size=128, jitter=0.0)
    assert not (c.nucleus & c.cytoplasm).any()
    r = PROFILES["lymphocyte"].cell_radius * 128
    assert c.cell.sum() == pytest.approx(np.pi * r * r * 1.05, rel=0.05)
    # the nucleus is darker than the cytoplasm (it absorbs more green)
    assert c.image[c.nucleus, 1].mean() < c.image[c.cytoplasm, 1].mean()


def test_black_background_and_bad_arguments():
    c = draw_cell(np.random.default_rng(0), PROFILES["hem"], background="black")
    assert c.image[~c.cell].mean() < 10
    with pytest.raises(ValueError, match="background must be 'smear' or 'black'"):
        draw_cell(np.random.default_rng(0), PROFILES["hem"], background="blue")
    with pytest.raises(ValueError, match="nucleus_shape must be"):
        draw_cell(np.random.default_rng(0), CellProfile(nucleus_shape="star"))


def test_generic_profiles_differ_by_index():
    assert profile_for("Benign", 0) != profile_for("Early", 1)
    assert profile_for("EOSINOPHIL", 3) is PROFILES["eosinophil"]


def test_generate_dataset_writes_manifest_with_subjects(tmp_path):
    path = generate_dataset(tmp_path, ["all", "hem"], n_per_class=6, size=48, n_subjects=3, seed=1)
    m = pd.read_csv(path, keep_default_na=False)
    assert len(m) == 12 and m["subject"].nunique() == 6
    assert all((tmp_path / p).is_file() for p in m["path"])
    mtime = path.stat().st_mtime_ns
    assert generate_dataset(tmp_path, ["all", "hem"], n_per_class=6, size=48, n_subjects=3, seed=1) == path
    assert path.stat().st_mtime_ns == mtime  # reused, not rewritten
