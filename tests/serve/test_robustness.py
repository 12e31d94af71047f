"""Bad input through predict and training data loading, interrupted feature extraction, deterministic predict.

(The same bad inputs through the REST server:
``serve/test_serving.py::test_rest_server_on_loopback_matches_offline_predict``.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from hybridwbc.data.manifest import scan
from hybridwbc.errors import DataLayoutError
from hybridwbc.features.simple import ColourShapeFeaturizer
from hybridwbc.features.table import featurize_manifest, featurize_paths
from hybridwbc.serve.pipeline import WBCPipeline
from hybridwbc.serve.predict import main as predict_main


def _cell(seed: int = 0, label: str = "lymphocyte", size: int = 64) -> np.ndarray:
    from hybridwbc.data.synthetic import PROFILES, draw_cell

    return draw_cell(np.random.default_rng(seed), PROFILES[label], size=size).image


#: what each bad file gives: status, and a piece of the reason
EXPECTED = {
    "corrupt.jpg": ("error", "not a decodable"),
    "truncated.bmp": ("error", "not a decodable"),
    "zero.jpg": ("error", "empty (0 bytes)"),
    "text.jpg": ("error", "not a decodable"),
    "bomb.png": ("error", "exceeds the limit of 64000000"),
    "one.png": ("error", "smaller than 8 pixels"),
    "gray.png": ("ok", ""),
    "rgba.png": ("ok", ""),
    "sixteen.png": ("ok", ""),
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    f = ColourShapeFeaturizer()
    X, y = [], []
    for i in range(16):
        for label in ("lymphocyte", "eosinophil"):
            X.append(f.featurize(_cell(100 + i, label)))
            y.append(label)
    est = RandomForestClassifier(n_estimators=20, random_state=0).fit(np.array(X), y)
    return WBCPipeline(f, est).save(root / "model")


def test_every_bad_input_through_predict_is_a_row_and_good_rows_survive(make_bad_files, save_png, model_dir, tmp_path,
                                                                         capsys):
    bad = tmp_path / "in"
    make_bad_files(bad)
    save_png(bad / "good.png", _cell(7))
    out = tmp_path / "out.csv"
    assert predict_main([f"model={model_dir}", f"input={bad}", f"output={out}"]) == 0
    df = pd.read_csv(out, keep_default_na=False)
    by_name = {Path(p).name: r for p, r in zip(df["path"], df.to_dict("records"))}
    for name, (status, reason) in EXPECTED.items():
        assert by_name[name]["status"] == status, (name, by_name[name]["error"])
        assert reason in by_name[name]["error"], (name, by_name[name]["error"])
    assert by_name["good.png"]["status"] == "ok"
    assert by_name["loop.png"]["status"] == "error" and "symlink loop" in by_name["loop.png"]["error"]
    # the non-UTF-8 name is predicted; the CSV stays valid UTF-8 with the byte escaped
    assert by_name["caf\\xe9.png"]["status"] == "ok"
    out.read_bytes().decode("utf-8")
    # the folder symlink loop is not followed forever, and is reported as one error row (never dropped silently)
    assert by_name["loopdir"]["status"] == "error" and "symlink loop" in by_name["loopdir"]["error"]
    assert len(df) == len(EXPECTED) + 4
    assert "error" in capsys.readouterr().out


def test_pixel_bound_is_configurable_from_predict(save_png, model_dir, tmp_path, capsys):
    p = save_png(tmp_path / "in" / "a.png", _cell(1))
    out = tmp_path / "o.csv"
    assert predict_main([f"model={model_dir}", f"input={p}", f"output={out}", "max_pixels=1000"]) == 0
    row = pd.read_csv(out, keep_default_na=False).iloc[0]
    assert row["status"] == "error" and "exceeds the limit of 1000" in row["error"]
    assert predict_main([f"model={model_dir}", f"input={p}", f"output={out}", "max_pixels=lots"]) == 1
    assert "max_pixels must be a positive integer" in capsys.readouterr().err
    assert predict_main([f"model={model_dir}", f"input={p}", f"output={out}", "min_confidence=2"]) == 1
    assert "min_confidence must be a number in [0, 1]" in capsys.readouterr().err


def test_whole_input_problems_are_one_line(model_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "only_text").mkdir()
    (tmp_path / "only_text" / "notes.txt").write_text("x")
    for spec in (tmp_path / "empty", tmp_path / "only_text"):
        assert predict_main([f"model={model_dir}", f"input={spec}", f"output={tmp_path}/o.csv"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("hybridwbc: error:") and "holds no image files" in err and err.count("\n") == 1
    (tmp_path / "nopath.csv").write_text("file\nx.png\n")
    assert predict_main([f"model={model_dir}", f"input={tmp_path}/nopath.csv", f"output={tmp_path}/o.csv"]) == 1
    assert "has no 'path' column" in capsys.readouterr().err
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00garbage\x00")
    assert predict_main([f"model={model_dir}", f"input={tmp_path}/binary.csv", f"output={tmp_path}/o.csv"]) == 1
    assert "hybridwbc: error:" in capsys.readouterr().err


def test_csv_manifest_path_outside_its_folder_is_an_error_row(save_png, model_dir, tmp_path):
    root = tmp_path / "root"
    save_png(root / "in.png", _cell(2))
    save_png(tmp_path / "outside.png", _cell(2))
    (root / "list.csv").write_text("path\nin.png\n../outside.png\n" + f"{tmp_path / 'outside.png'}\nmissing.png\n")
    out = tmp_path / "o.csv"
    assert predict_main([f"model={model_dir}", f"input={root / 'list.csv'}", f"output={out}"]) == 0
    df = pd.read_csv(out, keep_default_na=False)
    assert df["status"].tolist() == ["ok", "error", "error", "error"]
    assert df["error"].str.contains("outside the manifest's folder").tolist() == [False, True, True, False]
    assert "no such file" in df["error"][3]


def test_bad_training_data_is_skipped_counted_and_listed(make_bad_files, save_png, tmp_path, folder_dataset):
    """Training data loading: the same bad files inside class folders, and a CSV manifest escaping its folder."""
    make_bad_files(folder_dataset / "lymphocyte", loops=False, weird_name=False)
    os.symlink(".", folder_dataset / "lymphocyte" / "loopdir")
    s = scan(folder_dataset, "folders")
    table = featurize_manifest(ColourShapeFeaturizer(), s.manifest, progress=False)
    reasons = dict(zip(table.skipped["path"].map(lambda p: Path(p).name), table.skipped["reason"]))
    for name, (status, reason) in EXPECTED.items():
        if status == "error":
            assert reason in reasons[name], name
        else:
            assert name not in reasons
    kept = s.manifest.iloc[table.index]
    assert len(kept) == 24 + 3  # 24 good cells, and the gray, RGBA and 16-bit ones
    assert any("symlink loop" in r for r in s.rejected["reason"])
    csv = tmp_path / "m" / "manifest.csv"
    save_png(csv.parent / "a.png", _cell(1))
    save_png(csv.parent / "b.png", _cell(2))
    csv.write_text("path,label\na.png,x\nb.png,y\n../../etc/passwd.png,y\n")
    s = scan(csv, "csv")
    assert len(s.manifest) == 2 and s.rejected["reason"].str.contains("outside the manifest's folder").all()
    empty = tmp_path / "nothing"
    (empty / "a").mkdir(parents=True)
    with pytest.raises(DataLayoutError, match="No images found"):
        scan(empty, "folders")


def test_file_symlink_loop_in_training_data_is_reported(folder_dataset):
    os.symlink("loop.png", folder_dataset / "lymphocyte" / "loop.png")
    s = scan(folder_dataset, "folders")
    assert len(s.manifest) == 24 and s.rejected["path"].str.endswith("loop.png").any()


def test_non_utf8_file_name_in_training_data_is_reported(folder_dataset):
    with open(os.path.join(os.fsencode(folder_dataset / "lymphocyte"), b"caf\xe9.png"), "wb") as fh:
        fh.write((folder_dataset / "lymphocyte" / "lymphocyte_00.png").read_bytes())
    s = scan(folder_dataset, "folders")
    assert len(s.manifest) == 24 and s.rejected["reason"].str.contains("not valid UTF-8").sum() == 1


def test_predict_output_is_identical_across_runs(model_dir, tmp_path, folder_dataset):
    outs = []
    for k, jobs in enumerate((1, 1, 2)):
        out = tmp_path / f"p{k}.csv"
        assert predict_main([f"model={model_dir}", f"input={folder_dataset}", f"output={out}", f"n_jobs={jobs}"]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


# --- interrupted feature extraction --------------------------------------------------------------------

SCRIPT = textwrap.dedent("""
    import io, signal, sys
    import numpy as np
    # a child started from a non-interactive shell's background job inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: restore it, so the SIGINT case never hangs however pytest was launched
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from hybridwbc.features.simple import ColourShapeFeaturizer
    from hybridwbc.features.table import featurize_paths

    STOP = int(sys.argv[4]) if len(sys.argv) > 4 else -1
    _save, saved = np.save, []

    def gated_save(fh, arr, **kwargs):
        # the cache writes each vector with np.save into its temporary file: after STOP whole entries,
        # write half of the next one, say so, and wait for the test's signal (a known point, not a race)
        if len(saved) == STOP:
            buf = io.BytesIO()
            _save(buf, arr, **kwargs)
            fh.write(buf.getvalue()[:40])
            fh.flush()
            print("stopped", flush=True)
            sys.stdin.readline()
            raise SystemExit("stdin closed before the signal came")
        saved.append(1)
        return _save(fh, arr, **kwargs)

    np.save = gated_save
    paths = open(sys.argv[1]).read().split("\\n")
    t = featurize_paths(ColourShapeFeaturizer(), paths, cache_dir=sys.argv[2], n_jobs=1, progress=False)
    np.savez(sys.argv[3], X=t.X, index=t.index, n_cached=t.n_cached, skipped=len(t.skipped))
