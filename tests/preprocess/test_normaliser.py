"""The fitted normaliser: settings, fitting on given images only, state keys, bad input."""

import numpy as np
import pytest

from hybridwbc.data.synthetic import PROFILES, draw_cell
from hybridwbc.errors import ConfigError, DataLayoutError
from hybridwbc.features.preprocessed import PreprocessedFeaturizer
from hybridwbc.features.simple import ColourShapeFeaturizer
from hybridwbc.preprocess import ImageNormaliser, colour


@pytest.fixture
def images(rng):
    return [draw_cell(rng, PROFILES[c], size=80, colour_shift=(k * 6.0, 0, -k * 6.0)).image
            for k, c in enumerate(["lymphocyte", "neutrophil", "monocyte", "eosinophil"])]


@pytest.mark.parametrize("method", ["reinhard", "greyworld", "macenko"])
def test_fit_learns_only_from_the_images_given(images, method):
    a = ImageNormaliser(method=method).fit(images[:2])
    b = ImageNormaliser(method=method).fit(images[:2])
    c = ImageNormaliser(method=method).fit(images)
    assert a.state_key() == b.state_key() != c.state_key()  # deterministic, and a function of its images only
    assert a.n_fit_images_ == 2
    out = a.transform_image(images[3])
    assert out.shape == images[3].shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, b.transform_image(images[3]))


def test_reinhard_reference_is_the_mean_of_the_training_moments(images):
    norm = ImageNormaliser(method="reinhard").fit(images[:3])
    moments = [colour.lab_moments(im) for im in images[:3]]
    np.testing.assert_allclose(norm.reference_["lab_mean"], np.mean([m for m, _ in moments], 0))
    np.testing.assert_allclose(norm.reference_["lab_std"], np.mean([s for _, s in moments], 0))


def test_none_changes_nothing_and_needs_no_images(images):
    norm = ImageNormaliser().fit([])
    assert not norm.active and norm.n_fit_images_ == 0
    assert norm.transform_image(images[0]) is images[0]


def test_the_cache_key_follows_the_fitted_state(images):
    inner = ColourShapeFeaturizer()
    a = PreprocessedFeaturizer(inner, ImageNormaliser(method="reinhard").fit(images[:2]))
    b = PreprocessedFeaturizer(inner, ImageNormaliser(method="reinhard").fit(images[2:]))
    c = PreprocessedFeaturizer(inner, ImageNormaliser(method="greyworld").fit(images[:2]))
    assert len({inner.cache_key(), a.cache_key(), b.cache_key(), c.cache_key()}) == 4
    np.testing.assert_array_equal(a.featurize(images[3]), inner.featurize(a.normalise(images[3])))


@pytest.mark.parametrize("params, match", [
    ({"method": "vahadane"}, "preprocess.method must be one of"),
    ({"scale": "zoom"}, "preprocess.scale must be one of"),
    ({"fraction": 1.5}, "0 < fraction <= 1"),
    ({"side": 4}, "side >= 16"),
    ({"scale": "mpp", "um_per_px": 0.1}, "needs positive preprocess.um_per_px"),
])
def test_bad_settings_give_one_clear_error(params, match):
    with pytest.raises(ConfigError, match=match):
        ImageNormaliser(**params).fit([])


def test_unfitted_or_imageless_fits_are_refused(images, tmp_path):
    with pytest.raises(ConfigError, match="not fitted"):
        ImageNormaliser(method="reinhard").transform_image(images[0])
    with pytest.raises(ConfigError, match="needs training images"):
        ImageNormaliser(method="reinhard").fit([])
    stale = ImageNormaliser(method="greyworld").fit(images)
    stale.version_ = 0  # a model saved by other preprocess arithmetic
    with pytest.raises(ConfigError, match="fitted by preprocess version 0"):
        stale.transform_image(images[0])
    (tmp_path / "a.png").write_bytes(b"not an image")
    with pytest.raises(DataLayoutError, match="none of the 1 training images"):
        ImageNormaliser(method="greyworld").fit_files([str(tmp_path / "a.png")])
