"""The ``preprocess`` group end to end: composition, fitting on the training split only, and no train/serve skew."""

import json

import numpy as np
import pandas as pd
import pytest

from hybridwbc.config import build_preprocess
from hybridwbc.data.io import read_image
from hybridwbc.errors import ConfigError, ImageReadError
from hybridwbc.preprocess import ImageNormaliser
from hybridwbc.run import run_experiment
from hybridwbc.serve.pipeline import WBCPipeline

SMALL = ["data.synthetic.n_per_class=12", "data.synthetic.size=64", "eval.n_bootstrap=20", "features.n_jobs=1",
         "tracking=disabled", "eval.explain.enabled=false"]


@pytest.fixture(autouse=True)
def _no_real_data(monkeypatch):
    monkeypatch.delenv("HYBRIDWBC_DATA", raising=False)


@pytest.mark.parametrize("option, method", [("none", "none"), ("reinhard", "reinhard"), ("macenko", "macenko"),
                                            ("greyworld", "greyworld")])
def test_each_preprocess_option_composes_and_builds(compose, option, method):
    cfg, choices = compose(f"preprocess={option}", "+experiment=wbc5", "classifier=svm")
    assert choices["preprocess"] == option
    norm = build_preprocess(cfg)
    assert isinstance(norm, ImageNormaliser) and norm.method == method and norm.active == (option != "none")


def test_bad_preprocess_configs_fail_with_one_clear_line(compose):
    with pytest.raises(Exception, match="vahadane"):  # an enum: Hydra refuses it at composition
        compose("preprocess.method=vahadane")
    cfg, _ = compose("preprocess=reinhard", "eval=cv")
    with pytest.raises(ConfigError, match="needs eval.protocol=holdout"):
        build_preprocess(cfg)
    cfg, _ = compose("preprocess=none", "preprocess.scale=mpp")
    with pytest.raises(ConfigError, match="um_per_px"):
        build_preprocess(cfg)


def test_fitted_on_training_split_only_and_no_train_serve_skew(compose, tmp_path):
    cfg, choices = compose("preprocess=reinhard", "preprocess.scale=cell", "preprocess.side=64", *SMALL)
    out = run_experiment(cfg, tmp_path / "run", "preprocess", choices)
    run_dir = out["run_dir"]
    described = json.loads((run_dir / "preprocess.json").read_text())
    manifest = pd.read_csv(run_dir / "manifest.csv")
    preds = pd.read_csv(run_dir / "predictions.csv")
    train = manifest[~manifest["path"].isin(preds["path"])]["path"].tolist()
    assert described["n_fit_images"] == len(train) == len(manifest) - len(preds)
    on_train = ImageNormaliser(method="reinhard").fit([read_image(p) for p in train])
    on_all = ImageNormaliser(method="reinhard").fit([read_image(p) for p in manifest["path"]])
    np.testing.assert_allclose(described["reference"]["lab_mean"], on_train.reference_["lab_mean"], atol=1e-8)
    assert np.abs(np.asarray(described["reference"]["lab_mean"]) - on_all.reference_["lab_mean"]).max() > 1e-6

    model = WBCPipeline.load(out["model_dir"])  # the saved model folder, reloaded
    assert json.loads((out["model_dir"] / "model.json").read_text())["preprocess"]["params"]["method"] == "reinhard"
    served = model.predict_paths(preds["path"].tolist(), n_jobs=1)
    classes = model.classes_
    assert (served["status"] != "error").all()
    np.testing.assert_array_equal(served[[f"p_{c}" for c in classes]].to_numpy(),
                                  preds[[f"p_{c}" for c in classes]].to_numpy())  # exactly: one code path


def test_a_cnn_reads_the_normalised_images_in_training_and_at_prediction(compose, tmp_path):
    cfg, choices = compose("preprocess=greyworld", "preprocess.scale=cell", "preprocess.side=64",
                           "classifier=cnn_softmax", "backbone=tiny", *SMALL)
    out = run_experiment(cfg, tmp_path / "run", "preprocess_cnn", choices)
    normalised = sorted((tmp_path / ".cache" / "hybridwbc" / "preprocessed").rglob("*.png"))
    assert len(normalised) == len(pd.read_csv(out["run_dir"] / "manifest.csv"))  # what the CNN trained on
    from PIL import Image

    assert {Image.open(p).size for p in normalised} == {(64, 64)}
    preds = pd.read_csv(out["run_dir"] / "predictions.csv")
    model = WBCPipeline.load(out["model_dir"])
    served = model.predict_paths(preds["path"].tolist(), n_jobs=1)  # the raw files: normalised on the way in
    cols = [f"p_{c}" for c in model.classes_]
    assert (served["status"] != "error").all()
    np.testing.assert_array_equal(served[cols].to_numpy(), preds[cols].to_numpy())
    # an image the CNN's second read cannot normalise (changed since it was featurized) is an error row; the
    # others keep exactly their answers
    write = model.featurizer.normalised_file
    calls = []

    def flaky(image, path):
        calls.append(path)
        if len(calls) == 2:
            raise ImageReadError("Cannot read image: it changed while being read")
        return write(image, path)

    model.featurizer.normalised_file = flaky
    again = model.predict_paths(preds["path"].tolist(), n_jobs=1)
    assert (again["status"] == "error").sum() == 1 and again.loc[1, "status"] == "error"
    assert "ImageReadError" in again.loc[1, "error"] and "changed while being read" in again.loc[1, "error"]
    keep = again.index != 1
    np.testing.assert_array_equal(again.loc[keep, cols].to_numpy(), preds.loc[keep, cols].to_numpy())
