"""Segmentation overlays: outlines drawn on the cell, a saved grid, mismatched masks refused."""

import numpy as np
import pytest

from hybridwbc.data.synthetic import PROFILES, draw_cell
from hybridwbc.report.overlay import draw_overlay, overlay_grid


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
