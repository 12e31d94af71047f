"""Progressive resizing: the first epochs at a smaller side, then the same weights and optimizer at input_size.

Known by construction: a progressive training must follow exactly the learning-rate schedule and step count
of one training over all its epochs (the optimizer state is carried over, not restarted), report each epoch's
image side, keep only a full-size epoch, and save a model that takes ``input_size`` images.
"""

from __future__ import annotations

import keras  # a required dependency: a broken Keras/TensorFlow install fails these tests, never skips them
import numpy as np
import pandas as pd
import pytest

from hybridwbc.cnn.estimators import CNNClassifier
from hybridwbc.cnn.training import carry_over, compile_model

SMALL = dict(input_size=32, backbone_params={"depth": 2, "width": 8}, epochs=4, batch_size=8, patience=0,
             validation_fraction=0.25, embed_batch_size=16, random_state=0, verbose=0)


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """32 synthetic cells (2 classes) at 48 px: image paths ``(n, 1)`` and labels."""
    from hybridwbc.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("syn")
    manifest = pd.read_csv(generate_dataset(root, ["lymphocyte", "eosinophil"], n_per_class=16, size=48, seed=1))
    paths = [str(root / p) for p in manifest["path"]]
    return np.asarray(paths, dtype=object).reshape(-1, 1), manifest["label"].to_numpy(dtype=object)


@pytest.fixture(scope="module")
def pair(cells):
    """The same data trained plainly at 32 px and progressively (2 epochs at 24 px, then 2 at 32 px)."""
    X, y = cells
    plain = CNNClassifier(**SMALL).fit(X, y)
    prog = CNNClassifier(**SMALL, progressive_size=24, progressive_epochs=2).fit(X, y)
    return plain, prog


def test_each_epoch_reports_its_image_side(pair):
    plain, prog = pair
    assert prog.history_["input_size"] == [24, 24, 32, 32]
    assert "input_size" not in plain.history_  # a plain training's history is as before
    assert all(len(v) == 4 for v in prog.history_.values())
    # each stage's compiled steps are traced once, the low-resolution stage's named with its side
    assert prog.tracing_counts_ == {"validate": 1, "recalibrate": 1, "validate@24": 1, "recalibrate@24": 1}


def test_the_schedule_and_the_step_count_go_on_as_in_one_training(pair):
    plain, prog = pair
    # a restarted optimizer would warm up again from lr / 10 and count its steps from zero
    np.testing.assert_allclose(prog.history_["lr"], plain.history_["lr"], rtol=1e-6)
    assert int(prog.model_.optimizer.iterations.numpy()) == int(plain.model_.optimizer.iterations.numpy()) > 0


def test_only_a_full_size_epoch_is_kept_and_the_model_takes_input_size(pair, cells):
    _, prog = pair
    assert prog.best_epoch_ == 2 + int(np.argmin(prog.history_["val_loss"][2:])) + 1
    assert tuple(prog.model_.inputs[0].shape[1:]) == (32, 32, 3)
    X, _ = cells
    p = prog.predict_proba(X[:5])
    assert p.shape == (5, 2) and np.allclose(p.sum(axis=1), 1.0)


def test_a_progressive_training_has_its_own_cache_entry(cells, tmp_path):
    X, y = cells
    plain = CNNClassifier(**{**SMALL, "epochs": 2}, cache_dir=str(tmp_path)).fit(X, y)
    prog = CNNClassifier(**{**SMALL, "epochs": 2}, progressive_size=24, progressive_epochs=1,
                         cache_dir=str(tmp_path)).fit(X, y)
    assert not plain.from_cache_ and not prog.from_cache_
    again = CNNClassifier(**{**SMALL, "epochs": 2}, progressive_size=24, progressive_epochs=1,
                          cache_dir=str(tmp_path)).fit(X, y)
    assert again.from_cache_ and again.history_["input_size"] == [24, 32]


def test_the_full_size_stage_draws_its_own_data_order(cells, monkeypatch):
    """A new stream with the first stage's seed would replay the first stage's file order and augmentation."""
    import hybridwbc.cnn.training as training

    seeds, real = [], training.image_dataset

    def spy(*args, **kwargs):
        if kwargs.get("shuffle_seed") is not None:
            seeds.append(kwargs["shuffle_seed"])
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "image_dataset", spy)
    X, y = cells
    CNNClassifier(**{**SMALL, "epochs": 2}, progressive_size=24, progressive_epochs=1).fit(X, y)
    assert len(seeds) == 2 and seeds[0] == SMALL["random_state"] and seeds[1] != seeds[0]


def _compiled(size: int, width: int = 8):
    m = CNNClassifier(**{**SMALL, "backbone_params": {"depth": 2, "width": width}}, dropout=0.0).build_model(2, size)
    compile_model(m, "cosine", 2e-3, 1e-4, steps=2, epochs=2)
    return m


def test_carry_over_copies_weights_and_optimizer_state():
    keras.utils.set_random_seed(0)
    src, dst = _compiled(24), _compiled(32)
    x = np.random.default_rng(0).uniform(0, 255, (8, 24, 24, 3)).astype("float32")
    src.fit(x, np.arange(8) % 2, epochs=1, batch_size=4, verbose=0)
    carry_over(src, dst)
    for a, b in zip(src.get_weights(), dst.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(src.optimizer.variables, dst.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(dst.optimizer.iterations.numpy()) == 2


def test_a_carried_over_model_takes_the_same_next_step():
    """Behavioural check of the variable pairing: after carry_over, one more identical training step on the
    source and on the copy gives the same weights (a moment paired with the wrong weight would not)."""
    keras.utils.set_random_seed(0)
    src, dst = _compiled(24), _compiled(24)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (8, 24, 24, 3)).astype("float32")
    yy = np.arange(8) % 2
    src.fit(x, yy, epochs=1, batch_size=8, verbose=0)
    carry_over(src, dst)
    for m in (src, dst):  # no dropout: the step is a function of the weights, the optimizer state and the batch
        m.train_on_batch(x, yy)
    for a, b in zip(src.get_weights(), dst.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_carry_over_refuses_another_architecture():
    with pytest.raises(ValueError, match=r"their weights differ.*\(global pooling\)"):
        carry_over(_compiled(24, width=8), _compiled(32, width=4))
