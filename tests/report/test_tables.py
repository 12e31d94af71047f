import pandas as pd
import pytest

from hybridwbc.errors import DataLayoutError
from hybridwbc.report.tables import main, write_tables, write_timing
from hybridwbc.run import run_experiment

SMALL = ["data.synthetic.n_per_class=12", "data.synthetic.size=64", "eval.n_bootstrap=30", "features.n_jobs=1",
         "backbone=tiny"]


@pytest.fixture(autouse=True)
def _no_real_data(monkeypatch):
    monkeypatch.delenv("HYBRIDWBC_DATA", raising=False)


@pytest.mark.slow  # runs a whole comparison
def test_tables_from_a_comparison_run(compose, tmp_path):
    cfg, choices = compose("+experiment=all_hem_compare", *SMALL)
    out = run_experiment(cfg, tmp_path / "run", "all_hem_compare", choices, command="python -m hybridwbc.run X")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    md = write_tables("all_hem_compare", uri, tmp_path / "experiments")
    text = md.read_text()
    assert out["run_id"] in text and "python -m hybridwbc.run X" in text and "McNemar" in text
    assert "resampling subjects" in text
    df = pd.read_csv(md.with_name("results.csv"))
    methods = set(df["method"])
    assert {"handcrafted_svm", "handcrafted_rf", "handcrafted_svm (per subject)",
            "handcrafted_svm (LEAKY random cell split)"} <= methods
    assert set(df["run_id"]) == {r["run_id"] for r in out["methods"].values()}
    assert {"sensitivity", "specificity", "roc_auc", "roc_auc_ci_low"} <= set(df.columns)
    row = df[df["method"] == "handcrafted_svm"].iloc[0]
    assert row["accuracy"] == pytest.approx(out["methods"]["handcrafted_svm"]["metrics"]["accuracy"])
    assert f"{row['accuracy']:.3f} [" in text
    # where the time went: per method, and one row per experiment in timing.md
    assert "## Time" in text and "| handcrafted_rf |" in text.split("## Time")[1]
    timing = main(["all_hem_compare", "--timing", "--uri", uri, "--out", str(tmp_path / "experiments")])
    assert timing == 0
    t = (tmp_path / "experiments" / "timing.md").read_text()
    row = [ln for ln in t.splitlines() if ln.startswith("| all_hem_compare |")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == f"`{out['run_id']}`"
    wall, data, feats, train, cnn, ev, other = map(float, cells[2:])
    assert wall > 0 and train >= cnn >= 0 and ev > 0
    assert data + feats + train + ev + other == pytest.approx(wall, abs=0.25)  # rounded to 0.1 min
    with pytest.raises(DataLayoutError, match="No finished MLflow run of experiment 'nope'"):
        write_timing(["all_hem_compare", "nope"], uri, tmp_path)


def test_missing_experiment_is_one_clear_error(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(DataLayoutError, match="No finished MLflow run of experiment 'nope'"):
        write_tables("nope", uri, tmp_path)
    assert main(["nope", "--uri", uri, "--out", str(tmp_path)]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("hybridwbc:")]
    assert len(err) == 1 and err[0].startswith("hybridwbc: error: No finished MLflow run")
