"""CellProfiler's own MeasureGranularity test cases, run on our granular spectrum.

Source: CellProfiler/CellProfiler, ``tests/modules/test_measuregranularity.py`` (the
checkerboard and block images and their expected spectra: ``test_zeros``,
``test_no_scaling``, ``test_subsampling``, ``test_background_sampling``,
``test_filter_background``, ``test_all_masked``, and the per-object ``*_alt`` cases,
``test_no_objects``). The images are rebuilt here from their definitions; the expected
spectra are CellProfiler's numbers.

Our :func:`granular_spectrum` takes uint8: each float image ``x`` in [0, 1] is given as
``250 x`` (exact for every value these tests use). The spectrum is invariant to that
scaling (greyscale morphology commutes with an increasing linear map, and every step is
a ratio of means), so CellProfiler's expected values apply unchanged.

Documented differences, tested as such:

* a fully masked image gives 0, where CellProfiler reports NaN for the image (its
  per-object assertion accepts 0 or NaN);
* we have no separate background subsampling (``image_sample_size``); the background
  of ``test_background_sampling`` is constant, so background removal at full
  resolution gives CellProfiler's expected spectrum exactly;
* per object, CellProfiler normalises by the raw mean and counts the removed
  background in step 1; :func:`cellprofiler_object_spectrum` maps ours to it exactly
  (checked by hand on a block image with a background offset, and against
  ``cp_measure`` when it is installed).
"""

from __future__ import annotations

import numpy as np
import pytest

from hybridwbc.features.handcrafted import cellprofiler_object_spectrum, granular_spectrum, granular_tophat

N = 16  # CellProfiler's granular_spectrum_length in these tests


def u8(x: np.ndarray) -> np.ndarray:
    out = np.rint(np.asarray(x, np.float64) * 250.0)
    assert np.allclose(out, np.asarray(x) * 250.0)  # the test images scale exactly
    return out.astype(np.uint8)


def spectrum(image, element=10, subsample=1, mask=None, objects=()):
    """Image spectrum (row 0) and one row per object, as CellProfiler's module would measure them."""
    mask = np.ones(image.shape, bool) if mask is None else mask
    img = np.where(mask, u8(image), 0).astype(np.uint8)
    return granular_spectrum(img, [mask, *[o & mask for o in objects]], N, element, subsample)


