"""Scale normalisation: cells drawn at two scales reach the model at one size."""

from dataclasses import replace

import numpy as np
import pytest

from hybridwbc.data.synthetic import PROFILES, draw_cell
from hybridwbc.errors import ConfigError
from hybridwbc.preprocess import ImageNormaliser
from hybridwbc.preprocess.scale import measure_cell, rescale_mpp
from hybridwbc.segment import Segmenter


def test_cells_at_two_scales_reach_one_size(rng):
    seg = Segmenter(mode="crop")
    small = draw_cell(rng, replace(PROFILES["lymphocyte"], cell_radius=0.30), size=120).image  # 120-px camera
    large = draw_cell(rng, replace(PROFILES["lymphocyte"], cell_radius=0.20), size=360).image  # 360-px camera
    d_small, d_large = measure_cell(small, seg)[0], measure_cell(large, seg)[0]
    assert d_large / d_small > 1.7  # twice the pixels per micrometre before
    norm = ImageNormaliser(scale="cell", side=128, fraction=0.37, segmenter=seg).fit([])
    a, b = norm.transform([small, large])
    assert a.shape == b.shape == (128, 128, 3) and a.dtype == np.uint8
    da, db = measure_cell(a, seg)[0], measure_cell(b, seg)[0]
    assert abs(da - db) / db < 0.06
    assert da == pytest.approx(0.37 * 128, rel=0.08)


def test_nucleus_scale_and_micrometres_per_pixel(rng):
    seg = Segmenter(mode="crop")
    cell = draw_cell(rng, PROFILES["monocyte"], size=150).image
    out = ImageNormaliser(scale="nucleus", side=96, fraction=0.3, segmenter=seg).fit([]).transform_image(cell)
    assert measure_cell(out, seg, "nucleus")[0] == pytest.approx(0.3 * 96, rel=0.1)
    assert rescale_mpp(cell[:, :100], 0.5, 0.25).shape == (300, 200, 3)
    mpp = ImageNormaliser(scale="mpp", um_per_px=0.1, target_um_per_px=0.2).fit([])
    assert mpp.transform_image(cell).shape == (75, 75, 3)


def test_unknown_measure_is_refused(cell_image):
    with pytest.raises(ConfigError, match="preprocess.scale.measure must be one of"):
        measure_cell(cell_image, Segmenter(), "membrane")
