"""A CNN's training shows one progress bar (verbose=1) or one line per epoch (verbose=2), never both."""

import numpy as np
import pandas as pd
import pytest

from hybridwbc.cnn.estimators import CNNClassifier

TINY = dict(input_size=32, backbone_params={"depth": 2, "width": 8}, epochs=2, batch_size=8,
            validation_fraction=0.25, embed_batch_size=16, random_state=0)


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    from hybridwbc.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("syn")
    m = pd.read_csv(generate_dataset(root, ["lymphocyte", "eosinophil"], n_per_class=8, size=32, seed=0))
    return np.asarray([str(root / p) for p in m["path"]], dtype=object).reshape(-1, 1), m["label"].to_numpy(object)


@pytest.mark.parametrize("verbose", [1, 2])
def test_training_progress(cells, tmp_path, capfd, verbose):
    X, y = cells
    CNNClassifier(**TINY, verbose=verbose, cache_dir=str(tmp_path / f"cache{verbose}")).fit(X, y)
    out, err = capfd.readouterr()
    epoch_lines = [ln for ln in out.splitlines() if ln.startswith("[cnn] epoch")]
    assert len([ln for ln in out.splitlines() if ln.startswith("[cnn] kept epoch")]) == 1
    if verbose == 1:
        assert epoch_lines == [] and "cnn:" in err and "epoch" in err  # tqdm's bar, on stderr
    else:
        assert [ln.split()[2] for ln in epoch_lines] == ["1/2", "2/2"] and "cnn:" not in err
