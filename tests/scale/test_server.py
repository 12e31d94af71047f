"""A shared MLflow tracking server on PostgreSQL: a run logged through it behaves as with sqlite (tables,
registry, serving). Needs Debian's postgresql (``.ci/run`` installs it) and psycopg2 (extra ``scale``)."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from hybridwbc.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")

SMALL = ["classifier=svm", "data.synthetic.n_per_class=12", "data.synthetic.size=64", "eval.n_bootstrap=20",
         "features.n_jobs=1"]


@pytest.fixture
def tracking_server():
    from hybridwbc.scale.server import Postgres, TrackingServer, free_port, postgres_bin

    try:
        postgres_bin("initdb")
    except ConfigError as exc:
        pytest.skip(f"needs PostgreSQL: {exc}")
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver is in the extra 'scale' (pip install -e '.[scale]')")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("as root, PostgreSQL runs as the postgres user through runuser, which is missing")
    folder = Path(tempfile.mkdtemp(prefix="hybridwbc-server-"))  # in /tmp, opened up: the postgres user reaches it
    folder.chmod(0o755)
    pg = Postgres(folder / "postgres", free_port())
    server = None
    try:
        pg.start()
        server = TrackingServer(pg.uri, folder, free_port()).start()
        yield server
    finally:
        if server is not None:
            server.stop()
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_run_tables_registry_and_serving_through_a_postgres_backed_server(tracking_server, tmp_path, save_png):
    from mlflow.tracking import MlflowClient

    from hybridwbc.data.synthetic import PROFILES, draw_cell
    from hybridwbc.report.tables import write_tables
    from hybridwbc.serve.predict import predict
    from hybridwbc.serve.pyfunc import register

    uri = tracking_server.uri
    env = {k: v for k, v in os.environ.items() if k != "HYBRIDWBC_DATA"}
    done = subprocess.run([sys.executable, "-m", "hybridwbc.run", "+experiment=all_hem", *SMALL,
                           f"tracking.uri={uri}", "progress=false"], cwd=tmp_path, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("all_hem")
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # the server stores the artifacts
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and 0 <= run.data.metrics["balanced_accuracy"] <= 1
    assert {"model", "config.yaml"} <= {a.path for a in client.list_artifacts(run.info.run_id)}

    md = write_tables("all_hem", uri, tmp_path / "experiments", SMALL, allow_synthetic=True)
    assert run.info.run_id in md.read_text()

    reg = register(run.info.run_id, uri)
    assert reg["name"] == "hybridwbc-all_hem" and reg["version"] == 1
    assert client.get_model_version(reg["name"], "1").status == "READY"

    img = draw_cell(__import__("numpy").random.default_rng(0), PROFILES["lymphocyte"], size=64).image
    cell = save_png(tmp_path / "cells" / "cell.png", img)
    local = next(tmp_path.glob("outputs/*/*/model"))
    want = predict(str(local), str(cell), str(tmp_path / "local.csv"), n_jobs=1)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        got = predict(f"models:/{reg['name']}/1", str(cell), str(tmp_path / "served.csv"), n_jobs=1)
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    pd.testing.assert_frame_equal(got, want)


def test_server_that_cannot_start_reports_its_log(tmp_path):
    from hybridwbc.scale.server import TrackingServer, free_port

    server = TrackingServer("nosuchstore://nowhere", tmp_path, free_port())  # MLflow refuses the scheme at once
    with pytest.raises(ConfigError, match="did not come up .*Its log ends"):
        server.start(timeout=120)
    server.stop()


def test_missing_postgres_names_the_package(monkeypatch):
    import hybridwbc.scale.server as srv

    monkeypatch.setattr(srv.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(srv.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="apt-get install postgresql"):
        srv.postgres_bin("initdb")


def test_a_failing_postgres_command_is_one_error_with_its_message(tmp_path):
    from hybridwbc.scale.server import Postgres

    with pytest.raises(ConfigError, match=r"PostgreSQL command false failed \(1\)"):
        Postgres(tmp_path, 1)._run(["/bin/false"])
