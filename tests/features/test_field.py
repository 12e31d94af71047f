import numpy as np
import pytest

from hybridwbc.data.synthetic import PROFILES, draw_cell
from hybridwbc.errors import NoCellFoundError
from hybridwbc.features.field import FieldFeaturizer


def _field(n_cells: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    canvas = np.full((192, 192, 3), (232, 222, 214), np.uint8)
    spots = [(8, 8), (8, 104), (104, 56)][:n_cells]
    for y, x in spots:
        cell = draw_cell(rng, PROFILES["lymphocyte"], size=80)
        tile = canvas[y:y + 80, x:x + 80]
        tile[cell.cell] = cell.image[cell.cell]
    return canvas


def test_counts_cells_and_aggregates():
    f = FieldFeaturizer(families=("geometry", "size_ratio")).fit()
    names = f.feature_names()
    v3 = f.featurize(_field(3))
    assert v3.shape == (len(names),) and names[-1] == "field__n_cells"
    assert v3[-1] == 3 and np.isfinite(v3).all()
    assert f.featurize(_field(1))[-1] == 1
    capped = FieldFeaturizer(families=("size_ratio",), max_cells=2).featurize(_field(3))
    assert capped[-1] == 2
    assert "mode" not in f.get_params() and f.mode == "field"


def test_blank_field_has_no_cell():
    with pytest.raises(NoCellFoundError):
        FieldFeaturizer(families=("geometry",)).featurize(np.full((96, 96, 3), 230, np.uint8))
