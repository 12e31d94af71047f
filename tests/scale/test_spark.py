"""Batch scoring on Spark (local[2]): the pyfunc model through ``spark_udf`` gives ``predict``'s table row for
row, error rows included."""

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hybridwbc.errors import ConfigError, DataLayoutError

pytestmark = pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning",
                                        "ignore::FutureWarning:pyspark.*")


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark", reason="PySpark is the optional extra 'scale' (pip install -e '.[scale]')")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java 17 (apt-get install openjdk-17-jre-headless)")
    from hybridwbc.scale.spark import spark_session

    session = spark_session("local[2]", app="hybridwbc-test")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def model_and_table(save_png, tmp_path_factory):
    """A model/ folder (two synthetic classes) and a CSV of good, unreadable, missing and relative paths."""
    from sklearn.ensemble import RandomForestClassifier

    from hybridwbc.data.manifest import scan
    from hybridwbc.data.synthetic import PROFILES, draw_cell
    from hybridwbc.features.simple import ColourShapeFeaturizer
    from hybridwbc.features.table import featurize_manifest
    from hybridwbc.serve.pipeline import WBCPipeline

    root = tmp_path_factory.mktemp("spark")
    rng = np.random.default_rng(2)
    for label in ("lymphocyte", "eosinophil"):
        for i in range(10):
            save_png(root / "data" / label / f"{i:02d}.png", draw_cell(rng, PROFILES[label], size=64).image)
    m = scan(root / "data", "folders").manifest
    f = ColourShapeFeaturizer()
    t = featurize_manifest(f, m, progress=False)
    est = RandomForestClassifier(n_estimators=20, random_state=0).fit(t.X, m["label"].iloc[t.index])
    model_dir = WBCPipeline(f, est, info={"experiment": "test"}).save(root / "model")
    (root / "data" / "text.png").write_bytes(b"not an image\n")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(root / "data" / "one.png")
    paths = sorted(str(p) for p in (root / "data").rglob("*.png"))
    paths += [str(root / "data" / "missing.png"), "data/lymphocyte/00.png"]  # absent; relative to the table
    pd.DataFrame({"path": paths}).to_csv(root / "table.csv", index=False)
    return model_dir, root


@pytest.mark.slow
def test_spark_output_equals_predict_row_for_row(spark, model_and_table, tmp_path):
    from hybridwbc.scale.spark import score_table
    from hybridwbc.serve.predict import predict

    model_dir, root = model_and_table
    expected = predict(str(model_dir), str(root / "table.csv"), str(tmp_path / "predict.csv"), n_jobs=1)
    pd.read_csv(root / "table.csv").to_parquet(root / "table.parquet")  # relative paths: same folder
    for table, out in ((root / "table.csv", tmp_path / "scored.parquet"), (root / "table.parquet",
                                                                           tmp_path / "scored.csv")):
        summary = score_table(str(model_dir), str(table), str(out), spark=spark, partitions=2)
        got = (pd.read_parquet(out) if out.suffix == ".parquet"
               else pd.concat([pd.read_csv(p, keep_default_na=False) for p in sorted(out.glob("part-*.csv"))]))
        assert list(got.columns) == list(expected.columns)
        got = got.sort_values("path", kind="stable").reset_index(drop=True)
        want = expected.sort_values("path", kind="stable").reset_index(drop=True)
        assert got["path"].tolist() == want["path"].tolist()
        for col in ("label", "status", "error"):
            assert got[col].fillna("").astype(str).tolist() == want[col].fillna("").astype(str).tolist(), col
        for col in [c for c in want.columns if c == "confidence" or c.startswith("p_")]:
            np.testing.assert_allclose(pd.to_numeric(got[col], errors="coerce"), want[col], equal_nan=True)
        assert summary["rows"] == len(want) and summary["errors"] == int((want["status"] == "error").sum()) == 3


def test_bad_tables_and_outputs_name_the_fix(spark, model_and_table, tmp_path):
    from hybridwbc.scale.spark import parse_args, score_table

    model_dir, root = model_and_table
    pd.DataFrame({"file": ["a.png"]}).to_csv(tmp_path / "nopath.csv", index=False)
    with pytest.raises(DataLayoutError, match="expected a 'path' column"):
        score_table(str(model_dir), str(tmp_path / "nopath.csv"), str(tmp_path / "o.parquet"), spark=spark)
    with pytest.raises(DataLayoutError, match="does not exist"):
        score_table(str(model_dir), str(tmp_path / "absent.csv"), str(tmp_path / "o.parquet"), spark=spark)
    (tmp_path / "t.txt").write_text("path\n")
    with pytest.raises(DataLayoutError, match=r"expected a \.csv or \.parquet file"):
        score_table(str(model_dir), str(tmp_path / "t.txt"), str(tmp_path / "o.parquet"), spark=spark)
    with pytest.raises(ConfigError, match="ending in .parquet or .csv"):
        score_table(str(model_dir), str(root / "table.csv"), str(tmp_path / "o.json"), spark=spark)
    with pytest.raises(ConfigError, match="is not one of"):
        parse_args(["model=m", "input=i", "output=o", "speed=fast"])
    with pytest.raises(ConfigError, match=r"Missing argument\(s\) \['output'\]"):
        parse_args(["model=m", "input=i"])
    with pytest.raises(ConfigError, match="partitions must be a non-negative integer"):
        parse_args(["model=m", "input=i", "output=o", "partitions=-3"])


def test_missing_pyspark_names_the_extra(monkeypatch):
    import sys

    from hybridwbc.scale.spark import spark_session

    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # import fails as if PySpark were absent
    with pytest.raises(ConfigError, match=r"pip install 'hybridwbc\[scale\]'"):
        spark_session()
