import numpy as np
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
def test_tables_from_a_comparison_run(compose, tmp_path, monkeypatch):
    cfg, choices = compose("+experiment=all_hem_compare", *SMALL)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    command = f"python -m hybridwbc.run +experiment=all_hem_compare tracking.uri={uri}"
    out = run_experiment(cfg, tmp_path / "run", "all_hem_compare", choices, command=command)
    md = write_tables("all_hem_compare", uri, tmp_path / "experiments", SMALL, allow_synthetic=True)
    text = md.read_text()
    assert out["run_id"] in text and "McNemar" in text
    # no absolute path of this machine: the store is named relative to the repository
    assert str(tmp_path) not in text
    assert "python -m hybridwbc.run +experiment=all_hem_compare tracking.uri=sqlite:///mlflow.db" in text
    # every group of rows says what its bootstrap resampled: the leaky rows are cells, not subjects
    groups = {g.split("\n")[0]: g for g in text.split("### ")[1:]}
    assert "resampling subjects" in groups["Per cell, on the test rows each method scored"]
    leaky = groups["LEAKY random cell split (ignores subjects; for reference)"]
    assert "resampling cells (the leaky split ignores subjects)" in leaky and "resampling subjects" not in leaky
    # coverage: test rows scored / all test rows per method, and metrics on all test rows
    assert "scored / test rows" in groups["Per cell, on the test rows each method scored"]
    assert "Per cell, on all test rows (a row the method skipped counts wrong)" in groups
    # the caveat of the experiment (notes in its config) is printed
    assert "segmentation was not chosen blind" in text
    df = pd.read_csv(md.with_name("results.csv"))
    methods = set(df["method"])
    assert {"handcrafted_svm", "handcrafted_rf", "handcrafted_svm (per subject)",
            "handcrafted_svm (LEAKY random cell split)"} <= methods
    assert set(df["run_id"]) == {r["run_id"] for r in out["methods"].values()}
    assert set(df.loc[df["variant"] == "leaky", "ci_resampling"]) == {"cells (the leaky split ignores subjects)"}
    cell = df[df["variant"] == "cell"]
    assert (cell["n_scored"] + cell["n_skipped_test"] == cell["n_test_rows"]).all()
    assert (cell["n_test_rows"] == 24).all()  # 5-fold CV: every row is a test row once
    assert {"sensitivity", "specificity", "roc_auc", "roc_auc_ci_low"} <= set(df.columns)
    row = df[df["method"] == "handcrafted_svm"].iloc[0]
    assert row["accuracy"] == pytest.approx(out["methods"]["handcrafted_svm"]["metrics"]["accuracy"])
    assert f"{row['accuracy']:.3f} [" in text
    # where the time went: per method, and one row per experiment in timing.md
    assert "## Time" in text and "| handcrafted_rf |" in text.split("## Time")[1]
    timing = main(["all_hem_compare", "--timing", "--uri", uri, "--out", str(tmp_path / "experiments"),
                   "--allow-synthetic", *(f"--set={o}" for o in SMALL)])
    assert timing == 0
    t = (tmp_path / "experiments" / "timing.md").read_text()
    row = [ln for ln in t.splitlines() if ln.startswith("| all_hem_compare |")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == f"`{out['run_id']}`"
    wall, data, feats, train, cnn, ev, other = map(float, cells[2:])
    assert wall > 0 and train >= cnn >= 0 and ev > 0
    assert data + feats + train + ev + other == pytest.approx(wall, abs=0.25)  # rounded to 0.1 min
    with pytest.raises(DataLayoutError, match="No finished MLflow run of experiment 'all_hem'"):
        write_timing(["all_hem_compare", "all_hem"], uri, tmp_path, SMALL, allow_synthetic=True)
    # the leaky reference's CNN trainings and fits count as training, not as evaluation
    methods = run_timing_of(uri, "all_hem_compare")
    child = _child_metrics(uri, out["methods"]["cnn_softmax"]["run_id"])
    assert child["leaky_fit_predict_s"] > 0 and child["cnn_fit_s"] > 0
    assert methods["cnn_softmax"]["train_predict"] == pytest.approx(
        child["fit_predict_s"] + child["leaky_fit_predict_s"] + child["refit_s"])
    # only runs of the current config, code version and real data are tabled
    with pytest.raises(DataLayoutError, match="data source 'synthetic'"):
        write_tables("all_hem_compare", uri, tmp_path / "x", SMALL)
    with pytest.raises(DataLayoutError, match="config_hash"):
        write_tables("all_hem_compare", uri, tmp_path / "x", [*SMALL, "data.max_per_class=5"], allow_synthetic=True)
    monkeypatch.setattr("hybridwbc.config.code_version", lambda: "0123456789abcdef")
    with pytest.raises(DataLayoutError, match="code_version"):
        write_tables("all_hem_compare", uri, tmp_path / "x", SMALL, allow_synthetic=True)


def run_timing_of(uri, experiment):
    from mlflow.tracking import MlflowClient

    from hybridwbc.report.tables import latest_run, run_timing

    client = MlflowClient(tracking_uri=uri)
    return run_timing(client, latest_run(client, experiment))["methods"]


def _child_metrics(uri, run_id):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri).get_run(run_id).data.metrics


def test_missing_experiment_is_one_clear_error(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(DataLayoutError, match="No finished MLflow run of experiment 'all_hem'.*no finished run"):
        write_tables("all_hem", uri, tmp_path)
    assert main(["all_hem", "--uri", uri, "--out", str(tmp_path)]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("hybridwbc:")]
    assert len(err) == 1 and err[0].startswith("hybridwbc: error: No finished MLflow run")


def test_portable_rewrites_whole_path_components_only(tmp_path):
    from hybridwbc.report.tables import portable

    root = str(tmp_path / "main")
    text = f"run tracking.uri=sqlite:///{root}/mlflow.db a={root}/x b={root}2/y c={root}"
    assert portable(text, [root]) == f"run tracking.uri=sqlite:///mlflow.db a=./x b={root}2/y c=."


def test_a_run_whose_images_changed_since_is_not_tabled(tmp_path):
    from types import SimpleNamespace

    from PIL import Image

    from hybridwbc.config import compose_experiment
    from hybridwbc.data.dataset import load_dataset
    from hybridwbc.data.manifest import manifest_hash
    from hybridwbc.data.synthetic import PROFILES, draw_cell
    from hybridwbc.report.tables import check_data_unchanged

    rng = np.random.default_rng(0)
    folder = tmp_path / "pbc"
    classes = ["basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"]

    def add(label, i):
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(draw_cell(rng, PROFILES[label], size=48).image).save(folder / label / f"X_{i}.jpg")

    for label in classes:
        for i in range(3):
            add(label, i)
    cfg = compose_experiment("wbc5", [f"data.root={folder}", "data.subdir=null", f"paths.cache_dir={tmp_path}/c"])
    digest = manifest_hash(load_dataset(cfg.data, ".", cfg.paths.cache_dir).manifest)
    run = SimpleNamespace(info=SimpleNamespace(run_id="r1"), data=SimpleNamespace(tags={
        "data.source": "real", "data.root": str(folder), "data.manifest_hash": digest}))
    overrides = [f"paths.cache_dir={tmp_path}/c"]
    check_data_unchanged(run, "wbc5", overrides)  # the same images: tabled
    add("monocyte", 9)
    with pytest.raises(DataLayoutError, match=r"run r1 of 'wbc5' read in .* changed since it ran \(manifest hash"):
        check_data_unchanged(run, "wbc5", overrides)