def blocks(size: int, block: int) -> np.ndarray:
    i, j = np.mgrid[0:size, 0:size]
    return ((i // block) % 2 == (j // block) % 2).astype(float)


def halves(shape) -> list[np.ndarray]:
    top = np.zeros(shape, bool)
    top[: shape[0] // 2] = True
    return [top, ~top]


def expect(first: list[float]) -> np.ndarray:
    return np.array(first + [0.0] * (N - len(first)))


def test_zeros():
    np.testing.assert_allclose(spectrum(np.zeros((40, 40)))[0], 0.0, atol=1e-7)


def test_no_scaling():
    """Checkerboard of single pixels: all signal at scale 1."""
    i, j = np.mgrid[0:10, 0:10]
    image = (i % 2 == j % 2).astype(float)
    np.testing.assert_allclose(spectrum(image)[0], expect([100]), atol=1e-7)


def test_subsampling():
    """8x8 blocks subsampled by 2: 4x4 blocks vanish at step 2, the two corner blocks at step 4."""
    np.testing.assert_allclose(spectrum(blocks(80, 8), subsample=2)[0], expect([0, 96, 0, 4]), atol=1e-7)


def test_background_sampling():
    """4x4 blocks on a background offset of 0.5 (CellProfiler subsamples the background by 0.5;
    constant here, so full-resolution background removal gives the same spectrum)."""
    image = blocks(80, 4) * 0.5 + 0.5
    np.testing.assert_allclose(spectrum(image)[0], expect([0, 99, 0, 1]), atol=1e-7)


def test_filter_background():
    """The tophat over CellProfiler's element radius 5, with painted edges (its exact image)."""
    image = blocks(80, 4) * 0.5 + 0.2
    image[:, :2][image[:, :2] < 0.5] = 0
    image[:, 0][image[:, 0] > 0.5] = 0.5
    image[0, 0] = 0.7
    np.testing.assert_allclose(spectrum(image, element=5)[0], expect([0, 99, 0, 1]), atol=1e-7)


def test_all_masked():
    """CellProfiler: NaN for the image; ours: 0 (documented), and 0 for each object, which
    CellProfiler's per-object assertion (``all NaN or all 0``) accepts."""
    image = np.zeros((40, 40))
    out = spectrum(image, mask=np.zeros((40, 40), bool), objects=halves((40, 40)))
    assert out.shape == (3, N)
    np.testing.assert_array_equal(out, 0.0)


def test_no_objects():
    out = spectrum(np.zeros((40, 40)), objects=[np.zeros((40, 40), bool)])
    np.testing.assert_allclose(out, 0.0, atol=1e-7)


def test_zeros_alt():
    out = spectrum(np.zeros((40, 40)), objects=halves((40, 40)))
    np.testing.assert_allclose(out, 0.0, atol=1e-7)


def test_no_scaling_alt():
    i, j = np.mgrid[0:40, 0:30]
    image = (i % 2 == j % 2).astype(float)
    out = spectrum(image, objects=halves((40, 30)))
    np.testing.assert_allclose(out, np.tile(expect([100]), (3, 1)), atol=1e-7)


def test_subsampling_alt():
    """CellProfiler allows 0.5 per object here (it upsamples before measuring objects); ours is exact."""
    out = spectrum(blocks(80, 8), subsample=2, objects=halves((80, 80)))
    np.testing.assert_allclose(out, np.tile(expect([0, 96, 0, 4]), (3, 1)), atol=1e-7)


def test_object_convention_relation_by_hand():
    """4x4 blocks on an offset of 0.5, two half-image objects. Each half: raw mean 0.75, mean after
    the tophat 0.25; ours is [0, 99, 0, 1] (one corner block of 100 per half), so CellProfiler's
    per-object spectrum is G1 = 100 (0.75 - 0.25) / 0.75, G2 = 99 * 0.25 / 0.75, G4 = 0.25 / 0.75."""
    image = blocks(80, 4) * 0.5 + 0.5
    objs = halves((80, 80))
    out = spectrum(image, objects=objs)
    img = u8(image)
    top = granular_tophat(img, 10)
    cp_expected = expect([100 * 0.5 / 0.75, 99 * 0.25 / 0.75, 0, 0.25 / 0.75])
    for row, obj in zip(out[1:], objs):
        np.testing.assert_allclose(row, expect([0, 99, 0, 1]), atol=1e-7)
        assert img[obj].mean() == pytest.approx(0.75 * 250) and top[obj].mean() == pytest.approx(0.25 * 250)
        cp = cellprofiler_object_spectrum(row, img[obj].mean(), top[obj].mean())
        np.testing.assert_allclose(cp, cp_expected, atol=1e-9)


def test_object_convention_relation_zero_raw_mean():
    np.testing.assert_array_equal(cellprofiler_object_spectrum(np.ones(4), 0.0, 0.0), np.zeros(4))


def test_against_cp_measure():
    """Ours, mapped by :func:`cellprofiler_object_spectrum`, equals cp_measure's get_granularity on a
    textured synthetic cell (skips when the optional ``peers`` extra is not installed)."""
    gran = pytest.importorskip("cp_measure.core.measuregranularity")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:90, 0:90]
    cell = (yy - 45) ** 2 + (xx - 45) ** 2 <= 35 ** 2
    cyto = cell & ((yy - 45) ** 2 + (xx - 45) ** 2 > 15 ** 2)
    img = 60 + rng.integers(0, 40, (90, 90))
    for r, c in rng.integers(15, 75, (40, 2)):
        img[(yy - r) ** 2 + (xx - c) ** 2 <= rng.integers(1, 5) ** 2] += 120
    img = np.where(cell, np.clip(img, 0, 255), 0).astype(np.uint8)
    ours = granular_spectrum(img, [cell, cyto], 8, 10, 1)
    top = granular_tophat(img, 10)
    for row, region in zip(ours, (cell, cyto)):
        theirs = gran.get_granularity(region.astype(np.int32), img / 255.0, subsample_size=1, image_sample_size=1,
                                      element_size=10, granular_spectrum_length=8)
        theirs = np.array([theirs[f"Granularity_{k}"][0] for k in range(1, 9)])
        mapped = cellprofiler_object_spectrum(row, img[region].mean() / 255, top[region].mean() / 255)
        np.testing.assert_allclose(mapped, theirs, atol=1e-9)
