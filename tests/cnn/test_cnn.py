"""Keras CNN backbone: registry, offline weights, tf.data pipeline, training, cached embeddings, saving.

Everything trains a tiny backbone (2 blocks, 8 filters) for one epoch on 32 px synthetic cells, so the file
stays well under a minute on two cores. No test downloads anything: the ImageNet test replaces Keras's
downloader with one that fails the way an offline machine does.
"""

from __future__ import annotations

import keras  # a required dependency: a broken Keras/TensorFlow install fails these tests, never skips them
import numpy as np
import pandas as pd
import pytest

from hybridwbc.cnn.backbones import BACKBONES, validate_backbone
from hybridwbc.cnn.estimators import CNNClassifier
from hybridwbc.cnn.heads import EmbeddingClassifier
from hybridwbc.cnn.paths import split_paths
from hybridwbc.errors import ConfigError, ImageReadError, WeightsUnavailableError

TINY = dict(input_size=32, backbone_params={"depth": 2, "width": 8}, epochs=1, batch_size=8,
            validation_fraction=0.25, embed_batch_size=16, random_state=0, verbose=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """24 synthetic cells (2 classes) at 48 px, plus one corrupt file labelled like the others."""
    from hybridwbc.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("syn")
    manifest = pd.read_csv(generate_dataset(root, ["lymphocyte", "eosinophil"], n_per_class=12, size=48, seed=0))
    paths = [str(root / p) if not str(p).startswith("/") else str(p) for p in manifest["path"]]
    bad = root / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return {"paths": paths, "y": manifest["label"].to_numpy(dtype=object), "bad": str(bad), "root": root}


def _X(paths):
    return np.asarray(paths, dtype=object).reshape(-1, 1)


@pytest.fixture(scope="module")
def fitted(data, tmp_path_factory):
    """One-epoch tiny CNN, trained with the corrupt image among its training rows."""
    cache = tmp_path_factory.mktemp("cache")
    X = _X(data["paths"] + [data["bad"]])
    y = np.append(data["y"], "lymphocyte")
    return CNNClassifier(cache_dir=str(cache), **TINY).fit(X, y)


# ---------------------------------------------------------------------------------------------- registry
def test_registry_names_the_promised_backbones():
    assert {"compact", "mobilenetv3small", "efficientnetb0", "resnet50"} <= set(BACKBONES)
    assert validate_backbone("ResNet50", 32).name == "resnet50"


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="mobilenetv2", input_size=96), r"Unknown backbone 'mobilenetv2'\. Expected one of"),
    (dict(name="resnet50", input_size=24), r"Input size 24 is smaller than backbone 'resnet50' allows \(minimum 32"),
    (dict(name="compact", input_size=16, params={"depth": 5}), r"minimum 32 px"),
    (dict(name="compact", input_size=64, params={"depth": 0}), r"depth must be at least 1"),
    (dict(name="compact", input_size=64, pooling="sum"), r"Unknown pooling 'sum'"),
])
def test_validate_backbone_rejects_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        validate_backbone(**kwargs)


@pytest.mark.parametrize("override, match", [
    (dict(input_size=8, backbone="efficientnetb0"), r"smaller than backbone 'efficientnetb0'"),
    (dict(lr_schedule="step"), r"Unknown lr_schedule 'step'"),
    (dict(validation_fraction=0.6), r"validation_fraction must be in \[0, 0.5\)"),
    (dict(epochs=0), r"epochs and batch_size must be at least 1"),
    (dict(class_weight="inverse"), r"class_weight must be 'balanced' or null"),
    (dict(precision="float16"), r"Unknown precision 'float16'"),
    (dict(progressive_size=32), r"progressive_size must be smaller than input_size \(32\)"),
    (dict(progressive_size=24, progressive_epochs=1), r"progressive_epochs must be at least 1 and fewer than epochs"),
    (dict(progressive_size=24, epochs=3), r"progressive_epochs must be at least 1 and fewer than epochs"),
    (dict(progressive_epochs=2, epochs=3), r"progressive_epochs=2 needs progressive_size"),
    (dict(progressive_size=8, progressive_epochs=1, epochs=2, backbone="efficientnetb0"),
     r"smaller than backbone 'efficientnetb0'"),
])
def test_classifier_validate_rejects_bad_settings(override, match):
    with pytest.raises(ConfigError, match=match):
        CNNClassifier(**{**TINY, **override}).validate()