""")


def _entries(cache: Path) -> list[Path]:
    """Cache entries: ``<hash>.npy`` files, not the ``.tmp-*.npy`` files being written."""
    return [p for p in cache.rglob("*.npy") if not p.name.startswith(".tmp-")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_extraction_resumes_from_the_cache(project_root, save_png, tmp_path, sig, child_process):
    """The child stops inside the write of its 13th entry and waits there; only then is it signalled."""
    n, stop = 30, 12
    paths = []
    for i in range(n):
        paths.append(str(save_png(tmp_path / "img" / f"{i:02d}.png", _cell(i, ("lymphocyte", "eosinophil")[i % 2]))))
    (tmp_path / "paths.txt").write_text("\n".join(paths))
    (tmp_path / "run.py").write_text(SCRIPT)
    cache = tmp_path / "cache"
    cmd = [sys.executable, str(tmp_path / "run.py"), str(tmp_path / "paths.txt"), str(cache)]
    env = dict(os.environ, PYTHONPATH=str(project_root))
    proc = child_process(cmd + [str(tmp_path / "first.npz"), str(stop)], env=env)
    said = proc.stdout.readline()  # returns once the child is blocked mid-write (or has exited)
    if said != b"stopped\n":
        proc.wait()
        pytest.fail(f"the child did not reach its stop: {said!r} {proc.stderr.read().decode()[-2000:]}")
    n_before = len(_entries(cache))
    proc.send_signal(sig)
    proc.wait()
    err = proc.stderr.read().decode()
    assert n_before == stop
    assert proc.returncode != 0 and not (tmp_path / "first.npz").exists()  # the first run did not finish
    if sig == signal.SIGINT:
        assert "KeyboardInterrupt" in err
    entries = _entries(cache)
    assert len(entries) == stop
    for e in entries:  # every entry present after the kill is whole
        assert np.load(e).shape == (len(ColourShapeFeaturizer().feature_names()),)
    leftovers = list(cache.rglob(".tmp-*"))
    if sig == signal.SIGINT:  # a KeyboardInterrupt removes the temporary file it was writing
        assert leftovers == []
    else:  # SIGKILL leaves the half-written temporary file of the 13th entry
        assert [p.stat().st_size for p in leftovers] == [40]
    done = subprocess.run(cmd + [str(tmp_path / "second.npz")], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    second = np.load(tmp_path / "second.npz")
    assert int(second["n_cached"]) == stop and int(second["skipped"]) == 0
    np.testing.assert_array_equal(second["index"], np.arange(n))  # complete, in order, no duplicated rows
    assert len(_entries(cache)) == n  # one entry per image
    reference = featurize_paths(ColourShapeFeaturizer(), paths, cache_dir=None, progress=False)
    np.testing.assert_array_equal(second["X"], reference.X)  # identical to an uninterrupted run
    assert list(cache.rglob(".tmp-*")) == []  # the rerun swept the killed writer's temporary file


class _FlakyFeaturizer(ColourShapeFeaturizer):
    """Raises an unexpected error on images whose top-left pixel is pure black."""

    def featurize(self, image):
        if image[0, 0].sum() == 0:
            raise RuntimeError("boom")
        return super().featurize(image)


class _FlakyEstimator(RandomForestClassifier):
    """Fails on any batch holding a row whose first feature is above a threshold."""

    def predict_proba(self, X):
        if np.any(np.asarray(X)[:, 0] > self.limit_):
            raise FloatingPointError("estimator blew up")
        return super().predict_proba(X)


def test_featurizer_or_estimator_failure_costs_only_its_row(save_png, tmp_path):
    f = _FlakyFeaturizer()
    cells = [_cell(i, ("lymphocyte", "eosinophil")[i % 2]) for i in range(12)]
    X = np.array([ColourShapeFeaturizer().featurize(c) for c in cells])
    est = _FlakyEstimator(n_estimators=10, random_state=0).fit(X, ["lymphocyte", "eosinophil"] * 6)
    est.limit_ = float(np.sort(X[:, 0])[-2]) - 1e-9  # the two largest first features make a batch fail
    black = cells[0].copy()
    black[0, 0] = 0
    paths = [str(save_png(tmp_path / f"{i}.png", c)) for i, c in enumerate(cells)]
    paths.append(str(save_png(tmp_path / "black.png", black)))
    df = WBCPipeline(f, est).predict_paths(paths)
    assert len(df) == 13
    assert df["status"].iloc[-1] == "error" and \
        "RuntimeError: featurizing this image failed (boom)" in df["error"].iloc[-1]
    failed = df["error"].str.contains("FloatingPointError: the classifier failed on this image")
    assert failed.sum() == 2 and (df.loc[failed, "status"] == "error").all()
    assert (df["status"] == "ok").sum() == 10 and df.loc[df["status"] == "ok", "label"].ne("").all()


def test_abstention_refuses_a_class_named_uncertain(save_png, tmp_path):
    from hybridwbc.errors import ConfigError

    f = ColourShapeFeaturizer()
    X = np.array([f.featurize(_cell(i)) for i in range(6)])
    est = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, ["uncertain", "sure"] * 3)
    p = str(save_png(tmp_path / "a.png", _cell(1)))
    assert WBCPipeline(f, est).predict_paths([p])["status"].tolist() == ["ok"]
    with pytest.raises(ConfigError, match="has a class named 'uncertain'"):
        WBCPipeline(f, est).predict_paths([p], min_confidence=0.5)
