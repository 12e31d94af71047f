"""The MLflow UI reads at a glance: a real browser opens a store made by a tiny run and finds what a user looks for.

The run is named ``<experiment> · <method> · seed <k>``, its experiment opens on the model-training view
(``mlflow.experimentKind``), its data shows as a dataset, and its headline metric is on the run page. The
screenshot is logged to the run (``ui/run_page.png``) and kept in the test's folder (or in
``$HYBRIDWBC_SCREENSHOTS`` when set). Every wait polls for a condition, with a generous cap.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from hybridwbc.run import run_experiment

SMALL = ["data.synthetic.n_per_class=12", "data.synthetic.size=64", "eval.n_bootstrap=20", "features.n_jobs=1",
         "eval.n_splits=3", "classifier=svm"]  # all_hem defaults to cnn_svm; the SVM keeps the run to seconds
CAP_S = 120  # the most any one wait may take, on a slow shared machine


def _poll(condition, what: str, cap: float = CAP_S):
    """Call ``condition`` until it returns something truthy (returned); fail naming ``what`` after ``cap`` s."""
    deadline = time.monotonic() + cap
    last = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the server or the page is not ready yet
            last = exc
        time.sleep(0.25)
    pytest.fail(f"gave up waiting for {what} after {cap} s (last error: {last!r})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tiny_store(compose, tmp_path, monkeypatch):
    """A sqlite store holding one finished all_hem run on the built-in synthetic data."""
    monkeypatch.delenv("HYBRIDWBC_DATA", raising=False)
    cfg, choices = compose("+experiment=all_hem", *SMALL)
    out = run_experiment(cfg, tmp_path / "run", "all_hem", choices)
    return f"sqlite:///{tmp_path}/mlflow.db", out


@pytest.fixture
def ui_server(tiny_store, tmp_path):
    """``mlflow server`` on a free loopback port over ``tiny_store``; yields its base URL."""
    uri, _ = tiny_store
    port = _free_port()
    log = open(tmp_path / "mlflow_server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        _poll(lambda: proc.poll() is None and urllib.request.urlopen(base + "/health", timeout=5).status == 200,
              "the MLflow server to answer /health")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _page_has(browser, *texts):
    body = browser.find_element("tag name", "body").text
    return all(t in body for t in texts) and body


def test_ui_shows_run_name_dataset_and_metrics(browser, ui_server, tiny_store, tmp_path):
    from mlflow.tracking import MlflowClient

    from hybridwbc.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, UI_QUERY

    uri, out = tiny_store
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(out["run_id"])
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert run.info.run_name == "all_hem · svm · seed 0" == out["run_name"]
    (ds,) = run.inputs.dataset_inputs
    assert ds.dataset.name == "cnmc (built-in synthetic)" and '"num_rows": 24' in ds.dataset.profile
    m = run.data.metrics
    assert m["headline.balanced_accuracy"] == m["all_balanced_accuracy"]
    assert m["headline.balanced_accuracy.ci_low"] <= m["headline.balanced_accuracy"]
    assert m["headline.balanced_accuracy"] <= m["headline.balanced_accuracy.ci_high"]

    # the experiment's run list: the run's name and its dataset, on the model-training view (no GenAI "Traces")
    browser.get(f"{ui_server}/#/experiments/{exp.experiment_id}/runs?{UI_QUERY}")
    body = _poll(lambda: _page_has(browser, "all_hem · svm · seed 0", "cnmc (built-in synthetic)", "Model registry"),
                 "the run list to show the run's name and dataset on the model-training view")
    assert "Judges" not in body  # the GenAI view's sidebar
    browser.save_screenshot(str(tmp_path / "run_list.png"))
    # the run page: name, dataset and the headline metric
    browser.get(f"{ui_server}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}?{UI_QUERY}")
    body = _poll(lambda: _page_has(browser, "all_hem · svm · seed 0", "cnmc (built-in synthetic)",
                                   "headline.balanced_accuracy"), "the run page to show name, dataset and metric")
    assert "balanced accuracy" in body  # the run's description: its closing summary
    metric = browser.find_element("xpath", "//*[text()='headline.balanced_accuracy']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", metric)
    shot = tmp_path / "run_page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    client.log_artifact(run.info.run_id, str(shot), "ui")
    assert "ui/run_page.png" in {a.path for a in client.list_artifacts(run.info.run_id, "ui")}
    if os.environ.get("HYBRIDWBC_SCREENSHOTS"):
        shutil.copy(shot, os.environ["HYBRIDWBC_SCREENSHOTS"])
        shutil.copy(tmp_path / "run_list.png", os.environ["HYBRIDWBC_SCREENSHOTS"])