@pytest.mark.parametrize("name", ["compact", "mobilenetv3small", "efficientnetb0", "resnet50"])
def test_build_backbone_shapes(name):
    from hybridwbc.cnn.build import build_backbone

    model = build_backbone(name, 32, pooling="max", params={"depth": 2, "width": 4} if name == "compact" else None)
    out = model(np.full((2, 32, 32, 3), 128.0, np.float32), training=False)
    assert out.shape[0] == 2 and len(out.shape) == 2


def test_imagenet_offline_is_one_clear_line(monkeypatch):
    from keras.src.utils import file_utils

    from hybridwbc.cnn.build import build_backbone

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError,
                       match=r"ImageNet weights for MobileNetV3Small could not be downloaded .*Pass a local file "
                             r"instead: weights=/path/to/") as info:
        build_backbone("mobilenetv3small", 32, weights="imagenet")
    assert "\n" not in str(info.value)


def test_weights_options(tmp_path):
    from hybridwbc.cnn.build import build_backbone

    with pytest.raises(ConfigError, match=r"Backbone 'compact' has no ImageNet weights"):
        build_backbone("compact", 32, weights="imagenet")
    with pytest.raises(WeightsUnavailableError, match=r"does not exist"):
        build_backbone("compact", 32, weights=str(tmp_path / "missing.weights.h5"))
    junk = tmp_path / "junk.weights.h5"
    junk.write_text("not hdf5")
    with pytest.raises(WeightsUnavailableError, match=r"Cannot load backbone weights from"):
        build_backbone("compact", 32, weights=str(junk), params={"depth": 2, "width": 4})
    params = {"depth": 2, "width": 4}
    a = build_backbone("compact", 32, params=params)
    path = tmp_path / "compact.weights.h5"
    a.get_layer("compact").save_weights(path)
    b = build_backbone("compact", 32, weights=str(path), params=params)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


