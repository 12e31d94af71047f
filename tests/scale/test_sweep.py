"""Sweeps through Hydra launchers: experiments and parent runs made before the jobs, jobs nested and tagged,
nested parallelism capped, and the seeds table."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from hydra.types import RunMode
from omegaconf import OmegaConf

from hybridwbc.errors import DataLayoutError
from hybridwbc.scale.sweep import apply_budget, job_budget, swept_experiments

TINY = ["classifier=svm", "progress=false", "data.synthetic.n_per_class=12", "data.synthetic.size=64",
        "eval.n_bootstrap=20", "tracking.log_pyfunc=false"]


@pytest.fixture(autouse=True)
def _no_real_data(monkeypatch):
    monkeypatch.delenv("HYBRIDWBC_DATA", raising=False)
    monkeypatch.delenv("HYBRIDWBC_SWEEP", raising=False)


def test_budget_shares_the_cores_between_parallel_jobs():
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    submitit = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
    assert job_budget(RunMode.MULTIRUN, {"_target_": joblib, "n_jobs": 2}, cores=2) == 1
    assert job_budget(RunMode.MULTIRUN, {"_target_": joblib, "n_jobs": 2}, cores=8) == 4
    assert job_budget(RunMode.MULTIRUN, {"_target_": joblib, "n_jobs": -1}, cores=8) == 1  # one job per core
    assert job_budget(RunMode.MULTIRUN, {"_target_": joblib, "n_jobs": -2}, cores=8) == 1  # 7 jobs
    assert job_budget(RunMode.MULTIRUN, {"_target_": joblib, "n_jobs": 3}, cores=2) == 1  # never below one
    assert job_budget(RunMode.MULTIRUN, {"_target_": submitit, "cpus_per_task": 3}, cores=8) == 3
    assert job_budget(RunMode.MULTIRUN, {"_target_": submitit}, cores=8) == 1
    assert job_budget(RunMode.MULTIRUN, {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"},
                      cores=8) is None  # sequential jobs: no cap
    assert job_budget(RunMode.RUN, {"_target_": joblib, "n_jobs": 2}, cores=8) is None


def test_apply_budget_caps_every_n_jobs_and_the_thread_pools(compose, monkeypatch):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                "TF_NUM_INTEROP_THREADS"):
        monkeypatch.setenv(var, "99")  # restored after the test
    cfg, _ = compose("+experiment=wbc5_compare", "features.n_jobs=4")
    changed = apply_budget(cfg, 1)
    assert cfg.features.n_jobs == 1 and changed["features.n_jobs"] == (4, 1)
    forests = [k for k in changed if k.startswith("methods.") and k.endswith("n_jobs")]
    assert forests, changed  # the random-forest heads inside the compared methods are capped too
    assert all(OmegaConf.select(cfg, k) == 1 for k in changed)
    assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["TF_NUM_INTRAOP_THREADS"] == "1"
    assert apply_budget(cfg, None) == {}


def test_worker_counts_do_not_change_the_config_identity(compose):
    from hybridwbc.config import config_hash

    a, _ = compose("+experiment=wbc5", "features.n_jobs=1")
    b, _ = compose("+experiment=wbc5", "features.n_jobs=2")
    c, _ = compose("+experiment=wbc5", "seed=3")
    assert config_hash(a) == config_hash(b) != config_hash(c)


def test_swept_experiments_reads_the_sweep_overrides():
    def cfg(task, name=None, choice=None):
        return OmegaConf.create({"tracking": {"experiment_name": name}, "hydra": {
            "overrides": {"task": task}, "runtime": {"choices": {"experiment": choice}}}})

    assert swept_experiments(cfg(["+experiment=wbc5,all_hem", "seed=0,1"])) == ["wbc5", "all_hem"]
    assert swept_experiments(cfg(["+experiment=wbc5", "seed=0,1"], choice="wbc5")) == ["wbc5"]
    assert swept_experiments(cfg(["seed=0,1"])) == ["default"]
    assert swept_experiments(cfg(["+experiment=wbc5,all_hem"], name="mine")) == ["mine"]


def test_close_sweep_counts_jobs_and_fails_the_parent_of_a_failed_job(tmp_path):
    from mlflow.tracking import MlflowClient

    from hybridwbc.tracking import close_sweep, open_sweep

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    info = open_sweep(uri, str(tmp_path / "art"), ["a"], "s1", "JoblibLauncher", "python -m hybridwbc.run -m")
    assert json.loads(os.environ["HYBRIDWBC_SWEEP"])["parents"] == info["parents"]
    client = MlflowClient(uri)
    parent = info["parents"]["a"]
    exp = client.get_run(parent).info.experiment_id
    for status in ("FINISHED", "FAILED"):
        run = client.create_run(exp, tags={"mlflow.parentRunId": parent})
        client.set_terminated(run.info.run_id, status=status)
    from hybridwbc.report.seeds import write_seeds

    assert close_sweep(info) == {"a": {"FINISHED": 1, "FAILED": 1}}
    with pytest.raises(DataLayoutError, match=r"has no sweep 'nope'"):
        write_seeds("a", uri, tmp_path, sweep_id="nope")
    p = client.get_run(parent)
    assert p.info.status == "FAILED" and p.data.metrics["runs_failed"] == 1
    assert "HYBRIDWBC_SWEEP" not in os.environ


def _sweep(tmp_path, *args, default_store=False):
    uri = f"sqlite:///{tmp_path}/mlflow.db"  # the default store of a run from tmp_path, too
    store = [] if default_store else [f"tracking.uri={uri}", f"tracking.artifact_root={tmp_path}/mlartifacts"]
    cmd = [sys.executable, "-m", "hybridwbc.run", "-m", "+experiment=wbc5", *TINY, *store, *args]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    assert done.returncode == 0, done.stderr[-3000:]
    return uri, done


@pytest.mark.slow
def test_joblib_sweep_runs_jobs_in_parallel_processes_nested_under_one_parent(tmp_path):
    from mlflow.tracking import MlflowClient

    uri, done = _sweep(tmp_path, "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", default_store=True)
    assert "on_multirun_start raised" not in done.stderr  # the callback made the store before the jobs
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("wbc5")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    jobs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(jobs) == 2 and {r.info.status for r in jobs} == {"FINISHED"}
    assert {r.data.tags["sweep.id"] for r in jobs} == {parent.data.tags["sweep.id"]}
    assert {r.data.params["seed"] for r in jobs} == {"0", "1"}
    assert parent.data.metrics["runs_finished"] == 2
    logs = "".join(p.read_text() for p in tmp_path.glob("multirun/*/*/*/run.log"))
    assert "features.n_jobs 2->1" in logs  # 2 parallel jobs on this machine's cores: inner workers capped
    assert "JoblibLauncher" in parent.data.tags["sweep.launcher"]

    from hybridwbc.report.seeds import write_seeds

    md = write_seeds("wbc5", uri, tmp_path / "experiments")
    table = pd.read_csv(md.with_suffix(".csv"))
    assert list(table["method"]) == ["svm"] and table["n_seeds"].tolist() == [2]
    assert table["seeds"].tolist() == ["0,1"]
    scores = [r.data.metrics["balanced_accuracy"] for r in jobs]
    assert table["balanced_accuracy_mean"].iloc[0] == pytest.approx(sum(scores) / 2)
    assert parent.info.run_id in md.read_text() and str(tmp_path) not in md.read_text()


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_sweep(tmp_path):
    from mlflow.tracking import MlflowClient

    uri, _ = _sweep(tmp_path, "seed=0", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=20")
    runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("wbc5").experiment_id])
    job = [r for r in runs if r.data.tags.get("role") != "sweep"]
    assert len(job) == 1 and job[0].info.status == "FINISHED"
    assert "LocalLauncher" in job[0].data.tags["sweep.launcher"]


def test_seeds_table_without_a_sweep_names_the_fix(tmp_path):
    from hybridwbc.report.seeds import write_seeds

    with pytest.raises(DataLayoutError, match="has no sweep in this store. Fix: run one"):
        write_seeds("wbc5", f"sqlite:///{tmp_path}/mlflow.db", tmp_path)


def test_seed_table_groups_by_what_the_sweep_varied():
    from hybridwbc.report.seeds import seed_table

    rows = pd.DataFrame({"method": ["svm", "svm", "rf", "rf"], "classifier.name": ["svm", "svm", "rf", "rf"],
                         "features.name": ["simple"] * 4, "seed": ["0", "1", "0", "1"], "run_id": list("abcd"),
                         "accuracy": [0.8, 0.9, 0.7, 0.7], "balanced_accuracy": [0.8, 1.0, 0.6, 0.6]})
    t = seed_table(rows)
    assert list(t["method"]) == ["svm", "rf"]  # ranked by mean balanced accuracy
    assert t.loc[0, "balanced_accuracy_mean"] == pytest.approx(0.9)
    assert t.loc[0, "balanced_accuracy_sd"] == pytest.approx(0.1414213, rel=1e-5)
    assert t.loc[1, "accuracy_sd"] == 0 and "features.name" not in t.columns
    assert "classifier.name" not in t.columns  # it varies, but only as the method does


def test_seeds_table_of_a_sweep_whose_jobs_all_failed_says_so(tmp_path):
    from mlflow.tracking import MlflowClient

    from hybridwbc.report.seeds import write_seeds
    from hybridwbc.tracking import close_sweep, open_sweep

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    info = open_sweep(uri, str(tmp_path / "art"), ["a"], "s2", "JoblibLauncher", "python -m hybridwbc.run -m")
    client = MlflowClient(uri)
    parent = info["parents"]["a"]
    run = client.create_run(client.get_run(parent).info.experiment_id, tags={"mlflow.parentRunId": parent})
    client.set_terminated(run.info.run_id, status="FAILED")
    close_sweep(info, "FAILED")
    with pytest.raises(DataLayoutError, match=r"has no finished job \(jobs by status: \{'FAILED': 1\}\)"):
        write_seeds("a", uri, tmp_path)
