"""Grad-CAM and its sanity checks (Adebayo et al. 2018) on a tiny CNN trained on synthetic cells.

The cells of the two classes are drawn from one profile that differs only in the nucleus colour, so the
evidence for the class lies in the nucleus by construction. The CNN is the project's own
(:class:`CNNClassifier`, nested backbone), 48 px, one conv per block, 12 epochs: a few seconds.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from scipy import ndimage

from hybridwbc.cnn.estimators import CNNClassifier
from hybridwbc.cnn.explain import (
    CamResult,
    cam_path,
    explain_images,
    explain_paths,
    grad_cam,
    randomisation_check,
    randomised_copy,
)
from hybridwbc.data.synthetic import CellProfile, draw_cell
from hybridwbc.report.overlay import mass_share

#: Identical cells but for the nucleus colour: the class is decided inside the nucleus.
PROFILES = {"purple": CellProfile(0.30, 0.7, "round", 1, (90, 40, 140), (200, 180, 200)),
            "green": CellProfile(0.30, 0.7, "round", 1, (60, 140, 80), (200, 180, 200))}
SMALL = dict(input_size=48, backbone_params={"depth": 2, "width": 8, "convs_per_block": 1}, batch_size=16,
             validation_fraction=0, augment=False, bn_recalibration=2, random_state=0, verbose=0)


def _cells(seed: int, n: int) -> list:
    out = []
    for k, (label, profile) in enumerate(PROFILES.items()):
        rng = np.random.default_rng([seed, k])
        out += [(draw_cell(rng, profile, size=48), label) for _ in range(n)]
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("nucleus_colour")
    paths, y = [], []
    for i, (cell, label) in enumerate(_cells(1, 40)):
        Image.fromarray(cell.image).save(root / f"{label}_{i}.png")
        paths.append(str(root / f"{label}_{i}.png"))
        y.append(label)
    est = CNNClassifier(epochs=12, **SMALL).fit(np.asarray(paths, dtype=object).reshape(-1, 1),
                                                np.asarray(y, dtype=object))
    return est, paths


@pytest.fixture(scope="module")
def held_out():
    return _cells(2, 10)


def _intensity(model, images, target=None) -> CamResult:
    """A broken explainer: the image's darkness, whatever the model (it still 'finds' the dark nucleus)."""
    maps = [1.0 - np.asarray(im, np.float64).mean(axis=-1) / 255.0 for im in images]
    return CamResult(maps=maps, target=np.zeros(len(maps), int), proba=np.zeros((len(maps), 2), np.float32))


def _constant(model, images, target=None) -> CamResult:
    maps = [np.ones(np.asarray(im).shape[:2]) for im in images]
    return CamResult(maps=maps, target=np.zeros(len(maps), int), proba=np.zeros((len(maps), 2), np.float32))


def test_most_heat_lies_in_the_nucleus_that_decides_the_class(trained, held_out):
    est, _ = trained
    res = explain_images(est, [c.image for c, _ in held_out])
    truth = np.array([label for _, label in held_out])
    assert np.mean(est.classes_[res.target] == truth) >= 0.9
    area = np.mean([c.nucleus.mean() for c, _ in held_out])
    inside = np.array([mass_share(m, c.nucleus) for m, (c, _) in zip(res.maps, held_out)])
    # the map is 12x12 upsampled to 48 px: allow the nucleus one half feature cell (2 px) of blur
    near = np.array([mass_share(m, ndimage.binary_dilation(c.nucleus, iterations=2))
                     for m, (c, _) in zip(res.maps, held_out)])
    assert inside.mean() > 3 * area
    assert near.mean() > 0.5
    assert all(m.shape == c.image.shape[:2] and m.dtype == np.float32 for m, (c, _) in zip(res.maps, held_out))


def test_grad_cam_passes_the_model_randomisation_check(trained, held_out):
    est, _ = trained
    x = np.stack([c.image for c, _ in held_out]).astype(np.float32)
    result = randomisation_check(grad_cam, est.model_, x, n_layers=2, threshold=0.5)
    assert result.passed, result.rho
    assert np.all(np.isfinite(result.rho)) and result.rho.mean() < 0.5


@pytest.mark.parametrize("broken", [_intensity, _constant])
def test_a_model_independent_explainer_fails_the_randomisation_check(trained, held_out, broken):
    est, _ = trained
    x = np.stack([c.image for c, _ in held_out]).astype(np.float32)
    result = randomisation_check(broken, est.model_, x, n_layers=2, threshold=0.5)
    assert not result.passed
    if broken is _intensity:  # it even "localises" the nucleus, which is why both checks are needed
        share = np.mean([mass_share(m, c.nucleus) for m, (c, _) in zip(broken(None, x).maps, held_out)])
        assert share > np.mean([c.nucleus.mean() for c, _ in held_out])
        np.testing.assert_allclose(result.rho, 1.0)
    else:
        assert np.isnan(result.rho).all()


def test_randomised_copy_reinitialises_only_the_top_layers(trained):
    est, _ = trained
    before = [w.copy() for w in est.model_.get_weights()]
    copy = randomised_copy(est.model_, n_layers=1, seed=3)
    for a, b in zip(before, est.model_.get_weights()):
        np.testing.assert_array_equal(a, b)
    new = copy.get_weights()
    changed = [i for i, (a, b) in enumerate(zip(before, new)) if not np.array_equal(a, b)]
    head = est.model_.get_layer("head")
    assert len(changed) >= 1 and all(before[i].shape in {tuple(head.kernel.shape), tuple(head.bias.shape)}
                                     for i in changed)
    with pytest.raises(ValueError, match=r"n_layers must be between 1 and 3 .*received 4"):
        randomised_copy(est.model_, n_layers=4)


