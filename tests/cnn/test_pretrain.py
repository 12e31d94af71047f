"""A backbone pretrained offline (hybridwbc.cnn.pretrain): export and exact reload, frozen fine-tuning, the
guard against scoring images the backbone saw, and the pretrain / all_hem_pretrained / all_pbs_pretrained experiments
end to end on synthetic cells (tiny CNNs, one epoch)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hybridwbc.cnn.estimators import CNNClassifier
from hybridwbc.cnn.pretrain import check_unseen, export_weights, inner_backbone, pretrained_images, sidecar
from hybridwbc.data.manifest import file_sha256
from hybridwbc.errors import ConfigError, LeakageError

TINY = dict(input_size=32, backbone_params={"depth": 2, "width": 8}, epochs=1, batch_size=8,
            validation_fraction=0.25, embed_batch_size=16, random_state=0, verbose=0, bn_recalibration=2)
SMALL = ["data.synthetic.n_per_class=8", "data.synthetic.size=48", "eval.n_bootstrap=20", "features.n_jobs=1",
         "eval.n_splits=2"]


@pytest.fixture(autouse=True)
def _no_real_data(monkeypatch):
    monkeypatch.delenv("HYBRIDWBC_DATA", raising=False)


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    from hybridwbc.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("syn")
    m = pd.read_csv(generate_dataset(root, ["lymphocyte", "eosinophil"], n_per_class=10, size=48, seed=1))
    paths = [str(root / p) if not str(p).startswith("/") else str(p) for p in m["path"]]
    return np.asarray(paths, dtype=object).reshape(-1, 1), m["label"].to_numpy(dtype=object)


def test_exported_backbone_reloads_to_the_same_embeddings(cells, tmp_path):
    import keras

    from hybridwbc.cnn.build import build_backbone

    X, y = cells
    est = CNNClassifier(**TINY).fit(X, y)
    path = tmp_path / "b.weights.h5"
    sha = export_weights(est.model_, path)
    assert sha == file_sha256(path) and not list(tmp_path.glob(".*tmp*"))
    again = build_backbone("compact", 32, "avg", str(path), {"depth": 2, "width": 8})
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    trained = keras.Model(est.model_.input, est.model_.get_layer("embedding").output)
    np.testing.assert_allclose(again(x, training=False), trained(x, training=False), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="must end in '.weights.h5'"):
        export_weights(est.model_, tmp_path / "b.h5")


def test_freeze_trains_the_head_only_and_needs_weights(cells, tmp_path):
    X, y = cells
    src = CNNClassifier(**TINY).fit(X, y)
    path = tmp_path / "b.weights.h5"
    export_weights(src.model_, path)
    before = [w.copy() for w in inner_backbone(src.model_).get_weights()]
    frozen = CNNClassifier(**{**TINY, "epochs": 2}, weights=str(path), freeze=True).fit(X, y)
    for a, b in zip(before, inner_backbone(frozen.model_).get_weights()):
        np.testing.assert_array_equal(a, b)  # BatchNorm statistics included
    tuned = CNNClassifier(**TINY, weights=str(path)).fit(X, y)
    assert any(not np.array_equal(a, b) for a, b in zip(before, inner_backbone(tuned.model_).get_weights()))
    with pytest.raises(ConfigError, match="freeze=true keeps the backbone's starting weights"):
        CNNClassifier(**TINY, freeze=True).fit(X, y)


def test_cache_key_names_a_weights_file_by_content_not_path(tmp_path):
    a, b = tmp_path / "a.weights.h5", tmp_path / "b.weights.h5"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    key = CNNClassifier(weights=str(a)).training_settings()["weights"]
    assert key == CNNClassifier(weights=str(b)).training_settings()["weights"] == f"sha256:{file_sha256(a)}"
    b.write_bytes(b"other")
    assert CNNClassifier(weights=str(b)).training_settings()["weights"] != key


def _pretrain(compose, tmp_path, *extra):
    from hybridwbc.run import run_experiment

    cfg, choices = compose("+experiment=pretrain", *SMALL, "backbone=tiny", "pretrain.allow_synthetic=true", *extra)
    return run_experiment(cfg, tmp_path / "pre" / extra[-1] if extra else tmp_path / "pre", "pretrain", choices)


def test_pretrain_refuses_synthetic_data_unless_asked(compose, tmp_path):
    from hybridwbc.run import run_experiment

    cfg, choices = compose("+experiment=pretrain", *SMALL, "backbone=tiny")
    with pytest.raises(ConfigError, match="pretrain found no real data"):
        run_experiment(cfg, tmp_path / "pre", "pretrain", choices)


def test_pretrain_exports_weights_with_provenance_and_mlflow_model(compose, tmp_path):
    from mlflow.tracking import MlflowClient

    out = _pretrain(compose, tmp_path)
    info = out["pretrained"]
    weights = tmp_path / "pretrained" / "pbc8_compact32.weights.h5"
    assert info["path"] == weights and info["sha256"] == file_sha256(weights)
    meta = json.loads(sidecar(weights).read_text())
    assert meta["n_images"] == 8 * 8 and len(meta["classes"]) == 8 and meta["mlflow_run_id"] == out["run_id"]
    seen = pretrained_images(weights)
    assert len(seen) == meta["n_images"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["weights_sha256"] == info["sha256"]
    assert "pyfunc_model_uri" in run.data.tags
    assert {a.path for a in client.list_artifacts(out["run_id"], "pretrained")} >= {
        "pretrained/pbc8_compact32.weights.h5", "pretrained/pbc8_compact32.json"}
    # scoring images the backbone saw is refused; images it never saw pass
    some = sorted(seen)[:3]
    with pytest.raises(LeakageError, match="3 of 4 images of pbc were used to pretrain"):
        check_unseen(str(weights), [*some, "f" * 64], "pbc")
    assert check_unseen(str(weights), ["0" * 64], "pbc") == 1


ARMS = {"scratch_cnn_svm", "frozen_cnn_svm", "frozen_cnn_rf", "finetuned_cnn_svm", "finetuned_cnn_softmax"}


def _pretrained_overrides(weights) -> list[str]:
    out = []
    for m in ("frozen_cnn_svm", "frozen_cnn_rf", "finetuned_cnn_svm"):
        node = f"methods.{m}.estimator.cnn"
        out += [f"{node}.weights={weights}", f"{node}.input_size=32", f"{node}.epochs=1", f"{node}.verbose=0",
                f"{node}.backbone_params={{depth:2,width:8,convs_per_block:1}}", f"{node}.bn_recalibration=2"]
    node = "methods.finetuned_cnn_softmax.estimator"
    out += [f"{node}.weights={weights}", f"{node}.input_size=32", f"{node}.epochs=1", f"{node}.verbose=0",
            f"{node}.backbone_params={{depth:2,width:8,convs_per_block:1}}", f"{node}.bn_recalibration=2"]
    return out


@pytest.mark.slow
def test_all_hem_pretrained_runs_and_refuses_a_backbone_that_saw_its_cells(compose, tmp_path):
    from hybridwbc.run import run_experiment

    weights = _pretrain(compose, tmp_path)["pretrained"]["path"]  # pretrained on the synthetic PBC set
    cfg, choices = compose("+experiment=all_hem_pretrained", *SMALL, "backbone=tiny", *_pretrained_overrides(weights))
    out = run_experiment(cfg, tmp_path / "hem", "all_hem_pretrained", choices)
    assert set(out["methods"]) == ARMS
    # a backbone pretrained on the all_hem cells themselves is refused before any training
    leaky = _pretrain(compose, tmp_path, "data=cnmc", "pretrain.name=leaky")["pretrained"]["path"]
    cfg, choices = compose("+experiment=all_hem_pretrained", *SMALL, "backbone=tiny", *_pretrained_overrides(leaky))
    with pytest.raises(LeakageError, match="were used to pretrain"):
        run_experiment(cfg, tmp_path / "hem2", "all_hem_pretrained", choices)


@pytest.mark.slow
def test_all_pbs_pretrained_scores_every_arm_on_one_split_and_refuses_a_missing_backbone(compose, tmp_path):
    from hybridwbc.errors import WeightsUnavailableError
    from hybridwbc.run import run_experiment

    weights = _pretrain(compose, tmp_path)["pretrained"]["path"]
    cfg, choices = compose("+experiment=all_pbs_pretrained", *SMALL, "backbone=tiny", *_pretrained_overrides(weights))
    assert cfg.eval.protocol.value == "holdout" and cfg.data.name == "all_pbs"
    out = run_experiment(cfg, tmp_path / "pbs", "all_pbs_pretrained", choices)
    assert set(out["methods"]) == ARMS
    scored = {m: r["metrics"]["n_scored"] + r["metrics"]["n_skipped"] for m, r in out["methods"].items()}
    assert len(set(scored.values())) == 1, scored  # one held-out split for every arm
    # the arms are the same ones all_hem_pretrained compares (one shared file, conf/arms/)
    hem, _ = compose("+experiment=all_hem_pretrained")
    assert set(hem.methods) == ARMS and hem.methods.frozen_cnn_rf.estimator.cnn.freeze
    missing = [o.replace(str(weights), str(tmp_path / "none.weights.h5")) for o in _pretrained_overrides(weights)]
    cfg, choices = compose("+experiment=all_pbs_pretrained", *SMALL, "backbone=tiny", *missing)
    with pytest.raises(WeightsUnavailableError, match="none.weights.h5"):
        run_experiment(cfg, tmp_path / "pbs2", "all_pbs_pretrained", choices)


def test_a_record_of_another_file_is_refused_and_a_partial_one_is_no_record(tmp_path):
    from hybridwbc.errors import WeightsUnavailableError

    weights = tmp_path / "b.weights.h5"
    weights.write_bytes(b"weights")
    sidecar(weights).write_text(json.dumps({"sha256": file_sha256(weights)}))
    assert pretrained_images(weights) is None  # no image list named: nothing to check against, no crash
    sidecar(weights).write_text(json.dumps({"sha256": "0" * 64, "images": "b.images.txt"}))
    (tmp_path / "b.images.txt").write_text("a" * 64 + "\n")
    with pytest.raises(WeightsUnavailableError, match="describes another weights file"):
        check_unseen(str(weights), ["a" * 64], "pbc")
