import numpy as np
import pytest

from hybridwbc.data.io import read_image
from hybridwbc.data.manifest import scan
from hybridwbc.data.synthetic import PROFILES, draw_cell
from hybridwbc.errors import NoCellFoundError
from hybridwbc.features.cache import FeatureCache
from hybridwbc.features.simple import ColourShapeFeaturizer, threshold_mask
from hybridwbc.features.table import featurize_manifest


def test_threshold_mask_finds_the_drawn_cell(rng):
    cell = draw_cell(rng, PROFILES["lymphocyte"], size=96)
    mask = threshold_mask(cell.image)
    dice = 2 * (mask & cell.nucleus).sum() / (mask.sum() + cell.nucleus.sum())
    assert dice > 0.8  # Otsu on the stain channel picks the dark nucleus


def test_blank_image_has_no_cell():
    with pytest.raises(NoCellFoundError, match="blank"):
        threshold_mask(np.full((64, 64, 3), 200, np.uint8))
    speck = np.full((64, 64, 3), 230, np.uint8)
    speck[0, 0] = (20, 20, 20)
    with pytest.raises(NoCellFoundError, match="large enough"):
        threshold_mask(speck, min_area_fraction=0.01)


def test_featurizer_names_match_values(cell_image):
    f = ColourShapeFeaturizer().fit()
    v = f.featurize(cell_image)
    assert v.shape == (len(f.get_feature_names_out()),) and np.isfinite(v).all()
    assert f.transform([cell_image, cell_image]).shape == (2, f.n_features_out_)
    assert f.cache_key() == ColourShapeFeaturizer().cache_key() != ColourShapeFeaturizer(0.01).cache_key()


def test_cache_round_trip_and_corrupt_entry(tmp_path):
    c = FeatureCache(tmp_path, "k")
    assert c.get("ab12") is None
    c.put("ab12", np.arange(3.0))
    np.testing.assert_array_equal(c.get("ab12"), [0, 1, 2])
    c.put_skip("cd34", "no cell")
    assert c.get("cd34") == "no cell" and len(c) == 1
    (tmp_path / "k" / "ab" / "ab12.npy").write_bytes(b"garbage")
    assert c.get("ab12") is None and not (tmp_path / "k" / "ab" / "ab12.npy").exists()
    assert not list(tmp_path.rglob(".tmp-*"))


def test_table_skips_bad_files_and_second_run_hits_cache(save_png, folder_dataset, tmp_path):
    (folder_dataset / "lymphocyte" / "zero.png").write_bytes(b"")
    (folder_dataset / "lymphocyte" / "text.jpg").write_text("not an image")
    save_png(folder_dataset / "eosinophil" / "blank.png", np.full((64, 64, 3), 230, np.uint8))
    m = scan(folder_dataset, "folders").manifest
    f = ColourShapeFeaturizer()
    t1 = featurize_manifest(f, m, cache_dir=tmp_path / "cache", n_jobs=1, progress=False)
    assert t1.X.shape == (24, len(f.feature_names())) and len(t1.skipped) == 3
    assert set(t1.skipped["reason"].str.split(":").str[0]) == {"ImageReadError", "NoCellFoundError"}
    t2 = featurize_manifest(f, m, cache_dir=tmp_path / "cache", n_jobs=2, progress=False)
    # 24 vectors + 1 cached "no cell" verdict; the two unreadable files are retried
    assert t2.n_cached == 25 and len(t2.skipped) == 3
    np.testing.assert_array_equal(t1.X, t2.X)
    np.testing.assert_array_equal(t1.index, t2.index)


class _NaNOnBlackCorner(ColourShapeFeaturizer):
    """A buggy featurizer: NaN circularity and infinite solidity on images whose top-left pixel is black."""

    def featurize(self, image):
        v = super().featurize(image)
        if image[0, 0].sum() == 0:
            v[-3], v[-1] = np.nan, -np.inf
        return v


def test_non_finite_vectors_are_error_rows_naming_the_features(save_png, folder_dataset, tmp_path, caplog):
    for k in range(2):
        img = np.array(read_image(next((folder_dataset / "lymphocyte").glob("*.png"))))
        img[0, 0], img[1, 1] = 0, k  # the planted images differ, so their hashes do
        save_png(folder_dataset / "lymphocyte" / f"bug{k}.png", img)
    m = scan(folder_dataset, "folders").manifest
    f = _NaNOnBlackCorner()
    with caplog.at_level("ERROR", logger="hybridwbc.features.table"):
        t = featurize_manifest(f, m, cache_dir=tmp_path / "cache", n_jobs=1, progress=False)
    assert len(m) == 26 and len(t.index) == 24 and np.isfinite(t.X).all()
    assert sorted(t.skipped["path"].map(lambda p: p.rsplit("/", 1)[-1])) == ["bug0.png", "bug1.png"]
    reason = t.skipped["reason"].iloc[0]
    assert reason.startswith("non-finite feature values: 2 of 28 (circularity=nan, solidity=-inf)"), reason
    assert "2 of 26 images had non-finite feature values" in caplog.text
    assert len(FeatureCache(tmp_path / "cache", f.cache_key())) == 24  # a bug's output is never cached
    again = featurize_manifest(f, m, cache_dir=tmp_path / "cache", n_jobs=2, progress=False)
    assert again.n_cached == 24 and sorted(again.skipped["reason"]) == sorted(t.skipped["reason"])


def test_parallel_equals_serial(folder_dataset):
    m = scan(folder_dataset, "folders").manifest
    f = ColourShapeFeaturizer()
    a = featurize_manifest(f, m, cache_dir=None, n_jobs=1, progress=False)
    b = featurize_manifest(f, m, cache_dir=None, n_jobs=2, progress=False)
    np.testing.assert_array_equal(a.X, b.X)


def test_design_matrix_and_its_names():
    from hybridwbc.errors import ConfigError
    from hybridwbc.features.table import design_matrix, design_names

    feats = np.arange(6.0).reshape(2, 3)
    assert design_matrix("features", ["a", "b"], feats) is feats
    assert design_matrix("paths", ["a", "b"], feats).shape == (2, 1)
    X = design_matrix("paths_features", ["a", "b"], feats)
    assert X.shape == (2, 4) and X[1, 0] == "b" and X[1, 3] == 5.0
    assert design_names("features", ["x", "y"]) == ["x", "y"]
    assert design_names("paths", ["x", "y"]) == ["path"]
    assert design_names("paths_features", ["x", "y"]) == ["path", "x", "y"]
    with pytest.raises(ConfigError, match="Unknown classifier.input 'pixels'"):
        design_matrix("pixels", ["a"], feats[:1])


def test_cache_key_hashes_the_segmenter_settings():
    from hybridwbc.features.base import jsonable
    from hybridwbc.features.field import FieldFeaturizer
    from hybridwbc.features.handcrafted import HandcraftedFeaturizer
    from hybridwbc.segment import Segmenter

    base = HandcraftedFeaturizer().cache_key()
    assert HandcraftedFeaturizer(segmenter=Segmenter()).cache_key() == base
    assert HandcraftedFeaturizer(segmenter=Segmenter(min_contrast=30.0)).cache_key() != base
    assert HandcraftedFeaturizer(segmenter=Segmenter(work_side=200)).cache_key() != base
    assert FieldFeaturizer().cache_key() != base
    assert jsonable(Segmenter())["class"] == "Segmenter"
    assert jsonable({"b": (1, np.float64(2.5)), "a": np.arange(2), "c": object}) == \
        {"a": [0, 1], "b": [1, 2.5], "c": repr(object)}
