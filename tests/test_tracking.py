"""The tracker: run names, the experiment kind, datasets on nested runs, quiet logs, the closing summary."""

import logging
import os
import re

import pandas as pd
import pytest

from hybridwbc.run import run_experiment
from hybridwbc.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, Tracker, dataset_name, run_name

SMALL = ["data.synthetic.n_per_class=12", "data.synthetic.size=64", "eval.n_bootstrap=20", "features.n_jobs=1",
         "classifier=svm"]  # the experiments default to CNN methods; the SVM keeps these runs to seconds


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_comparison_children_are_named_nested_and_carry_the_dataset(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    table = pd.DataFrame({"path": [f"{i}.png" for i in range(7)], "label": ["a", "b"] * 3 + ["a"]})
    with Tracker(True, uri, str(tmp_path / "art"), "wbc5_compare", run_name("wbc5_compare", "2 methods", 3)) as t:
        t.log_dataset(table, dataset_name("pbc", "real"), tmp_path, "0123abcd")
        with t.child(run_name("wbc5_compare", "svm", 3)) as child:
            child.log_headline({"all_balanced_accuracy": 0.8, "all_balanced_accuracy_ci_low": 0.7,
                                "all_balanced_accuracy_ci_high": 0.9, "balanced_accuracy": 0.85})
    client = _client(uri)
    parent, kid = client.get_run(t.run_id), client.get_run(child.run_id)
    assert parent.info.run_name == "wbc5_compare · 2 methods · seed 3"
    assert kid.info.run_name == "wbc5_compare · svm · seed 3"
    assert kid.data.tags["mlflow.parentRunId"] == t.run_id
    for run in (parent, kid):
        (ds,) = run.inputs.dataset_inputs
        assert (ds.dataset.name, ds.dataset.digest) == ("pbc", "0123abcd") and '"num_rows": 7' in ds.dataset.profile
    assert kid.data.metrics["headline.balanced_accuracy"] == 0.8  # all test rows, not the scored rows' 0.85
    assert kid.data.metrics["headline.balanced_accuracy.ci_high"] == 0.9
    assert client.get_experiment(parent.info.experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_an_experiment_made_before_the_kind_tag_gets_it(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    exp_id = mlflow.create_experiment("old", artifact_location=(tmp_path / "art").as_uri())
    assert EXPERIMENT_KIND_TAG not in _client(uri).get_experiment(exp_id).tags
    with Tracker(True, uri, str(tmp_path / "art"), "old", "old · svm · seed 0"):
        pass
    assert _client(uri).get_experiment(exp_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_disabled_tracker_ignores_datasets_and_headlines(tmp_path):
    with Tracker(False, "sqlite:///unused.db", str(tmp_path), "x") as t:
        t.log_dataset(pd.DataFrame({"path": ["a"]}), "d", tmp_path, "ff")
        t.log_headline({"balanced_accuracy": 0.5})
        t.describe("text")
    assert t.run_id is None and not (tmp_path / "unused.db").exists()


def test_a_run_logs_one_line_per_stage_and_a_summary_naming_the_run(compose, tmp_path, monkeypatch, caplog,
                                                                      capfd):
    monkeypatch.delenv("HYBRIDWBC_DATA", raising=False)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    cfg, choices = compose("+experiment=wbc5", *SMALL)
    with caplog.at_level(logging.INFO):
        out = run_experiment(cfg, tmp_path / "run", "wbc5", choices)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"  # TensorFlow's C++ INFO/WARNING lines off for a CNN's training
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("hybridwbc")]
    stages = [m.split()[0] for m in ours if re.match(r"^\S.* +\d+\.\d s  ", m)]
    assert stages == ["data", "features", "evaluate", "save"], ours
    noisy = [r.getMessage() for r in caplog.records if r.name.startswith("mlflow") and r.levelno < logging.WARNING]
    assert noisy == []  # no "Creating initial MLflow database tables", no signature validation chatter
    printed = capfd.readouterr()
    assert "Downloading artifacts" not in printed.out + printed.err
    summary = printed.out[printed.out.index("== wbc5 · svm · seed 0: done"):]
    m = out["metrics"]
    assert (f"balanced accuracy {m['all_balanced_accuracy']:.3f} [{m['all_balanced_accuracy_ci_low']:.3f}, "
            f"{m['all_balanced_accuracy_ci_high']:.3f}]") in summary
    assert f"MLflow run: 'wbc5 · svm · seed 0' ({out['run_id']})" in summary
    assert f"run folder: {tmp_path / 'run'}" in summary
    assert f"python -m hybridwbc.predict model={tmp_path / 'run' / 'model'} input=" in summary
    assert "make ui" in summary  # the project's own store (paths.root/mlflow.db): the one `make ui` opens
    run = _client(f"sqlite:///{tmp_path}/mlflow.db").get_run(out["run_id"])
    assert run.data.tags["mlflow.note.content"].startswith("== wbc5 · svm · seed 0: done")


def test_summary_without_tracking_says_so(compose, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HYBRIDWBC_DATA", raising=False)
    cfg, choices = compose("+experiment=wbc5", *SMALL, "tracking=disabled")
    run_experiment(cfg, tmp_path / "run", "wbc5", choices)
    out = capsys.readouterr().out
    assert "MLflow run: (tracking disabled)" in out and "mlflow ui" not in out and "make ui" not in out


@pytest.mark.parametrize("source, name", [("real", "pbc"), ("synthetic", "pbc (built-in synthetic)")])
def test_dataset_name_marks_the_synthetic_stand_in(source, name):
    assert dataset_name("pbc", source) == name


def test_a_third_party_warning_repeated_with_other_numbers_shows_once(caplog):
    from hybridwbc.tracking import quiet_third_party

    quiet_third_party()
    quiet_third_party()  # idempotent: one filter
    tf_log = logging.getLogger("tensorflow")
    assert sum(type(f).__name__ == "OnceFilter" for f in tf_log.filters) == 1
    with caplog.at_level(logging.WARNING):
        for n, addr in ((5, "0x7f2a"), (6, "0x7f3b")):
            tf_log.warning("%d out of the last %d calls to <function f at %s> triggered tf.function retracing", n, n,
                           addr)
        tf_log.warning("another warning")
    assert [r.getMessage()[:2] for r in caplog.records if r.name == "tensorflow"] == ["5 ", "an"]


SIGTERM_CHILD = """
import sys
from hybridwbc.tracking import Tracker, fail_runs_on_sigterm

assert fail_runs_on_sigterm() is not None
with Tracker(True, sys.argv[1], sys.argv[2], "stopped") as parent:
    with parent.child("method") as child:
        print(parent.run_id, child.run_id, flush=True)  # both runs are open: wait here for the test's signal
        sys.stdin.readline()
"""


def test_a_run_stopped_by_sigterm_ends_failed_with_its_reason(project_root, tmp_path, child_process):
    """The child opens a run and a nested run, says so, and waits (a known point, not a race); then SIGTERM."""
    import signal
    import sys

    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "child.py").write_text(SIGTERM_CHILD)
    env = dict(os.environ, PYTHONPATH=str(project_root))
    proc = child_process([sys.executable, str(tmp_path / "child.py"), uri, str(tmp_path / "art")], env=env)
    ids = proc.stdout.readline().decode().split()
    if len(ids) != 2:
        proc.wait()
        pytest.fail(f"the child did not open its runs: {proc.stderr.read().decode()[-2000:]}")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert proc.returncode == 143  # 128 + SIGTERM, as a shell reports a process the signal ended
    client = mlflow.tracking.MlflowClient(uri)
    for run_id in ids:
        run = client.get_run(run_id)
        assert run.info.status == "FAILED"
        assert run.data.tags["error"].startswith("RunTerminated: terminated by SIGTERM")


def test_sigterm_handling_keeps_a_launchers_own_handler():
    import signal

    from hybridwbc.tracking import fail_runs_on_sigterm

    def mine(signum, frame):
        pass

    old = signal.signal(signal.SIGTERM, mine)
    try:
        assert fail_runs_on_sigterm() is None and signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)


def test_the_run_entry_point_fails_its_runs_on_sigterm_and_restores_the_handler(monkeypatch, tmp_path):
    import signal
    import sys

    import hybridwbc.run as run_module

    seen = []

    def fake_run(cfg, output_dir, experiment, choices, command):
        seen.append(signal.getsignal(signal.SIGTERM))
        return {"metrics": {"balanced_accuracy": 1.0}}

    monkeypatch.setattr(run_module, "run_experiment", fake_run)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["hybridwbc.run", f"hydra.run.dir={tmp_path / 'out'}"])
    before = signal.getsignal(signal.SIGTERM)
    assert before is signal.SIG_DFL
    run_module.main()  # Hydra composes the default config and calls the (faked) experiment once
    assert len(seen) == 1 and callable(seen[0]) and seen[0] not in (signal.SIG_DFL, signal.SIG_IGN)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_child_cut_short_while_starting_ends_failed_and_so_does_its_parent(tmp_path, monkeypatch):
    """A signal or error inside a nested run's ``__enter__`` (after MLflow started it) skips its ``__exit__``:
    the child must still end FAILED, and the parent's status must land on the parent, not on the child."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    table = pd.DataFrame({"path": ["a.png"], "label": ["a"]})
    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(self.run_name)
        if self.is_child:
            raise KeyboardInterrupt("stopped while the child was starting")

    monkeypatch.setattr(Tracker, "log_dataset", interrupted)
    parent = Tracker(True, uri, str(tmp_path / "art"), "x", "x · 1 method · seed 0")
    child = parent.child("x · svm · seed 0")
    with pytest.raises(KeyboardInterrupt, match="while the child was starting"):
        with parent:
            parent._dataset = (table, "d", tmp_path, "ff", "training")
            with child:
                pass
    assert calls == ["x · svm · seed 0"]
    client = _client(uri)
    for run_id in (parent.run_id, child.run_id):
        run = client.get_run(run_id)
        assert run.info.status == "FAILED"
        assert run.data.tags["error"] == "KeyboardInterrupt: stopped while the child was starting"


def test_a_nested_run_left_open_does_not_take_its_parents_status(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with Tracker(True, uri, str(tmp_path / "art"), "x", "x · svm · seed 0") as t:
        stray = mlflow.start_run(nested=True).info.run_id  # e.g. a library's run never ended
    client = _client(uri)
    assert client.get_run(stray).info.status == "FAILED"
    assert client.get_run(t.run_id).info.status == "FINISHED"
    assert mlflow.active_run() is None


def test_every_cli_command_fails_its_runs_on_sigterm_and_restores_the_handler():
    """``analyze``, ``predict``, ``verify`` and the other ``run_cli`` commands open MLflow runs too: SIGTERM
    inside one becomes RunTerminated (exit status 143), and the handler is put back afterwards."""
    import signal

    from hybridwbc.cli import run_cli
    from hybridwbc.tracking import RunTerminated

    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    seen = []

    def command():
        seen.append(signal.getsignal(signal.SIGTERM))
        if callable(seen[-1]):  # without the handler the signal would kill pytest itself
            signal.raise_signal(signal.SIGTERM)

    with pytest.raises(RunTerminated, match="terminated by SIGTERM") as info:
        run_cli(command)
    assert info.value.code == 143
    assert callable(seen[0]) and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert run_cli(lambda: None) == 0 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_child_whose_run_was_ended_elsewhere_leaves_its_parent_open(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with Tracker(True, uri, str(tmp_path / "art"), "x", "x · 1 method · seed 0") as parent:
        with parent.child("x · svm · seed 0") as child:
            mlflow.end_run()  # e.g. a library ended the active run itself
        assert mlflow.active_run().info.run_id == parent.run_id  # the child did not end its parent
        parent.log_metrics({"after": 1.0})
    client = _client(uri)
    assert client.get_run(child.run_id).info.status == "FINISHED"
    assert client.get_run(parent.run_id).info.status == "FINISHED"
    assert client.get_run(parent.run_id).data.metrics["after"] == 1.0
