"""Stain and acquisition augmentation (hybridwbc.cnn.augment) and the backbone.augmentation option."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import tensorflow as tf

from hybridwbc.cnn.augment import (
    augmentation_changes,
    augmentation_options,
    gaussian_blur,
    jpeg_compression,
    stain_jitter,
)
from hybridwbc.cnn.estimators import CNNClassifier
from hybridwbc.cnn.images import augment_microscopy
from hybridwbc.errors import ConfigError

#: sha256 of ``augment_microscopy(32)(IMAGE, seed)`` computed with the code before the options existed
#: (TensorFlow 2.21, CPU): the default augmentation must stay bit-identical (cached models, tables).
BEFORE = {(7, 3): "528d6fa382ae777997601d1589c9518d76cea5d38be887cbae6f2f1b99059f5e",
          (0, 0): "37769be647170a755a65aa393f2ed3eddb8abf8bf7a1f74d80ad644de4f424ba",
          (123, 45): "c8227863520502e588c2e5258362aae159149dfbf8a37173cb2be014b227433a"}

IMAGE = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.float32)
#: Every amount at 0: only the flips and 90-degree rotations remain.
BARE = dict(scale=0, shift=0, brightness=0, contrast=0, saturation=0, hue=0, gain=0)
PRESET = dict(scale=0.2, saturation=0.2, hue=0.04, stain=0.05, blur_sigma=1.0, jpeg_quality_min=60)


def _seed(a: int, b: int):
    return tf.constant([a, b], tf.int64)


def _digest(x) -> str:
    return hashlib.sha256(np.ascontiguousarray(x.numpy()).tobytes()).hexdigest()


def _original(size, scale=0.1, shift=0.03, brightness=0.08, contrast=0.1, saturation=0.1, hue=0.02, stain=0.05):
    """A verbatim copy of the augmentation before the options existed (the reference of the default path)."""
    pad = int(np.ceil(size * (scale + shift)))

    def aug(x, seed):
        s = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=11)
        x = tf.image.stateless_random_flip_left_right(x, s[0])
        x = tf.image.stateless_random_flip_up_down(x, s[1])
        x = tf.image.rot90(x, k=tf.random.stateless_uniform([], s[2], 0, 4, dtype=tf.int32))
        padded = tf.pad(x, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        full = float(size + 2 * pad)
        side = size * tf.random.stateless_uniform([], s[3], 1.0 - scale, 1.0 + scale) / full
        cy = 0.5 + tf.random.stateless_uniform([], s[4], -shift, shift) * size / full
        cx = 0.5 + tf.random.stateless_uniform([], s[5], -shift, shift) * size / full
        box = tf.stack([cy - side / 2, cx - side / 2, cy + side / 2, cx + side / 2])[None]
        x = tf.image.crop_and_resize(padded[None], box, [0], [size, size])[0]
        x = x / 255.0
        x = tf.image.stateless_random_brightness(x, brightness, s[6])
        x = tf.image.stateless_random_contrast(x, 1.0 - contrast, 1.0 + contrast, s[7])
        x = tf.image.stateless_random_saturation(x, 1.0 - saturation, 1.0 + saturation, s[8])
        x = tf.image.stateless_random_hue(x, hue, s[9])
        x = x * tf.random.stateless_uniform([1, 1, 3], s[10], 1.0 - stain, 1.0 + stain)
        return tf.clip_by_value(x, 0.0, 1.0) * 255.0

    return aug


# ---------------------------------------------------------------------------------------------- default path
@pytest.mark.parametrize("mapping", [None, {}, {"stain": 0.0, "hue": None, "jpeg_quality_min": None},
                                     {"hue": 0.02, "gain": 0.05, "jpeg_quality_max": 100}])
def test_the_default_augmentation_is_bit_identical_to_the_original(mapping):
    aug = augment_microscopy(32, **augmentation_options(mapping))
    x = tf.constant(IMAGE)
    for seed, digest in BEFORE.items():
        out = aug(x, _seed(*seed))
        assert np.array_equal(out.numpy(), _original(32)(x, _seed(*seed)).numpy())
        assert _digest(out) == digest
    assert augmentation_changes(mapping) == {}


def test_the_presets_draws_are_frozen():
    # a trained model with non-default augmentation is cached under its settings: if these draws change,
    # bump hybridwbc.cnn.training.TRAINING_VERSION (computed on TensorFlow 2.21, CPU)
    out = augment_microscopy(32, **augmentation_options(PRESET))(tf.constant(IMAGE), _seed(7, 3))
    assert _digest(out) == "9e5eef06f00e755b170278a31c97ea7fbac51ae08a945d4f6b603fdb3a22f492"


def test_with_every_amount_at_zero_only_flips_and_rotations_remain():
    out = augment_microscopy(32, **augmentation_options(BARE))(tf.constant(IMAGE), _seed(5, 1)).numpy()
    dihedral = [np.rot90(f, k) for f in (IMAGE, IMAGE[::-1], IMAGE[:, ::-1], IMAGE[::-1, ::-1]) for k in range(4)]
    assert any(np.array_equal(out, d) for d in dihedral)


# ---------------------------------------------------------------------------------------------- each op
@pytest.mark.parametrize("op", [{"hue": 0.1}, {"saturation": 0.5}, {"stain": 0.1}, {"blur_sigma": 1.5},
                                {"scale": 0.3}, {"jpeg_quality_min": 20, "jpeg_quality_max": 40}])
def test_each_op_changes_the_image_when_on_and_not_when_off(op):
    x, seed = tf.constant(IMAGE), _seed(11, 2)
    bare = augment_microscopy(32, **augmentation_options(BARE))(x, seed).numpy()
    on = augment_microscopy(32, **augmentation_options({**BARE, **op}))
    a, b = on(x, seed).numpy(), on(x, seed).numpy()
    assert np.array_equal(a, b) and not np.allclose(a, bare, atol=0.5)
    assert a.shape == (32, 32, 3) and a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 255.0
    assert augmentation_changes(op) == {k: float(v) if k in ("hue", "saturation", "stain", "blur_sigma", "scale")
                                        else v for k, v in op.items()}


@pytest.mark.parametrize("op, args", [(stain_jitter, (0.1,)), (gaussian_blur, (2.0,)), (jpeg_compression, (10, 30))])
def test_ops_are_pure_functions_of_the_seed_and_keep_the_range(op, args):
    x = tf.constant(IMAGE / 255.0)
    a, b, c = (op(x, *args, _seed(*s)).numpy() for s in ((1, 2), (1, 2), (1, 3)))
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.allclose(a, IMAGE / 255.0, atol=1e-3)
    assert a.shape == (32, 32, 3) and 0.0 <= a.min() and a.max() <= 1.0


def test_stain_jitter_scales_optical_density_and_keeps_white_near_white():
    x = tf.constant(np.stack([np.full((4, 4), 1.0), np.full((4, 4), 0.3), np.full((4, 4), 0.6)], -1), tf.float32)
    y = stain_jitter(x, 0.05, _seed(3, 3)).numpy()
    od_in = -np.log((x.numpy() * 255 + 1) / 256)
    od_out = -np.log((y * 255 + 1) / 256)
    assert np.all(np.abs(od_out - od_in) <= 0.05 * od_in + 0.05 + 1e-5)  # |a od + b - od| <= s od + s
    assert y[..., 0].min() > 0.9  # white background stays light


def test_blur_keeps_a_flat_image_and_smooths_an_edge():
    flat = tf.fill([32, 32, 3], 0.4)
    np.testing.assert_allclose(gaussian_blur(flat, 2.0, _seed(0, 1)).numpy(), 0.4, atol=1e-6)
    edge = np.zeros((32, 32, 3), np.float32)
    edge[:, 16:] = 1.0
    out = gaussian_blur(tf.constant(edge), 3.0, _seed(0, 1)).numpy()
    assert 0.0 < out[0, 15, 0] < 0.5 < out[0, 16, 0] < 1.0


def test_jpeg_quality_range_includes_both_ends():
    x = tf.constant(IMAGE / 255.0)
    fixed = [jpeg_compression(x, 50, 50, _seed(k, 0)).numpy() for k in range(3)]
    assert all(np.array_equal(fixed[0], f) for f in fixed)  # low == high: one quality
    np.testing.assert_array_equal(fixed[0], tf.image.adjust_jpeg_quality(x, 50).numpy())


def test_the_preset_stream_repeats_exactly(save_png, tmp_path):
    from hybridwbc.cnn.images import image_dataset

    rng = np.random.default_rng(1)
    paths = [str(save_png(tmp_path / f"{i}.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)))
             for i in range(8)]

    def stream():
        aug = augment_microscopy(32, **augmentation_options(PRESET))
        return [x.numpy() for x, _ in image_dataset(paths, 32, 4, labels=np.arange(8) % 2, shuffle_seed=5,
                                                    augment=aug)]

    first, second = stream(), stream()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert all(0.0 <= a.min() and a.max() <= 255.0 for a in first)


# ---------------------------------------------------------------------------------------------- config
def test_the_schema_declares_the_same_fields_and_defaults():
    from dataclasses import fields

    from hybridwbc.cnn.augment import DEFAULTS
    from hybridwbc.config import AugmentConfig

    assert {f.name: f.default for f in fields(AugmentConfig)} == DEFAULTS


@pytest.mark.parametrize("mapping, match", [
    ({"blur_sigma": -1.0}, r"backbone\.augmentation\.blur_sigma must be in \[0, 8\]; received -1"),
    ({"stain": 1.5}, r"backbone\.augmentation\.stain must be in \[0, 1\); received 1\.5"),
    ({"jpeg_quality_min": -5}, r"0 <= jpeg_quality_min <= jpeg_quality_max <= 100; received jpeg_quality_min=-5"),
    ({"jpeg_quality_min": 50, "jpeg_quality_max": 101}, r"received jpeg_quality_min=50, jpeg_quality_max=101"),
    ({"jpeg_quality_min": 90, "jpeg_quality_max": 80}, r"jpeg_quality_min=90, jpeg_quality_max=80"),
    ({"jpeg_quality_min": 60.5}, r"jpeg_quality_min must be an integer; received 60\.5"),
    ({"hue": "strong"}, r"backbone\.augmentation\.hue must be a number; received 'strong'"),
    ({"stian": 0.1}, r"Unknown backbone\.augmentation key\(s\) \['stian'\]"),
    ({"scale": 0.9, "shift": 0.2}, r"scale \+ shift must be below 1"),
])
def test_bad_augmentation_is_one_clear_error(mapping, match):
    with pytest.raises(ConfigError, match=match):
        augmentation_options(mapping)
    with pytest.raises(ConfigError, match=match):
        CNNClassifier(input_size=32, augmentation=mapping).validate()


def test_training_key_holds_only_changed_augmentation():
    tiny = dict(input_size=32, backbone_params={"depth": 2, "width": 8})
    assert "augmentation" not in CNNClassifier(**tiny, augmentation={"stain": 0.0, "hue": 0.02}).training_settings()
    assert CNNClassifier(**tiny, augmentation=PRESET).training_settings()["augmentation"] == {
        k: float(v) if k != "jpeg_quality_min" else v for k, v in PRESET.items()}
    assert "augmentation" not in CNNClassifier(**tiny, augment=False, augmentation=PRESET).training_settings()


def test_clone_keeps_the_augmentation_mapping():
    from sklearn.base import clone

    est = CNNClassifier(input_size=32, augmentation=dict(PRESET))
    assert clone(est).get_params()["augmentation"] == PRESET


def test_the_augmentation_group_reaches_the_cnn(compose):
    from hybridwbc.config import build_estimator

    cfg, choices = compose("classifier=cnn_softmax", "backbone=tiny", "augmentation=acquisition",
                           "backbone.augmentation.blur_sigma=0.5")
    est = build_estimator(cfg.classifier, cfg.seed)
    est.validate()
    assert choices["augmentation"] == "acquisition"
    assert augmentation_changes(est.augmentation) == {**{k: float(v) if k != "jpeg_quality_min" else v
                                                         for k, v in PRESET.items()}, "blur_sigma": 0.5}
    default, _ = compose("classifier=cnn_softmax")
    assert augmentation_changes(build_estimator(default.classifier, default.seed).augmentation) == {}


def test_a_tiny_cnn_trains_with_the_preset_under_its_own_key(tmp_path):
    import pandas as pd

    from hybridwbc.data.synthetic import generate_dataset

    manifest = pd.read_csv(generate_dataset(tmp_path / "syn", ["lymphocyte", "eosinophil"], n_per_class=6,
                                            size=40, seed=0))
    X = np.asarray([str(tmp_path / "syn" / p) for p in manifest["path"]], dtype=object).reshape(-1, 1)
    tiny = dict(input_size=32, backbone_params={"depth": 2, "width": 8}, epochs=1, batch_size=4,
                validation_fraction=0, bn_recalibration=0, random_state=0, verbose=0, cache_dir=str(tmp_path / "c"))
    est = CNNClassifier(**tiny, augmentation=PRESET).fit(X, manifest["label"])
    assert len(est.history_["loss"]) == 1 and np.isfinite(est.history_["loss"][0])
    assert est.predict_proba(X).shape == (12, 2)
    assert len(list((tmp_path / "c" / "cnn_models").iterdir())) == 1
    plain = CNNClassifier(**tiny).fit(X, manifest["label"])  # another key: trained, not read from the cache
    assert not plain.from_cache_ and len(list((tmp_path / "c" / "cnn_models").iterdir())) == 2