# ---------------------------------------------------------------------------------------------- training
def test_fit_skips_corrupt_image_and_keeps_shapes(fitted, data):
    assert list(fitted.classes_) == ["eosinophil", "lymphocyte"]
    assert [d["path"] for d in fitted.skipped_] == [data["bad"]]
    assert "ImageReadError" in fitted.skipped_[0]["reason"]
    assert set(fitted.history_) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 1 for v in fitted.history_.values())
    assert fitted.best_epoch_ == 1 and 0.0 <= fitted.val_accuracy_ <= 1.0
    X = _X(data["paths"])
    proba = fitted.predict_proba(X)
    assert proba.shape == (24, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert set(fitted.predict(X)) <= set(fitted.classes_)
    E = fitted.transform(X)
    assert E.shape == (24, fitted.n_embed_) and fitted.n_embed_ == 16  # 8 filters * 2 in the second block
    # the softmax head on the embeddings equals the Keras model run end to end
    from hybridwbc.cnn.images import image_dataset

    images = np.concatenate([x.numpy() for x, _ in image_dataset(data["paths"], 32, 8)])
    np.testing.assert_allclose(fitted.model_(images, training=False).numpy(), proba, atol=1e-5)


def test_prediction_refuses_an_undecodable_image(fitted, data):
    with pytest.raises(ImageReadError, match=r"1 of 2 images could not be decoded"):
        fitted.transform(_X([data["paths"][0], data["bad"]]))


def test_second_extraction_hits_the_cache_without_keras(fitted, data, monkeypatch):
    import hybridwbc.cnn.embed as cnn

    X = _X(data["paths"])
    first = fitted.embed(data["paths"])
    assert first.n_cached + first.n_computed == 24
    E = fitted.transform(X)

    def no_keras(*args, **kwargs):
        raise AssertionError("Keras was called for a cached image")

    monkeypatch.setattr(cnn, "_run_model", no_keras)
    again = fitted.embed(data["paths"])
    assert again.n_cached == 24 and again.n_computed == 0
    np.testing.assert_array_equal(fitted.transform(X), E)


def test_extraction_skips_and_reports_bad_files(fitted, data):
    from hybridwbc.cnn.embed import extract_embeddings

    res = extract_embeddings(fitted._embedder, [data["paths"][0], data["bad"], data["paths"][1]], 32, batch_size=2)
    assert res.index.tolist() == [0, 2] and res.X.shape == (2, 16)
    assert res.skipped["path"].tolist() == [data["bad"]]


def test_pickle_and_keras_file_reload_give_same_embeddings(fitted, data, tmp_path):
    import joblib

    X = _X(data["paths"][:8])
    fitted_nocache = fitted  # compare on fresh Keras passes, not cache hits
    ref = fitted_nocache._embedder(np.zeros((1, 32, 32, 3), np.float32), training=False).numpy()
    joblib.dump(fitted, tmp_path / "cnn.joblib")
    loaded = joblib.load(tmp_path / "cnn.joblib")
    loaded.cache_dir = None
    fitted_cache, fitted.cache_dir = fitted.cache_dir, None
    try:
        np.testing.assert_allclose(loaded.transform(X), fitted.transform(X), atol=1e-5)
        np.testing.assert_allclose(loaded.predict_proba(X), fitted.predict_proba(X), atol=1e-5)
    finally:
        fitted.cache_dir = fitted_cache
    np.testing.assert_allclose(loaded._embedder(np.zeros((1, 32, 32, 3), np.float32), training=False).numpy(),
                               ref, atol=1e-5)
    path = fitted.save_keras(tmp_path / "model")
    assert path.name == "cnn.keras" and path.is_file()
    reloaded = keras.models.load_model(path, compile=False)
    emb = keras.Model(reloaded.input, reloaded.get_layer("embedding").output)
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(emb(images, training=False).numpy(),
                               fitted._embedder(images, training=False).numpy(), atol=1e-5)


def test_same_rows_and_settings_reuse_the_trained_model(fitted, data, monkeypatch):
    from sklearn.base import clone

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(keras.Model, "fit", no_training)
    X = _X(data["paths"] + [data["bad"]])
    again = clone(fitted).fit(X, np.append(data["y"], "lymphocyte"))
    assert again.from_cache_ and again.history_ == fitted.history_
    np.testing.assert_allclose(again.transform(X[:4]), fitted.transform(X[:4]), atol=1e-6)


def test_training_key_settings_keep_their_frozen_names():
    # the trained-model cache key hashes these names: they are the get_params() of the estimator the
    # cache was introduced with (random_state was called seed), less what does not affect training
    est = CNNClassifier(**TINY)
    settings = est.training_settings()
    later = {"precision", "deterministic", "augmentation", "freeze", "progressive_size", "progressive_epochs"}
    assert set(settings) == (set(est.get_params()) - {"cache_dir", "embed_batch_size", "verbose", "random_state"}
                             - later | {"seed"})
    assert settings["seed"] == est.random_state and settings["input_size"] == 32
    # precision, deterministic and augmentation joined later: in the key only when not their defaults, so older
    # keys still match
    assert CNNClassifier(**{**TINY, "precision": "mixed_bfloat16"}).training_settings()["precision"] == "mixed_bfloat16"
    assert "freeze" not in settings and CNNClassifier(**TINY, freeze=True).training_settings()["freeze"] is True
    assert "progressive" not in settings
    assert CNNClassifier(**{**TINY, "epochs": 3}, progressive_size=24,
                         progressive_epochs=2).training_settings()["progressive"] == [24, 2]


def test_auto_precision_follows_the_cpu_flags(tmp_path):
    from hybridwbc.cnn.backbones import resolve_precision

    (tmp_path / "bf16").write_text("processor : 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    (tmp_path / "plain").write_text("processor : 0\nflags\t\t: fpu sse avx2\n")
    assert resolve_precision("auto", str(tmp_path / "bf16")) == "mixed_bfloat16"
    assert resolve_precision("auto", str(tmp_path / "plain")) == "float32"
    assert resolve_precision("auto", str(tmp_path / "missing")) == "float32"
    assert resolve_precision("float32", str(tmp_path / "bf16")) == "float32"


def test_mixed_bfloat16_trains_and_embeds_in_float32(data, tmp_path):
    est = CNNClassifier(cache_dir=str(tmp_path), **{**TINY, "precision": "mixed_bfloat16"})
    est.fit(_X(data["paths"]), data["y"])
    assert est.model_.get_layer("backbone").dtype_policy.name == "mixed_bfloat16"
    assert est.model_.get_layer("head").dtype_policy.name == "float32"
    E = est.transform(_X(data["paths"][:5]))
    assert E.dtype == np.float32 and np.isfinite(E).all()
    np.testing.assert_allclose(est.predict_proba(_X(data["paths"][:5])).sum(axis=1), 1.0, atol=1e-6)
    # the global policy is left as it was: other models in the process stay float32
    assert keras.config.dtype_policy().name == "float32"


def test_clone_keeps_constructor_params(fitted):
    from sklearn.base import clone

    c = clone(fitted)
    assert c.get_params() == fitted.get_params() and not hasattr(c, "model_")
    e = EmbeddingClassifier(cnn=CNNClassifier(**TINY), head="anything")
    assert clone(e, safe=False).get_params()["cnn__input_size"] == 32


def test_embedding_classifier_and_hybrid(fitted, data):
    from sklearn.linear_model import LogisticRegression

    paths, y = data["paths"], data["y"]
    extra = np.column_stack([np.arange(24.0), np.ones(24)])
    X = np.hstack([_X(paths), extra.astype(object)])  # paths_features
    est = EmbeddingClassifier(cnn=CNNClassifier(cache_dir=fitted.cache_dir, **TINY),
                              head=LogisticRegression(max_iter=200)).fit(X, y)
    assert est.n_extra_ == 2 and list(est.classes_) == ["eosinophil", "lymphocyte"]
    assert est.transform(X).shape == (24, est.cnn_.n_embed_ + 2)
    assert est.predict_proba(X).shape == (24, 2) and len(est.predict(X)) == 24
    assert set(est.history_) >= {"loss", "val_accuracy"}
    with pytest.raises(ValueError, match=r"X has 0 handcrafted column\(s\); the model was fitted with 2"):
        est.predict(_X(paths))
    with pytest.raises(ConfigError, match=r"needs both cnn and head"):
        EmbeddingClassifier(cnn=CNNClassifier(**TINY)).fit(X, y)


def test_bad_X_and_y_are_rejected(data):
    with pytest.raises(ValueError, match=r"Column 0 of X must hold image file paths"):
        split_paths(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"X must be a \(n, 1 \+ n_extra\) array"):
        split_paths(np.zeros((2, 2, 2), dtype=object))
    with pytest.raises(ValueError, match=r"X has 2 rows but y has 1"):
        CNNClassifier(**TINY).fit(_X(data["paths"][:2]), ["a"])
    with pytest.raises(ValueError, match=r"needs at least two classes"):
        CNNClassifier(**TINY).fit(_X(data["paths"][:2]), ["a", "a"])


def test_training_curves_png(fitted, tmp_path):
    from hybridwbc.report.training import history_metrics, training_curves_png

    p = training_curves_png({"loss": [1.0, 0.5], "accuracy": [0.5, 0.8], "val_loss": [1.1, 0.7],
                             "val_accuracy": [0.4, 0.75]}, tmp_path / "curves.png", "test", best_epoch=2)
    assert p.is_file() and p.stat().st_size > 1000
    steps = history_metrics(fitted.history_)
    assert steps[0][0] == 1 and {"train_loss", "train_accuracy", "val_loss", "val_accuracy"} <= set(steps[0][1])


# ---------------------------------------------------------------------------------------------- through run.py
@pytest.mark.parametrize("name", ["cnn_softmax", "cnn_svm", "cnn_rf", "hybrid"])
def test_classifier_configs_compose_and_build(compose, name):
    from hybridwbc.config import build_estimator

    cfg, _ = compose("+experiment=pbc8", f"classifier={name}")
    est = build_estimator(cfg.classifier, cfg.seed)
    cnn = est if isinstance(est, CNNClassifier) else est.cnn
    cnn.validate()
    assert cfg.classifier.search is None
    assert str(cfg.classifier.input.value if hasattr(cfg.classifier.input, "value") else cfg.classifier.input) == (
        "paths_features" if name == "hybrid" else "paths")


@pytest.mark.slow  # a whole experiment: make test-fast leaves it out, make test runs it
def test_cnn_softmax_baseline_through_run_experiment(compose, tmp_path, monkeypatch):
    monkeypatch.delenv("HYBRIDWBC_DATA", raising=False)
    from hybridwbc.run import run_experiment

    cfg, choices = compose(
        "+experiment=wbc5", "classifier=cnn_softmax", "tracking=disabled", "data.synthetic.n_per_class=10",
        "data.synthetic.size=48", "eval.n_bootstrap=20", "features.n_jobs=1", "backbone=tiny",
        "backbone.backbone_params={depth: 2, width: 8}")
    out = run_experiment(cfg, tmp_path / "run", "wbc5", choices)
    m = out["metrics"]
    for key in ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "accuracy_ci_low", "accuracy_ci_high"):
        assert 0.0 <= m[key] <= 1.0, key
    from hybridwbc.serve.pipeline import WBCPipeline

    model = WBCPipeline.load(out["model_dir"])
    assert isinstance(model.estimator, CNNClassifier) and hasattr(model.estimator, "model_")


def test_recalibrate_batchnorm_averages_batch_statistics():
    from hybridwbc.cnn.training import recalibrate_batchnorm

    inp = keras.Input((4,))
    bn = keras.layers.BatchNormalization(momentum=0.99)
    model = keras.Model(inp, bn(inp))
    rng = np.random.default_rng(0)
    first = [rng.normal(loc=k, scale=1.0 + k, size=(16, 4)).astype(np.float32) for k in range(3)]
    for batches in (first, [b * 2.0 + 1.0 for b in first[:2]]):  # the compiled pass, reused: sums start at 0
        assert recalibrate_batchnorm(model, batches) == len(batches)
        np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.mean(axis=0) for b in batches], axis=0),
                                   atol=1e-5)
        np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([b.var(axis=0) for b in batches], axis=0),
                                   rtol=1e-4)
        assert bn.momentum == 0.99


