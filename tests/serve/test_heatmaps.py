"""``predict ... explain=true``: a heat-map PNG per answered image for CNN models; refused for the others."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.ensemble import RandomForestClassifier

from hybridwbc.errors import ConfigError
from hybridwbc.features.handcrafted import HandcraftedFeaturizer
from hybridwbc.serve.pipeline import WBCPipeline
from hybridwbc.serve.predict import main, parse_args, predict

TINY = dict(input_size=32, backbone_params={"depth": 2, "width": 8}, epochs=1, batch_size=8,
            validation_fraction=0, random_state=0, verbose=0)


@pytest.fixture
def cnn_model(folder_dataset, tmp_path):
    from hybridwbc.cnn.estimators import CNNClassifier

    paths = sorted(str(p) for p in folder_dataset.rglob("*.png"))
    y = np.array([p.split("/")[-2] for p in paths], dtype=object)
    est = CNNClassifier(**TINY).fit(np.asarray(paths, dtype=object).reshape(-1, 1), y)
    featurizer = HandcraftedFeaturizer(families=("geometry",))
    return WBCPipeline(featurizer, est, info={"experiment": "test"}, input_kind="paths").save(tmp_path / "model")


def test_explain_writes_a_heat_map_per_answered_image(save_png, cnn_model, folder_dataset, tmp_path):
    (folder_dataset / "lymphocyte" / "zero.png").write_bytes(b"")
    out = tmp_path / "pred" / "out.csv"
    assert main([f"model={cnn_model}", f"input={folder_dataset}", f"output={out}", "explain=true"]) == 0
    df = pd.read_csv(out, keep_default_na=False)
    ok = df["status"] != "error"
    assert ok.sum() == 24 and (df.loc[~ok, "heatmap"] == "").all()
    files = sorted((tmp_path / "pred" / "out_heatmaps").glob("*.png"))
    assert len(files) == 24 and set(df.loc[ok, "heatmap"]) == {str(f) for f in files}
    first = df[ok].iloc[0]
    heat = np.asarray(Image.open(first["heatmap"]))
    assert heat.shape == np.asarray(Image.open(first["path"])).shape  # at the image's own size
    assert (heat != np.asarray(Image.open(first["path"]))).any()


def test_explain_is_refused_for_a_model_without_a_cnn(folder_dataset, tmp_path):
    paths = sorted(str(p) for p in folder_dataset.rglob("*.png"))
    f = HandcraftedFeaturizer(families=("geometry",))
    X = f.transform([np.asarray(Image.open(p).convert("RGB")) for p in paths[:4]])
    est = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, ["a", "b", "a", "b"])
    model = WBCPipeline(f, est, info={"experiment": "test"}).save(tmp_path / "rf")
    with pytest.raises(ConfigError, match=r"explain=true needs a model with a CNN; .*rf' has none "
                                          r"\(RandomForestClassifier\)"):
        predict(str(model), str(folder_dataset), str(tmp_path / "p.csv"), explain=True)
    assert not (tmp_path / "p.csv").exists()
    with pytest.raises(ConfigError, match=r"explain must be true or false; received 'maybe'"):
        parse_args(["model=m", "input=i", "output=o", "explain=maybe"])
    assert parse_args(["model=m", "input=i", "output=o", "explain=TRUE"])["explain"] is True
