"""Colour normalisation on images whose answer is known by construction."""

import numpy as np
import pytest

from hybridwbc.data.synthetic import PROFILES, draw_cell
from hybridwbc.errors import NoCellFoundError
from hybridwbc.preprocess import colour

#: Two MGG-like stains (unit rows): azure / methylene blue (absorbs red most), eosin (absorbs green).
STAINS = np.array([[0.55, 0.75, 0.37], [0.10, 0.85, 0.52]])
STAINS = STAINS / np.linalg.norm(STAINS, axis=1, keepdims=True)


def stain_image(stains, rng, side=128, io=240.0):
    """An image made of two stains: nucleus-only, eosin-only, mixed and background pixels; and its concentrations."""
    c = np.zeros((side * side, 2))
    kind = rng.integers(0, 4, side * side)
    c[kind == 0, 0] = rng.uniform(0.3, 1.5, (kind == 0).sum())
    c[kind == 1, 1] = rng.uniform(0.3, 1.2, (kind == 1).sum())
    c[kind == 2] = rng.uniform(0.2, 1.0, ((kind == 2).sum(), 2))
    image = np.clip(np.rint(io * np.exp(-c @ stains)), 0, 255).astype(np.uint8).reshape(side, side, 3)
    return image, c


def angles(a, b):
    return np.degrees(np.arccos(np.clip((a * b).sum(1), -1, 1)))


def test_reinhard_maps_the_lab_moments_onto_the_reference_exactly(rng):
    lab = rng.normal([60, 10, -5], [12, 7, 9], (50, 40, 3))
    flat = lab.reshape(-1, 3)
    ref_mean, ref_std = np.array([70.0, 4.0, 2.0]), np.array([9.0, 5.0, 6.0])
    out = colour.reinhard_lab(lab, flat.mean(0), flat.std(0), ref_mean, ref_std).reshape(-1, 3)
    np.testing.assert_allclose(out.mean(0), ref_mean, atol=1e-9)
    np.testing.assert_allclose(out.std(0), ref_std, atol=1e-9)


def test_reinhard_on_uint8_images_lands_within_a_lab_unit(rng):
    source = draw_cell(rng, PROFILES["neutrophil"], size=96, colour_shift=(-30, 10, 25)).image
    target = draw_cell(rng, PROFILES["monocyte"], size=96).image
    ref_mean, ref_std = colour.lab_moments(target)
    before = colour.lab_moments(source)
    mean, std = colour.lab_moments(colour.reinhard(source, ref_mean, ref_std))
    assert np.abs(before[0] - ref_mean).max() > 5  # the test can fail: the source starts far away
    np.testing.assert_allclose(mean, ref_mean, atol=1.0)
    np.testing.assert_allclose(std, ref_std, atol=1.0)


def test_grey_world_removes_a_colour_cast(rng):
    base = draw_cell(rng, PROFILES["lymphocyte"], size=96).image
    cast = np.clip(np.rint(base * np.array([1.0, 0.85, 0.7])), 0, 255).astype(np.uint8)  # a warm lamp
    fixed = colour.grey_world(cast, reference=colour.channel_means(base))
    assert np.abs(cast.astype(int) - base).mean() > 20
    assert np.abs(fixed.astype(int) - base).mean() < 2.0
    classic = colour.channel_means(colour.grey_world(cast))
    assert classic.max() - classic.min() < 1.0  # no reference: every channel at the mean grey


def test_macenko_recovers_a_known_stain_matrix(rng):
    image, _ = stain_image(STAINS, rng)
    found = colour.macenko_stains(colour.optical_density(image).reshape(-1, 3))
    assert found.shape == (2, 3)
    assert np.all(angles(found, STAINS) < 2.0)  # degrees; row 0 the basophilic stain, row 1 eosin


def test_macenko_moves_an_image_onto_the_reference_stains(rng):
    other = np.array([[0.45, 0.80, 0.40], [0.18, 0.90, 0.40]])
    other = other / np.linalg.norm(other, axis=1, keepdims=True)
    image, _ = stain_image(other, rng)
    out = colour.macenko(image, STAINS, np.array([1.2, 1.0]))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.all(angles(colour.macenko_stains(colour.optical_density(image).reshape(-1, 3)), STAINS) > 5)
    assert np.all(angles(colour.macenko_stains(colour.optical_density(out).reshape(-1, 3)), STAINS) < 2.5)


def test_macenko_refuses_a_blank_image():
    with pytest.raises(NoCellFoundError, match="fewer than 50"):
        colour.macenko_stains(colour.optical_density(np.full((32, 32, 3), 238, np.uint8)).reshape(-1, 3))


def test_macenko_without_rescaling_keeps_the_concentrations_and_pairs_stains_by_nearness(rng):
    other = np.array([[0.45, 0.80, 0.40], [0.18, 0.90, 0.40]])
    other = other / np.linalg.norm(other, axis=1, keepdims=True)
    image, conc = stain_image(other, rng)
    expected = np.clip(np.rint(240.0 * np.exp(-conc @ STAINS)), 0, 255).reshape(image.shape)
    out = colour.macenko(image, STAINS, None)
    assert np.abs(out.astype(float) - expected).mean() < 3.0  # the same amounts of stain, in the reference colours
    np.testing.assert_array_equal(colour.macenko(image, STAINS[::-1], None), out)  # order of the reference rows
