"""Segmentation overlays: outlines drawn on the cell, a saved grid, mismatched masks refused."""

import numpy as np
import pytest

from hybridwbc.data.synthetic import PROFILES, draw_cell
from hybridwbc.report.overlay import draw_overlay, heatmap_overlay, overlay_grid


def test_overlay_draws_outlines(tmp_path):
    c = draw_cell(np.random.default_rng(0), PROFILES["neutrophil"], size=96)
    out = draw_overlay(c.image, c.nucleus, c.cytoplasm)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    assert (out != c.image).any(axis=2).sum() > 50
    assert (out[~(c.cell)] == c.image[~c.cell]).all()  # outlines stay on the cell
    path = overlay_grid([(c.image, c.nucleus, c.cytoplasm, "neutrophil"), (c.image, None, None, "no cell")],
                        tmp_path / "sub" / "grid.png", title="overlays")
    assert path.endswith("grid.png") and (tmp_path / "sub" / "grid.png").stat().st_size > 1000


def test_overlay_rejects_mismatched_masks():
    with pytest.raises(ValueError, match="Masks must match"):
        draw_overlay(np.zeros((10, 10, 3), np.uint8), np.zeros((5, 5), bool), None)


def test_heatmap_overlay_colours_only_where_the_map_is_hot():
    c = draw_cell(np.random.default_rng(0), PROFILES["lymphocyte"], size=64)
    heat = np.zeros((64, 64))
    heat[:16, :16] = 1.0  # a hot corner, off the cell
    out = heatmap_overlay(c.image, heat, c.nucleus, c.cytoplasm)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert (out[:16, :16] != c.image[:16, :16]).any(axis=2).all()  # jet red over the corner
    cold = ~c.cell.copy()
    cold[:16, :16] = False
    assert (out[cold] == c.image[cold]).all()  # no heat and no outline: the image unchanged
    np.testing.assert_array_equal(out[c.cell], draw_overlay(c.image, c.nucleus, c.cytoplasm)[c.cell])
    with pytest.raises(ValueError, match=r"heat map must match the image's 64x64 pixels; received \(8, 8\)"):
        heatmap_overlay(c.image, np.zeros((8, 8)), None, None)
