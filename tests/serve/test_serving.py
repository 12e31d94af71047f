"""The pyfunc model: save/log/register/load, hash checks, predict parity, and the REST server on loopback."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from hybridwbc.data.manifest import scan
from hybridwbc.errors import ConfigError, ModelLoadError
from hybridwbc.features.simple import ColourShapeFeaturizer
from hybridwbc.features.table import featurize_manifest
from hybridwbc.serve.pipeline import WBCPipeline
from hybridwbc.serve.predict import main as predict_main
from hybridwbc.serve.pyfunc import (
    FILES,
    decode_image,
    load_pyfunc,
    log_pyfunc,
    predict_frame,
    register,
    save_pyfunc,
    verify_pyfunc_dir,
)

PCOLS = ["p_eosinophil", "p_lymphocyte"]

# mlflow.pyfunc warns about its own type hints when first imported
pytestmark = pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")


@pytest.fixture(scope="module")
def trained(save_png, tmp_path_factory):
    """(pipeline, model dir, pyfunc dir, image paths) on a small synthetic two-class data set."""
    from hybridwbc.data.synthetic import PROFILES, draw_cell

    root = tmp_path_factory.mktemp("serving")
    rng = np.random.default_rng(1)
    for label in ("lymphocyte", "eosinophil"):
        for i in range(12):
            save_png(root / "data" / label / f"{label}_{i:02d}.png", draw_cell(rng, PROFILES[label], size=64).image)
    m = scan(root / "data", "folders").manifest
    f = ColourShapeFeaturizer()
    t = featurize_manifest(f, m, progress=False)
    est = RandomForestClassifier(n_estimators=20, random_state=0).fit(t.X, m["label"].iloc[t.index])
    pipe = WBCPipeline(f, est, info={"experiment": "test"})
    model_dir = pipe.save(root / "model")
    pyfunc_dir = save_pyfunc(pipe, root / "pyfunc")
    return pipe, model_dir, pyfunc_dir, sorted(str(p) for p in (root / "data").rglob("*.png"))


def _b64(path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def test_pyfunc_folder_signature_and_example(trained):
    _, _, pdir, _ = trained
    names = {p.relative_to(pdir).as_posix() for p in pdir.rglob("*") if p.is_file()}
    assert {"MLmodel", FILES, "input_example.json", "serving_input_example.json", "requirements.txt",
            "artifacts/pipeline/pipeline.joblib", "artifacts/pipeline/model.json"} <= names
    assert not any(n.endswith(".pkl") for n in names)  # model from code: nothing pickled but the pipeline
    model = load_pyfunc(pdir)
    sig = model.metadata.signature
    assert sig.inputs.input_names() == ["path", "image"] and sig.inputs.required_input_names() == []
    assert sig.outputs.input_names() == ["path", "label", "confidence", *PCOLS, "status", "error"]
    assert {p.name for p in sig.params.params} == {"min_confidence", "max_pixels", "n_jobs"}
    example = json.loads((pdir / "input_example.json").read_text())
    out = model.predict(pd.DataFrame(example["data"], columns=example["columns"]))
    assert out["status"].tolist() == ["ok"] and out["path"].tolist() == ["example.png"]


def test_pyfunc_equals_offline_predict_for_paths_bytes_and_base64(trained):
    pipe, model_dir, pdir, paths = trained
    model = load_pyfunc(pdir)
    offline = WBCPipeline.load(model_dir).predict_paths(paths)
    by_path = model.predict(pd.DataFrame({"path": paths}))
    pd.testing.assert_frame_equal(by_path, offline)
    raw = model.predict(pd.DataFrame({"path": paths, "image": [Path(p).read_bytes() for p in paths]}))
    pd.testing.assert_frame_equal(raw, offline)
    b64 = model.predict(pd.DataFrame({"image": [_b64(p) for p in paths]}))
    pd.testing.assert_frame_equal(b64.drop(columns="path"), offline.drop(columns="path"))
    assert b64["path"].tolist() == [f"image[{i}]" for i in range(len(paths))]
    data_url = "data:image/png;base64," + _b64(paths[0])
    assert model.predict(pd.DataFrame({"image": [data_url]}))["label"].iloc[0] == offline["label"].iloc[0]


def test_abstention_through_pyfunc_and_cli(trained, tmp_path):
    pipe, model_dir, pdir, paths = trained
    model = load_pyfunc(pdir)
    full = model.predict(pd.DataFrame({"path": paths}))
    cut = float(full["confidence"].max())  # rows below the most confident one abstain
    out = model.predict(pd.DataFrame({"path": paths}), params={"min_confidence": cut})
    low = full["confidence"] < cut
    assert low.any() and (out.loc[low, "label"] == "uncertain").all()
    assert (out.loc[~low, "label"] == full.loc[~low, "label"]).all()
    pd.testing.assert_frame_equal(out[PCOLS], full[PCOLS])  # probabilities still reported
    assert (out["status"] == "ok").all()
    csv = tmp_path / "o.csv"
    assert predict_main([f"model={pdir}", f"input={paths[0]}", f"output={csv}", "min_confidence=1.0"]) == 0
    row = pd.read_csv(csv, keep_default_na=False).iloc[0]
    assert row["label"] in ("uncertain", "eosinophil", "lymphocyte") and row["status"] == "ok"
    with pytest.raises(Exception, match=r"min_confidence must be a number in \[0, 1\]"):
        model.predict(pd.DataFrame({"path": paths[:1]}), params={"min_confidence": 1.5})
    with pytest.raises(ConfigError, match="max_pixels must be a positive integer"):
        predict_frame(pipe, pd.DataFrame({"path": paths[:1]}), max_pixels=0)


def test_predict_cli_pipeline_dir_and_pyfunc_dir_agree(trained, tmp_path):
    _, model_dir, pdir, paths = trained
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    folder = str(Path(paths[0]).parent.parent)
    assert predict_main([f"model={model_dir}", f"input={folder}", f"output={a}"]) == 0
    assert predict_main([f"model={pdir}", f"input={folder}", f"output={b}"]) == 0
    assert a.read_bytes() == b.read_bytes()


def test_pyfunc_folder_is_loaded_only_if_its_hashes_match(trained, tmp_path, capsys):
    _, _, pdir, paths = trained
    bad = tmp_path / "copy"
    shutil.copytree(pdir, bad)
    verify_pyfunc_dir(bad)
    (bad / "pyfunc_entry.py").write_text((bad / "pyfunc_entry.py").read_text() + "\nraise SystemExit('pwned')\n")
    with pytest.raises(ModelLoadError, match="does not match the SHA-256"):
        load_pyfunc(bad)
    assert predict_main([f"model={bad}", f"input={paths[0]}", f"output={tmp_path}/o.csv"]) == 1
    assert "does not match the SHA-256" in capsys.readouterr().err
    shutil.rmtree(bad)
    shutil.copytree(pdir, bad)
    with open(bad / "artifacts" / "pipeline" / "pipeline.joblib", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ModelLoadError, match="does not match the SHA-256"):
        load_pyfunc(bad)
    (bad / "artifacts" / "pipeline" / "pipeline.joblib").unlink()
    with pytest.raises(ModelLoadError, match="is missing. Re-save"):
        verify_pyfunc_dir(bad)
    (bad / FILES).write_text("{oops")
    with pytest.raises(ModelLoadError, match="not a valid hybridwbc file list"):
        verify_pyfunc_dir(bad)
    (bad / FILES).unlink()
    with pytest.raises(ModelLoadError, match="No hybridwbc-files.json"):
        load_pyfunc(bad)
    with pytest.raises(ModelLoadError, match="No MLmodel file"):
        load_pyfunc(tmp_path)
    with pytest.raises(ModelLoadError, match="already exists"):
        save_pyfunc(trained[0], pdir)


def test_bad_requests_are_one_clear_message(trained):
    pipe, _, pdir, _ = trained
    with pytest.raises(ConfigError, match="expected a 'path' column"):
        predict_frame(pipe, pd.DataFrame({"file": ["x.png"]}))
    with pytest.raises(ValueError, match="must hold bytes or a base64 string; received int"):
        decode_image(3)
    out = predict_frame(pipe, pd.DataFrame({"path": [None, "x"], "image": [None, "%%%"]}))
    assert out["status"].tolist() == ["error", "error"]
    assert "neither a path nor an image" in out["error"][0] and "not valid base64" in out["error"][1]
    assert predict_frame(pipe, pd.DataFrame({"image": pd.Series([], dtype=object)})).empty


def test_log_register_and_predict_from_the_registry(trained, tmp_path, monkeypatch, capsys):
    import mlflow

    pipe, model_dir, _, paths = trained
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("serving", artifact_location=(tmp_path / "art").as_uri())
    with pytest.raises(ConfigError, match="needs an active MLflow run"):
        log_pyfunc(pipe)
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.set_tag("experiment", "wbc5")
        info = log_pyfunc(pipe)
        mlflow.log_artifacts(str(model_dir), "model")
    with mlflow.start_run(experiment_id=exp) as old:  # a run from before pyfunc models were logged
        mlflow.set_tag("experiment", "wbc5")
        mlflow.log_artifacts(str(model_dir), "model")
    with mlflow.start_run(experiment_id=exp) as empty:
        pass
    out = register(run.info.run_id, uri)
    assert out == {"name": "hybridwbc-wbc5", "version": 1, "source": info.model_uri, "built": False}
    client = mlflow.MlflowClient(uri)
    client.set_terminated(old.info.run_id, status="KILLED")  # stopped after it saved its model
    out2 = register(old.info.run_id, uri, name="wbc5-old")
    assert out2["built"] and out2["version"] == 1
    assert client.get_run(old.info.run_id).info.status == "KILLED"  # re-opened to log the model, status kept
    with pytest.raises(ModelLoadError, match="no pyfunc model 'pyfunc' and no model/ artifact"):
        register(empty.info.run_id, uri)
    with pytest.raises(ModelLoadError, match="No MLflow run 'nope'"):
        register("nope", uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    csv = tmp_path / "reg.csv"
    assert predict_main(["model=models:/hybridwbc-wbc5/1", f"input={paths[0]}", f"output={csv}"]) == 0
    ref = WBCPipeline.load(model_dir).predict_paths(paths[:1])
    assert pd.read_csv(csv)["label"].tolist() == ref["label"].tolist()
    assert predict_main(["model=models:/nothing/9", f"input={paths[0]}", f"output={csv}"]) == 1
    assert "Cannot download model 'models:/nothing/9'" in capsys.readouterr().err
    from hybridwbc.serve.pyfunc import main as serving_main

    assert serving_main(["register", "--run", "nope", "--tracking-uri", uri]) == 1
    assert serving_main(["save", "--model", str(model_dir), "--out", str(tmp_path / "saved")]) == 0
    verify_pyfunc_dir(tmp_path / "saved")


# --- the REST server ---------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, payload: dict, timeout: float = 30.0) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class Server:
    """``mlflow models serve`` on loopback, started with bounded waits and always killed."""

    def __init__(self, model: Path, log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                   MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT="60")
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", str(model), "--env-manager",
             "local", "-h", "127.0.0.1", "-p", str(self.port), "-w", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {Path(self.log.name).read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"server not ready after {timeout} s: {Path(self.log.name).read_text()[-2000:]}")

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


def test_rest_server_on_loopback_matches_offline_predict(make_bad_files, trained, tmp_path):
    _, model_dir, pdir, paths = trained
    bad = make_bad_files(tmp_path / "bad")
    offline = WBCPipeline.load(model_dir).predict_paths(paths)
    server = Server(pdir, tmp_path / "server.log")
    try:
        server.wait_ready()
        rows = [[p, _b64(p)] for p in paths]
        code, body = _post(server.url + "/invocations", {"dataframe_split": {"columns": ["path", "image"],
                                                                             "data": rows}})
        assert code == 200, body
        got = pd.DataFrame(body["predictions"])
        assert got["path"].tolist() == paths and got["label"].tolist() == offline["label"].tolist()
        np.testing.assert_allclose(got[PCOLS].to_numpy(float), offline[PCOLS].to_numpy(float), rtol=0, atol=1e-12)
        assert got["status"].tolist() == offline["status"].tolist()
        # records orientation, abstention as a request param
        code, body = _post(server.url + "/invocations", {"dataframe_records": [{"image": _b64(paths[0])}],
                                                         "params": {"min_confidence": 1.0}})
        assert code == 200 and body["predictions"][0]["label"] in ("uncertain", offline["label"][0])
        # every bad input: encoded bytes and server-side paths give per-row errors, the good rows survive
        names = sorted(bad)
        data = [[n, base64.b64encode(bad[n].read_bytes()).decode() if bad[n].is_file() else None] for n in names]
        data += [[os.fsdecode(p), None] for p in BAD_PATHS(tmp_path / "bad")] + [[paths[0], None]]
        code, body = _post(server.url + "/invocations", {"dataframe_split": {"columns": ["path", "image"],
                                                                             "data": data},
                                                         "params": {"max_pixels": 50_000_000}})
        assert code == 200, body
        got = pd.DataFrame(body["predictions"])
        assert len(got) == len(data)
        status = dict(zip(got["path"], got["status"]))
        for n in names:
            assert status[n] == EXPECTED[n], (n, got.loc[got["path"] == n, "error"].tolist())
        assert status[paths[0]] == "ok"
        loops = got[got["path"].str.endswith("loop.png")]
        assert len(loops) == 2 and (loops["status"] == "error").all()
        assert loops["error"].str.contains("symlink loop").all()
        assert "it is a folder" in got.loc[got["path"].str.endswith("loopdir"), "error"].iloc[0]
        # a non-UTF-8 file name cannot travel in JSON text: the server's parser refuses the request in one
        # message; sent as bytes (any valid name in `path`) the image is predicted
        weird = os.path.join(os.fsencode(tmp_path / "bad"), b"caf\xe9.png")
        code, body = _post(server.url + "/invocations", {"dataframe_split": {
            "columns": ["path"], "data": [[os.fsdecode(weird)]]}})
        assert code == 400 and "surrogates not allowed" in body["message"]
        with open(weird, "rb") as fh:
            code, body = _post(server.url + "/invocations", {"dataframe_records": [
                {"path": "caf\\xe9.png", "image": base64.b64encode(fh.read()).decode()}]})
        assert code == 200 and body["predictions"][0]["status"] == "ok"
        # a malformed request is one clear 400, and the server keeps serving
        code, body = _post(server.url + "/invocations", {"dataframe_split": {"columns": ["file"], "data": [["x"]]}})
        assert code == 400 and "expected a 'path' column" in body.get("message", "")
        code, body = _post(server.url + "/invocations", {"dataframe_records": [{"path": paths[1]}]})
        assert code == 200 and body["predictions"][0]["label"] == offline["label"][1]
    finally:
        server.stop()
    assert server.proc.poll() is not None


def BAD_PATHS(folder: Path) -> list:
    """Server-side paths: the symlink loop, the folder loop and a folder made by ``make_bad_files``."""
    return [folder / "loop.png", folder / "loopdir" / "loop.png", folder / "loopdir"]


#: status each bad input gets (``make_bad_files``), by name
EXPECTED = {"corrupt.jpg": "error", "truncated.bmp": "error", "zero.jpg": "error", "text.jpg": "error",
            "gray.png": "ok", "rgba.png": "ok", "sixteen.png": "ok", "one.png": "error", "bomb.png": "error"}
