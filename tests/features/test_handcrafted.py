"""Handcrafted features: known geometry, lobes, granule size, finiteness, reference equality."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from hybridwbc.data.synthetic import PROFILES, CellProfile, draw_cell
from hybridwbc.errors import ConfigError, NoCellFoundError
from hybridwbc.features.handcrafted import (
    FAMILIES,
    CellView,
    ColourFeaturizer,
    GeometryFeaturizer,
    GranularityFeaturizer,
    HandcraftedFeaturizer,
    SizeRatioFeaturizer,
    TextureFeaturizer,
    count_lobes,
    geometry_features,
    geometry_names,
    granularity_features,
    granularity_names,
    reconstruct_by_dilation,
)
from hybridwbc.features.reference import reference_features
from hybridwbc.segment import Segmenter


def disk_mask(size, r, cy=None, cx=None):
    cy = size / 2 if cy is None else cy
    cx = size / 2 if cx is None else cx
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_geometry_of_a_disk():
    size, r = 120, 30
    cell = disk_mask(size, r)
    nuc = disk_mask(size, 15)
    rgb = np.full((size, size, 3), 200, np.uint8)
    view = CellView(rgb=rgb, nucleus=nuc, cytoplasm=cell & ~nuc)
    f = dict(zip(geometry_names(), geometry_features(view)))
    assert f["cell_area"] == pytest.approx(np.pi * r * r, rel=0.02)
    assert f["cell_perimeter"] == pytest.approx(2 * np.pi * r, rel=0.05)
    assert f["cell_circularity"] == pytest.approx(1.0, abs=0.1)
    assert f["cell_eccentricity"] < 0.1
    assert f["cell_solidity"] > 0.97
    assert f["cell_major_axis"] == pytest.approx(2 * r, rel=0.02)
    assert f["cell_minor_axis"] == pytest.approx(2 * r, rel=0.02)
    assert f["nucleus_area"] == pytest.approx(np.pi * 15 * 15, rel=0.03)
    assert f["nucleus_lobes"] == 1


def test_geometry_of_an_ellipse():
    yy, xx = np.mgrid[0:120, 0:120]
    cell = ((yy - 60) / 20.0) ** 2 + ((xx - 60) / 40.0) ** 2 <= 1
    view = CellView(rgb=np.zeros((120, 120, 3), np.uint8), nucleus=cell, cytoplasm=np.zeros_like(cell))
    f = dict(zip(geometry_names(), geometry_features(view)))
    assert f["cell_major_axis"] == pytest.approx(80, rel=0.02)
    assert f["cell_minor_axis"] == pytest.approx(40, rel=0.03)
    assert f["cell_eccentricity"] == pytest.approx(np.sqrt(1 - 0.25), abs=0.01)


@pytest.mark.parametrize("lobes", [1, 2, 3, 4])
def test_lobes_counted(lobes):
    prof = CellProfile(0.32, 0.55, "lobed" if lobes > 1 else "round", lobes)
    for seed in range(3):
        c = draw_cell(np.random.default_rng(seed), prof, size=160, jitter=0.0)
        assert count_lobes(c.nucleus) == lobes


def test_lobes_from_segmentation():
    f = GeometryFeaturizer(segmenter=Segmenter(mode="crop"))
    col = f.feature_names().index("geometry__nucleus_lobes")

    def lobes(name):
        return [f.featurize(draw_cell(np.random.default_rng(s), PROFILES[name], size=160).image)[col]
                for s in range(5)]

    # known limitation: on segmented masks, hole filling merges the three synthetic neutrophil
    # lobes around their central gap, so only the bilobed eosinophil is checked here
    assert np.mean(lobes("eosinophil")) >= 1.5  # bilobed
    assert np.mean(lobes("lymphocyte")) <= 1.5  # round


@pytest.mark.parametrize("granule_radius", [1, 2, 3, 4])
def test_granular_spectrum_peaks_at_granule_size(granule_radius):
    prof = CellProfile(0.34, 0.40, "round", 1, (90, 50, 140), (215, 200, 215), granule_radius, 0.35,
                       (60, 30, 100))
    peaks = []
    for seed in range(3):
        c = draw_cell(np.random.default_rng(seed), prof, size=160)
        view = CellView(rgb=c.image, nucleus=c.nucleus, cytoplasm=c.cytoplasm)
        x = granularity_features(view, gran_length=8, gran_subsample=1, gran_channels=("gray",))
        spec = dict(zip(granularity_names(8, ("gray",)), x))
        cyt = np.array([spec[f"cytoplasm_gray_{k}"] for k in range(1, 9)])
        peaks.append(int(np.argmax(cyt)) + 1)
    # a structure of radius r disappears at opening size r + 1
    assert max(set(peaks), key=peaks.count) == granule_radius + 1, peaks


def test_granular_spectrum_with_subsampling():
    prof = CellProfile(0.34, 0.40, "round", 1, (90, 50, 140), (215, 200, 215), 4, 0.35, (60, 30, 100))
    c = draw_cell(np.random.default_rng(0), prof, size=200)
    view = CellView(rgb=c.image, nucleus=c.nucleus, cytoplasm=c.cytoplasm)
    x = granularity_features(view, gran_length=6, gran_subsample=2, gran_channels=("gray",))
    cyt = x[6:12]
    assert int(np.argmax(cyt)) + 1 == 3  # radius 4 -> 2 subsampled pixels -> peak at 3


def test_reconstruction_matches_skimage():
    from skimage.morphology import reconstruction

    rng = np.random.default_rng(0)
    mask = rng.integers(0, 255, (60, 70)).astype(np.uint8)
    seed = np.minimum(mask, rng.integers(0, 255, (60, 70)).astype(np.uint8)) // 2
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
    ref = reconstruction(seed, mask, footprint=cross).astype(np.uint8)
    np.testing.assert_array_equal(reconstruct_by_dilation(seed, mask), ref)


@pytest.mark.parametrize("name", ["neutrophil", "eosinophil", "basophil", "lymphocyte", "monocyte"])
def test_fast_equals_reference(name):
    f = HandcraftedFeaturizer(segmenter=Segmenter(mode="crop"))
    c = draw_cell(np.random.default_rng(1), PROFILES[name], size=128)
    seg = f.segment(c.image)
    fast = f.features_of(f.view(seg.image, seg.primary))
    ref = reference_features(f, seg.image, seg.primary)
    assert fast.shape == ref.shape == (len(f.feature_names()),)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-6)


def test_fast_equals_reference_subsampled_and_at_border():
    f = HandcraftedFeaturizer(segmenter=Segmenter(mode="crop"), gran_subsample=2, gran_element=4, glcm_levels=8)
    c = draw_cell(np.random.default_rng(2), PROFILES["eosinophil"], size=128)
    img = np.ascontiguousarray(c.image[:, 35:])
    seg = f.segment(img)
    assert seg.primary.touches_border
    fast = f.features_of(f.view(seg.image, seg.primary))
    ref = reference_features(f, seg.image, seg.primary)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-6)


def test_names_prefixes_and_finiteness():
    f = HandcraftedFeaturizer()
    names = f.get_feature_names_out()
    assert len(names) == len(set(names))
    assert {n.split("__")[0] for n in names} == set(FAMILIES)
    imgs = [draw_cell(np.random.default_rng(s), PROFILES[k], size=96).image
            for s, k in enumerate(["lymphocyte", "neutrophil", "eosinophil", "basophil", "platelet"])]
    x = f.fit(imgs).transform(imgs)
    assert x.shape == (5, len(names)) and x.dtype == np.float64
    assert np.isfinite(x).all()


def test_black_cutout_all_nucleus_is_finite():
    img = np.zeros((100, 100, 3), np.uint8)
    img[disk_mask(100, 30)] = (110, 60, 150)
    x = HandcraftedFeaturizer(segmenter=Segmenter(mode="auto")).featurize(img)
    assert np.isfinite(x).all()


def _named(f, x):
    return dict(zip(f.feature_names(), x))


def test_degenerate_cells_get_their_documented_values():
    """Undefined statistics are defined at their source (the family docstrings), not cleaned up afterwards."""
    f = HandcraftedFeaturizer()
    flat = np.full((24, 24, 3), (110, 60, 150), np.uint8)
    dot = np.zeros((24, 24), bool)
    dot[12, 12] = True  # a one-pixel nucleus, no cytoplasm, one colour
    v = _named(f, f.features_of(CellView(flat, dot, np.zeros_like(dot))))
    assert np.isfinite(list(v.values())).all()
    assert v["geometry__nucleus_eccentricity"] == 0.0 and v["geometry__nucleus_solidity"] == 1.0
    assert all(v[f"colour__cytoplasm_{c}_{s}"] == 0.0 for c in ("R", "H", "L") for s in ("mean", "std", "kurt"))
    assert v["colour__nucleus_R_mean"] == 110.0 and v["colour__nucleus_R_skew"] == v["colour__nucleus_R_kurt"] == 0.0
    assert v["texture__glcm_contrast_d1"] == v["texture__glcm_correlation_d1"] == 0.0  # no pixel pair at all
    assert v["size_ratio__nucleus_cytoplasm"] == 1.0 and v["size_ratio__nucleus_cell"] == 1.0  # |N| / max(|C|, 1)
    assert all(v[f"granularity__cytoplasm_gray_{k}"] == 0.0 for k in range(1, 9))
    block = np.zeros((24, 24), bool)
    block[6:18, 6:18] = True  # a constant 12 x 12 square: pairs exist, but no variance
    v = _named(f, f.features_of(CellView(flat, block, np.zeros_like(block))))
    assert np.isfinite(list(v.values())).all()
    assert v["texture__glcm_correlation_d1"] == 1.0 and v["texture__glcm_contrast_d1"] == 0.0
    assert v["colour__nucleus_L_std"] == 0.0 and v["colour__nucleus_L_skew"] == 0.0


def test_a_non_finite_value_is_not_masked(monkeypatch, cell_image):
    """A family that returns NaN/inf (a bug) must show it, so the batch guard can report it by name."""
    import hybridwbc.features.handcrafted.featurizer as featurizer

    monkeypatch.setattr(featurizer, "size_ratio_features", lambda view: np.array([np.nan, np.inf]))
    x = HandcraftedFeaturizer(families=("geometry", "size_ratio")).featurize(cell_image)
    assert np.isnan(x[-2]) and np.isposinf(x[-1]) and np.isfinite(x[:-2]).all()


def test_family_classes():
    c = draw_cell(np.random.default_rng(3), PROFILES["monocyte"], size=96)
    full = HandcraftedFeaturizer(segmenter=Segmenter(mode="crop"))
    all_names = list(full.feature_names())
    vec = full.featurize(c.image)
    for cls in (GeometryFeaturizer, ColourFeaturizer, TextureFeaturizer, SizeRatioFeaturizer,
                GranularityFeaturizer):
        est = clone(cls(segmenter=Segmenter(mode="crop")))
        names = list(est.get_feature_names_out())
        idx = [all_names.index(n) for n in names]
        np.testing.assert_allclose(est.featurize(c.image), vec[idx], atol=1e-12)
        assert len(est.cache_key()) == 16
    assert GeometryFeaturizer().cache_key() != GeometryFeaturizer(lobe_prominence=0.3).cache_key()


@pytest.mark.parametrize("kind", ["gray", "rgba", "uint16", "tiny", "blank", "border", "large"])
def test_bad_inputs_give_features_or_no_cell(kind):
    c = draw_cell(np.random.default_rng(5), PROFILES["lymphocyte"], size=96)
    img = {
        "gray": c.image.mean(2).astype(np.uint8),
        "rgba": np.dstack([c.image, np.full((96, 96), 255, np.uint8)]),
        "uint16": c.image.astype(np.uint16) * 257,
        "tiny": c.image[::4, ::4],
        "blank": np.full((96, 96, 3), 230, np.uint8),
        "border": c.image[:, 40:],
        "large": np.kron(c.image, np.ones((12, 12, 1), np.uint8)),
    }[kind]
    f = HandcraftedFeaturizer()
    try:
        x = f.featurize(img)
    except NoCellFoundError:
        assert kind in ("gray", "tiny", "blank")
        return
    assert x.shape == (len(f.feature_names()),) and np.isfinite(x).all()


@pytest.mark.parametrize("params, match", [
    (dict(families=("geometry", "shape")), "families must be"),
    (dict(families=()), "families must be"),
    (dict(glcm_levels=1), "glcm_levels"),
    (dict(lbp_points=(8,), lbp_radii=(1, 2)), "equal lengths"),
    (dict(glcm_distances=(0,)), "glcm_distances"),
    (dict(gran_length=0), "gran_length"),
    (dict(gran_channels=("hue",)), "gran_channels"),
    (dict(lobe_prominence=1.5), "lobe_prominence"),
])
def test_bad_params(params, match):
    with pytest.raises(ConfigError, match=match):
        HandcraftedFeaturizer(**params).fit()