def test_each_compiled_step_is_traced_once_per_fit(data, tmp_path):
    """Partial batches cost no second trace: training batches have one shape (the remainder is dropped,
    and reshuffled each pass), validation and BatchNorm re-estimation are compiled with an unknown batch size."""
    from hybridwbc.cnn.images import image_dataset
    from hybridwbc.cnn.training import compiled_steps

    shapes = {tuple(x.shape) for x, _ in image_dataset(data["paths"], 32, 5, labels=np.zeros(24, int),
                                                       shuffle_seed=0, drop_remainder=True)}
    assert shapes == {(5, 32, 32, 3)}  # 24 images in batches of 5: the 4 left over wait for the next pass
    # 24 images: 18 training rows in batches of 8, 6 validation rows in batches of 4 (a partial batch each)
    est = CNNClassifier(**{**TINY, "epochs": 3, "patience": 0, "embed_batch_size": 4}).fit(_X(data["paths"]),
                                                                                         data["y"])
    counts = est.tracing_counts_  # recorded when training ended; the steps are then dropped
    assert counts == {"validate": 1, "recalibrate": 1}
    assert compiled_steps(est.model_) == {}


def test_validate_model_matches_keras_evaluate(data):
    import warnings

    from hybridwbc.cnn.images import image_dataset
    from hybridwbc.cnn.training import validate_model

    est = CNNClassifier(**TINY)
    model = est.build_model(2)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    y = (data["y"] == "eosinophil").astype(np.int64)
    ds = image_dataset(data["paths"], 32, 5, labels=y)  # 24 images: a last batch of 4
    ours = validate_model(model, ds)
    with warnings.catch_warnings():  # the stream's length is unknown (ignore_errors): Keras says so at its end
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        theirs = model.evaluate(ds, verbose=0, return_dict=True)
    assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-4)
    assert ours["accuracy"] == pytest.approx(theirs["accuracy"])