def test_a_chosen_class_gives_its_own_map(trained, held_out):
    est, paths = trained
    images = [c.image for c, _ in held_out[:3]]
    predicted = explain_images(est, images)
    other = [str(est.classes_[1 - t]) for t in predicted.target]
    chosen = explain_images(est, images, target=other)
    assert [str(est.classes_[t]) for t in chosen.target] == other
    assert any(not np.allclose(a, b) for a, b in zip(predicted.maps, chosen.maps))
    np.testing.assert_allclose(chosen.proba, predicted.proba, rtol=1e-5)
    with pytest.raises(ValueError, match=r"Cannot explain class\(es\) \['basophil'\]: the CNN knows"):
        explain_images(est, images, target="basophil")
    read, res = explain_paths(est, paths[:2], batch_size=1)
    assert len(read) == len(res.maps) == 2 and res.proba.shape == (2, 2)
    assert explain_images(est, []).maps == []


def test_grad_cam_on_a_flat_model_and_a_named_layer():
    inp = keras.Input((16, 16, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="first")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", name="second")(a)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(b))
    model = keras.Model(inp, out)
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    res = grad_cam(model, x, target=[0, 2])
    assert [m.shape for m in res.maps] == [(16, 16), (16, 16)] and list(res.target) == [0, 2]
    assert all(0.0 <= m.min() and m.max() <= 1.0 for m in res.maps)
    np.testing.assert_allclose(res.proba, model.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
    prefix, tail = cam_path(model, layer="first")
    assert [t.name for t in tail][0] == "second"
    with pytest.raises(ValueError, match=r"has no layer named 'nope'"):
        cam_path(model, layer="nope")


def test_models_grad_cam_cannot_follow_are_refused():
    inp = keras.Input((8,))
    dense = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(inp), name="mlp")
    with pytest.raises(ValueError, match=r"Model 'mlp' has no layer with a 4-D .* Fix: pass layer="):
        cam_path(dense)
    img = keras.Input((8, 8, 3))
    c = keras.layers.Conv2D(2, 3, padding="same")(img)
    residual = keras.layers.Add(name="join")([c, keras.layers.Conv2D(2, 3, padding="same")(img)])
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(residual)
    ok = keras.Model(img, keras.layers.Dense(2, activation="softmax")(pooled), name="residual")
    assert [t.name for t in cam_path(ok)[1]][0] == "gap"  # a branching graph before the feature map is fine
    x = np.random.default_rng(0).uniform(0, 255, (1, 8, 8, 3)).astype(np.float32)
    assert grad_cam(ok, x).maps[0].shape == (8, 8)
    two = keras.layers.Add(name="heads")([keras.layers.Dense(2)(pooled), keras.layers.Dense(2)(pooled)])
    model = keras.Model(img, keras.layers.Softmax()(two), name="branchy")
    with pytest.raises(ValueError, match=r"chain of single-input layers after its feature map; layer '.*' of "
                                         r"model 'branchy' has several inputs, is called more than once or branches"):
        cam_path(model)


def test_mass_share():
    heat = np.zeros((4, 4))
    heat[0, 0], heat[3, 3] = 3.0, 1.0
    region = np.zeros((4, 4), bool)
    region[0, 0] = True
    assert mass_share(heat, region) == pytest.approx(0.75)
    assert np.isnan(mass_share(np.zeros((4, 4)), region))
    with pytest.raises(ValueError, match=r"Heat map \(4, 4\) and region \(2, 2\) must have the same shape"):
        mass_share(heat, np.zeros((2, 2), bool))


def test_a_head_on_embeddings_and_features_is_scored_per_family(trained):
    """``hybrid``: the head's permutation importance covers the embeddings as one family and each feature family."""
    from sklearn.ensemble import RandomForestClassifier

    from hybridwbc.cnn.heads import EmbeddingClassifier
    from hybridwbc.evaluate.importance import family_importance

    _, paths = trained
    y = np.array([p.rsplit("/", 1)[1].split("_")[0] for p in paths], dtype=object)
    rng = np.random.default_rng(0)
    signal = (y == "green").astype(float) * 4.0 + rng.normal(size=len(y))
    X = np.column_stack([np.asarray(paths, dtype=object), rng.normal(size=len(y)), signal]).astype(object)
    names = ["path", "noise__a", "signal__b"]
    train, test = np.arange(len(y))[::2], np.arange(len(y))[1::2]
    hybrid = EmbeddingClassifier(cnn=CNNClassifier(epochs=1, **SMALL),
                                 head=RandomForestClassifier(n_estimators=50, random_state=0)).fit(X[train], y[train])
    t = family_importance([hybrid], [(train, test)], X, y, names, n_repeats=3, whole=False, n_bootstrap=20)
    assert set(t["stage"]) == {"head"} and set(t["family"]) == {"embedding", "noise", "signal"}
    assert t.set_index("family").loc["embedding", "n_columns"] == hybrid.cnn_.n_embed_
    assert t["n_rows"].iloc[0] == len(test)


def test_grad_cam_reaches_into_a_residual_application_backbone():
    model = CNNClassifier(backbone="mobilenetv3small", input_size=64).build_model(3)
    prefix, tail = cam_path(model)
    assert [t.name for t in tail] == ["pool", "embedding", "dropout", "head"]
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    res = grad_cam(model, x, target=1)
    assert all(m.shape == (64, 64) and np.isfinite(m).all() and m.max() <= 1.0 for m in res.maps)
    np.testing.assert_allclose(res.proba, model.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
