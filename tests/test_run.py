"""Smoke-run every experiment end to end on the built-in synthetic data, tracked in a temporary MLflow store."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from hybridwbc.errors import DataLayoutError
from hybridwbc.run import run_experiment

SMALL = ["data.synthetic.n_per_class=12", "data.synthetic.size=64", "eval.n_bootstrap=50", "features.n_jobs=1",
         "backbone=tiny", "eval.n_splits=3"]


@pytest.fixture(autouse=True)
def _no_real_data(monkeypatch):
    monkeypatch.delenv("HYBRIDWBC_DATA", raising=False)


def _mlflow_run(tmp_path, run_id):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(run_id)


# comparisons train every method, CNNs included. Not here, each with its own smoke run: pretrain (refuses synthetic
# data unless asked; tests/cnn/test_pretrain.py), all_hem_pretrained and all_pbs_pretrained (need a pretrained
# file; same file) and domain_shift (needs another lab's real cells; tests/evaluate/test_shift.py).
@pytest.mark.each_experiment(slow_suffix=("_compare", "_cascades_cv"),
                             exclude=("pretrain", "all_hem_pretrained", "all_pbs_pretrained", "domain_shift"))
def test_experiment_smoke_runs_on_synthetic_fallback(compose, tmp_path, name):
    cfg, choices = compose(f"+experiment={name}", *SMALL)
    out = run_experiment(cfg, tmp_path / "run", name, choices)
    assert out["source"] == "synthetic"  # paths.root has no ../shared/data: the built-in data stands in
    m = out["metrics"]
    for key in ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "accuracy_ci_low", "accuracy_ci_high"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["accuracy"] > 0.6  # the synthetic classes are separable by construction
    run_dir = out["run_dir"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    parent = _mlflow_run(tmp_path, out["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["data.source"] == "synthetic" and "git_commit" in parent.data.tags
    assert parent.data.params["choice.experiment"] == name
    assert client.get_experiment(parent.info.experiment_id).name == name
    assert {"config.yaml", "skipped.csv", "manifest.csv"} <= {a.path for a in client.list_artifacts(out["run_id"])}
    compare = len(out["methods"]) > 1
    if compare:
        comp = pd.read_csv(run_dir / "comparison.csv")
        assert set(comp["method"]) == set(out["methods"]) and comp["run_id"].notna().all()
        assert 0 <= json.loads((run_dir / "mcnemar.json").read_text())["p_value"] <= 1
    for method, res in out["methods"].items():
        mdir = run_dir / method if compare else run_dir
        for f in ("predictions.csv", "per_class_report.csv", "confusion_matrix.png", "metrics.json",
                  "model/model.json", "model/pipeline.joblib"):
            assert (mdir / f).is_file(), f
        # issue #10.2: the held-out share outside the training split's domain, and the saved model's domain
        assert 0.0 <= json.loads((mdir / "metrics.json").read_text())["ood_share_test"] <= 1.0
        assert json.loads((mdir / "model" / "model.json").read_text())["domain"]["threshold"] > 0
        preds = pd.read_csv(mdir / "predictions.csv")
        assert {"path", "label", "fold", "predicted"} <= set(preds.columns)
        run = _mlflow_run(tmp_path, res["run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.metrics["accuracy"] == pytest.approx(res["metrics"]["accuracy"])
        arts = {a.path for a in client.list_artifacts(res["run_id"])}
        assert {"confusion_matrix.png", "predictions.csv", "model"} <= arts
        if compare:
            assert run.data.tags["mlflow.parentRunId"] == out["run_id"]


def test_binary_experiments_report_binary_metrics(compose, tmp_path):
    cfg, choices = compose("+experiment=all_hem", *SMALL, "tracking=disabled")
    m = run_experiment(cfg, tmp_path / "a", "all_hem", choices)["metrics"]
    assert {"sensitivity", "specificity", "roc_auc", "roc_auc_ci_low"} <= set(m)
    assert (tmp_path / "a" / "roc.png").is_file()
    cfg, choices = compose("+experiment=all_pbs", *SMALL, "tracking=disabled")
    m = run_experiment(cfg, tmp_path / "b", "all_pbs", choices)["metrics"]
    assert {"binary_accuracy", "binary_sensitivity", "binary_roc_auc"} <= set(m)


def test_same_seed_same_results(compose, tmp_path):
    cfg, choices = compose("+experiment=wbc5", *SMALL, "tracking=disabled")
    a = run_experiment(cfg, tmp_path / "a", "wbc5", choices)
    b = run_experiment(cfg, tmp_path / "b", "wbc5", choices)
    assert a["metrics"]["accuracy"] == b["metrics"]["accuracy"]
    pa, pb = (pd.read_csv(x["run_dir"] / "predictions.csv") for x in (a, b))
    pd.testing.assert_frame_equal(pa, pb)


def test_bad_files_are_skipped_counted_and_listed(save_png, compose, tmp_path, folder_dataset):
    (folder_dataset / "lymphocyte" / "zero.jpg").write_bytes(b"")
    (folder_dataset / "eosinophil" / "text.png").write_text("hello")
    save_png(folder_dataset / "eosinophil" / "blank.png", np.full((64, 64, 3), 230, np.uint8))
    cfg, choices = compose("data=folders", f"data.root={folder_dataset}", "eval.test_size=0.25",
                           "eval.n_bootstrap=20", "classifier=random_forest", "tracking=disabled")
    out = run_experiment(cfg, tmp_path / "run", "bad", choices)
    skipped = pd.read_csv(tmp_path / "run" / "skipped.csv")
    assert len(skipped) == 3 and out["metrics"]["n_skipped"] == 3
    assert set(skipped["stage"]) == {"features"}


def test_skipped_images_stay_in_the_splits_and_count_as_coverage(save_png, compose, tmp_path, folder_dataset):
    """A cell-less or unreadable image is a test row the method skipped, never dropped before splitting."""
    (folder_dataset / "lymphocyte" / "zero.jpg").write_bytes(b"")
    for i in range(2):
        save_png(folder_dataset / "eosinophil" / f"blank{i}.png", np.full((64, 64, 3), 230, np.uint8))
    cfg, choices = compose("data=folders", f"data.root={folder_dataset}", "eval=cv", "eval.n_splits=3",
                           "eval.n_bootstrap=20", "classifier=random_forest", "tracking=disabled")
    m = run_experiment(cfg, tmp_path / "run", "bad", choices)["metrics"]
    assert m["n_test_rows"] == 27 and m["n_scored"] == 24 and m["n_skipped_test"] == 3
    assert m["coverage"] == pytest.approx(24 / 27)
    # on all test rows a skipped row counts wrong
    assert m["all_accuracy"] == pytest.approx(m["accuracy"] * 24 / 27)
    assert m["all_n_test"] == 27 and m["n_test"] == 24
    pred = pd.read_csv(tmp_path / "run" / "predictions.csv")
    skipped = pred[pred["status"] == "skipped"]
    assert len(pred) == 27 and len(skipped) == 3 and skipped["predicted"].isna().all()
    assert skipped["reason"].str.contains("NoCellFoundError").sum() == 2
    assert skipped["reason"].str.contains("ImageReadError").sum() == 1
    # each split's scores are logged for repeated-split tables
    assert {f"split{k}_balanced_accuracy" for k in range(3)} <= set(m)


def test_a_cnn_reading_images_still_scores_cells_the_segmentation_missed():
    from hybridwbc.evaluate.method import RunData

    reasons = np.array(["", "NoCellFoundError: no nucleus", "ImageReadError: truncated", "non-finite feature values"],
                       dtype=object)
    rows = RunData(cfg=None, experiment="x", kept=pd.DataFrame(), features=np.zeros((4, 1)),
                   y=np.array(["a", "b", "a", "b"], dtype=object), groups=np.arange(4).astype(object),
                   subjects=False, skip_reason=reasons)
    assert rows.usable("features").tolist() == [True, False, False, False]
    assert rows.usable("paths_features").tolist() == [True, False, False, False]
    assert rows.usable("paths").tolist() == [True, True, False, True]


def test_failed_run_is_marked_failed_in_mlflow(compose, tmp_path):
    cfg, choices = compose("data=folders", f"data.root={tmp_path}/missing")
    with pytest.raises(DataLayoutError, match="does not exist"):
        run_experiment(cfg, tmp_path / "run", "broken", choices)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("broken")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FAILED"
    assert "does not exist" in run.data.tags["error"]


def test_single_class_left_after_skipping_stops(save_png, compose, tmp_path):
    root = tmp_path / "ds"
    save_png(root / "a" / "1.png", np.full((64, 64, 3), 230, np.uint8))  # blank: no cell
    for i in range(3):
        from hybridwbc.data.synthetic import PROFILES, draw_cell

        save_png(root / "b" / f"{i}.png", draw_cell(np.random.default_rng(i), PROFILES["hem"], 64).image)
    cfg, choices = compose("data=folders", f"data.root={root}", "tracking=disabled")
    with pytest.raises(DataLayoutError, match="1 class\\(es\\) remain"):
        run_experiment(cfg, tmp_path / "run", "x", choices)


def test_cli_runs_and_reports_errors_in_one_line(project_root, tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "HYBRIDWBC_DATA"}
    base = [sys.executable, "-m", "hybridwbc.run", f"paths.root={tmp_path}", "progress=false",
            f"hydra.run.dir={tmp_path}/out"]
    ok = subprocess.run(base + ["+experiment=all_hem", "tracking=disabled", *SMALL], capture_output=True,
                        text=True, cwd=project_root, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "BUILT-IN SYNTHETIC" in ok.stdout and "balanced_accuracy" in ok.stdout
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["n_images"] == 24
    bad = subprocess.run(base + ["data=folders", f"data.root={tmp_path}/nowhere"], capture_output=True, text=True,
                         cwd=project_root, env=env, timeout=300)
    assert bad.returncode == 1
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("hybridwbc: error:")]
    assert len(errors) == 1 and "nowhere" in errors[0] and "Fix:" in errors[0]
    assert "Traceback" not in bad.stderr


def test_git_commit_ignores_the_tables_the_framework_writes(tmp_path):
    import subprocess

    from hybridwbc.tracking import git_commit

    def git(*a):
        subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "experiments" / "x").mkdir(parents=True)
    for f in ("experiments/x/results.md", "experiments/timing.md", "code.py"):
        (tmp_path / f).write_text("a\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    sha = git_commit(tmp_path)
    assert len(sha) == 40
    (tmp_path / "experiments" / "x" / "results.md").write_text("b\n")
    (tmp_path / "experiments" / "timing.md").write_text("b\n")
    assert git_commit(tmp_path) == sha
    (tmp_path / "code.py").write_text("b\n")
    assert git_commit(tmp_path) == f"{sha}-dirty"