def test_a_trained_model_is_not_kept_alive_by_its_compiled_steps(data):
    import gc
    import weakref

    est = CNNClassifier(**TINY).fit(_X(data["paths"]), data["y"])
    ref = weakref.ref(est.model_)
    del est
    gc.collect()
    assert ref() is None


def test_augmentation_is_a_pure_function_of_the_image_and_its_seed():
    """Stateless draws: the same seed gives the same image in any thread, another seed another image
    (the parallel tf.data map cannot make two runs differ)."""
    import tensorflow as tf

    from hybridwbc.cnn.images import augment_microscopy

    aug = augment_microscopy(32)
    x = tf.constant(np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.float32))
    a = aug(x, tf.constant([7, 3], tf.int64)).numpy()
    b = aug(x, tf.constant([7, 3], tf.int64)).numpy()
    c = aug(x, tf.constant([7, 4], tf.int64)).numpy()
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert a.shape == (32, 32, 3) and 0.0 <= a.min() and a.max() <= 255.0


def test_an_augmented_training_stream_repeats_exactly(save_png, tmp_path):
    from hybridwbc.cnn.images import augment_microscopy, image_dataset

    rng = np.random.default_rng(1)
    paths = [str(save_png(tmp_path / f"{i}.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)))
             for i in range(12)]

    def stream():
        ds = image_dataset(paths, 32, 4, labels=np.arange(12) % 2, shuffle_seed=5, augment=augment_microscopy(32))
        return [(x.numpy(), y.numpy()) for x, y in ds]

    keras.utils.set_random_seed(0)
    first = stream()
    keras.utils.set_random_seed(0)
    second = stream()
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first, second))


