import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from hybridwbc.data.manifest import scan
from hybridwbc.errors import ConfigError, DataLayoutError, ModelLoadError
from hybridwbc.features.simple import ColourShapeFeaturizer
from hybridwbc.features.table import featurize_manifest
from hybridwbc.serve.pipeline import WBCPipeline
from hybridwbc.serve.predict import collect_inputs, main, parse_args


@pytest.fixture
def model_dir(folder_dataset, tmp_path):
    m = scan(folder_dataset, "folders").manifest
    f = ColourShapeFeaturizer()
    t = featurize_manifest(f, m, progress=False)
    est = RandomForestClassifier(n_estimators=20, random_state=0).fit(t.X, m["label"].iloc[t.index])
    return WBCPipeline(f, est, info={"experiment": "test"}).save(tmp_path / "model")


def test_save_load_predict_same(model_dir, folder_dataset):
    pipe = WBCPipeline.load(model_dir)
    paths = sorted(str(p) for p in folder_dataset.rglob("*.png"))
    df = pipe.predict_paths(paths)
    assert list(df.columns) == ["path", "label", "confidence", "p_eosinophil", "p_lymphocyte", "status", "error"]
    assert (df["status"] == "ok").all()
    np.testing.assert_allclose(df[["p_eosinophil", "p_lymphocyte"]].sum(axis=1), 1.0)
    truth = [p.split("/")[-2] for p in paths]
    assert (df["label"] == truth).mean() > 0.9


def test_tampered_or_missing_model_is_refused(model_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="model.json is missing"):
        WBCPipeline.load(tmp_path / "nothing")
    with open(model_dir / "pipeline.joblib", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ModelLoadError, match="does not match the SHA-256"):
        WBCPipeline.load(model_dir)
    (model_dir / "pipeline.joblib").unlink()
    with pytest.raises(ModelLoadError, match="is missing. Re-save"):
        WBCPipeline.load(model_dir)
    (model_dir / "model.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not a valid hybridwbc model"):
        WBCPipeline.load(model_dir)


def test_cli_writes_csv_with_error_rows(save_png, model_dir, folder_dataset, tmp_path, capsys):
    (folder_dataset / "lymphocyte" / "zero.jpg").write_bytes(b"")
    save_png(folder_dataset / "eosinophil" / "tiny.png", np.zeros((2, 2, 3), np.uint8))
    out = tmp_path / "pred" / "out.csv"
    assert main([f"model={model_dir}", f"input={folder_dataset}", f"output={out}"]) == 0
    df = pd.read_csv(out, keep_default_na=False)
    assert len(df) == 26 and (df["status"] == "error").sum() == 2
    assert df.loc[df["path"].str.endswith("zero.jpg"), "error"].str.contains("empty").all()
    assert "24 of 26" in capsys.readouterr().out
    # a glob and a single file work too
    assert main([f"model={model_dir}", f"input={folder_dataset}/eosinophil/eos*.png", f"output={out}"]) == 0
    assert len(pd.read_csv(out)) == 12


def test_cli_errors_are_one_line(model_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([f"model={model_dir}", f"input={tmp_path}/empty", f"output={tmp_path}/o.csv"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hybridwbc: error:") and "holds no image files" in err and err.count("\n") == 1
    assert main([f"model={tmp_path}/nomodel", f"input={tmp_path}", f"output={tmp_path}/o.csv"]) == 1


def test_arg_parsing_errors(tmp_path):
    with pytest.raises(ConfigError, match="Unknown argument 'modle'"):
        parse_args(["modle=x", "input=y", "output=z"])
    with pytest.raises(ConfigError, match=r"Missing argument\(s\) \['output'\]"):
        parse_args(["model=x", "input=y"])
    with pytest.raises(ConfigError, match="is not key=value"):
        parse_args(["model"])
    with pytest.raises(ConfigError, match="n_jobs must be an integer"):
        parse_args(["model=x", "input=y", "output=z", "n_jobs=two"])
    with pytest.raises(DataLayoutError, match="matches no files"):
        collect_inputs(str(tmp_path / "*.nothing"))