@pytest.mark.slow
def test_deterministic_training_repeats_bit_for_bit(data, tmp_path):
    """Two fresh trainings (no cache) with deterministic=True give identical probabilities. In a child
    process: TensorFlow's op determinism stays on for the rest of a process."""
    import json
    import subprocess
    import sys

    script = (
        "import json, sys, numpy as np\n"
        "from hybridwbc.cnn.estimators import CNNClassifier\n"
        "paths, y, tiny = json.loads(sys.argv[1])\n"
        "X = np.asarray(paths, dtype=object).reshape(-1, 1)\n"
        "out = [CNNClassifier(deterministic=True, **{**tiny, 'epochs': 2}).fit(X, np.asarray(y, dtype=object))"
        ".predict_proba(X).tolist() for _ in range(2)]\n"
        "print(json.dumps(out))\n")
    arg = json.dumps([data["paths"], data["y"].tolist(), TINY])
    done = subprocess.run([sys.executable, "-c", script, arg], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = json.loads(done.stdout.strip().splitlines()[-1])
    assert np.array_equal(np.asarray(first), np.asarray(second))
    assert CNNClassifier(**{**TINY, "deterministic": True}).training_settings()["deterministic"] is True
    assert "deterministic" not in CNNClassifier(**TINY).training_settings()  # old cache keys still match
