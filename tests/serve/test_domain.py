"""Issue #10.2 and #10.3: out-of-domain cells get no confident label; nothing in an input folder is dropped silently."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from hybridwbc.data.manifest import scan
from hybridwbc.data.synthetic import generate_dataset
from hybridwbc.evaluate.protocol import fit_domain
from hybridwbc.features.simple import ColourShapeFeaturizer
from hybridwbc.features.table import featurize_paths
from hybridwbc.serve.pipeline import WBCPipeline
from hybridwbc.serve.predict import main as predict_main
from hybridwbc.serve.pyfunc import predict_frame


def _cells(root: Path, classes, background: str, seed: int, n: int = 12) -> tuple[list[str], np.ndarray]:
    m = pd.read_csv(generate_dataset(root, classes, n_per_class=n, size=64, background=background, seed=seed))
    return [str(root / p) for p in m["path"]], m["label"].to_numpy(dtype=object)


@pytest.fixture(scope="module")
def cnmc_like(tmp_path_factory):
    """An RBF SVM trained on black-background (C-NMC-like) cells, saved with and without its domain;
    fresh cells of the same kind; smear (PBC-like) cells it has never seen anything like."""
    root = tmp_path_factory.mktemp("domain")
    f = ColourShapeFeaturizer()
    paths, y = _cells(root / "train", ["all", "hem"], "black", seed=0, n=30)
    X = featurize_paths(f, paths, shas=[""] * len(paths), progress=False).X
    est = make_pipeline(StandardScaler(), CalibratedClassifierCV(SVC(), ensemble=False, cv=3)).fit(X, y)
    dom = fit_domain(est, X)
    same, _ = _cells(root / "same", ["all", "hem"], "black", seed=5, n=30)
    smear, _ = _cells(root / "smear", ["neutrophil", "lymphocyte"], "smear", seed=1)
    return {"with": WBCPipeline(f, est, domain=dom).save(root / "with" / "model"),
            "without": WBCPipeline(f, est).save(root / "without" / "model"), "same": same, "smear": smear,
            "root": root}


def test_out_of_domain_cells_are_flagged_with_their_probabilities(cnmc_like):
    pipe = WBCPipeline.load(cnmc_like["with"])
    df = pipe.predict_paths(cnmc_like["smear"])
    assert (df["status"] == "out_of_domain").all() and (df["label"] == "uncertain").all()
    assert df["error"].str.contains("outside the model's training domain").all()
    p = df[["p_all", "p_hem"]].to_numpy()
    assert np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1.0)
    same = pipe.predict_paths(cnmc_like["same"])
    assert (same["status"] == "ok").mean() >= 0.9 and (same.loc[same["status"] == "ok", "label"] != "uncertain").all()
    # without a domain the same model answers the smear cells with status ok: what the check prevents
    assert (WBCPipeline.load(cnmc_like["without"]).predict_paths(cnmc_like["smear"])["status"] == "ok").all()


def test_domain_is_saved_hash_listed_and_described(cnmc_like):
    meta = json.loads((cnmc_like["with"] / "model.json").read_text())
    assert meta["domain"]["quantile"] == 0.99 and meta["domain"]["n_train"] == 60 and meta["domain"]["threshold"] > 0
    assert json.loads((cnmc_like["without"] / "model.json").read_text())["domain"] is None


def test_predict_and_pyfunc_count_out_of_domain_rows(cnmc_like, tmp_path, capsys):
    folder = cnmc_like["root"] / "smear"
    out = tmp_path / "p.csv"
    assert predict_main([f"model={cnmc_like['with']}", f"input={folder}", f"output={out}"]) == 0
    n = len(cnmc_like["smear"])
    assert f"predicted 0 of {n} images" in capsys.readouterr().out.replace("\n", " ")
    df = pd.read_csv(out, keep_default_na=False)
    assert (df["status"] == "out_of_domain").sum() == n
    assert predict_main([f"model={cnmc_like['with']}", f"input={folder}", f"output={out}"]) == 0
    assert f"{n} outside the model's training domain (status out_of_domain" in capsys.readouterr().out
    frame = predict_frame(WBCPipeline.load(cnmc_like["with"]), pd.DataFrame({"path": cnmc_like["smear"][:3]}))
    assert (frame["status"] == "out_of_domain").all() and (frame["label"] == "uncertain").all()


def _unreadable(monkeypatch, folder: Path) -> None:
    """Make listing ``folder`` fail with PermissionError (tests run as root, where chmod 000 does not)."""
    real = os.scandir

    def scandir(path="."):
        if isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(path) == str(folder):
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_symlink_loops_and_unreadable_folders_in_predict_input_are_error_rows(cnmc_like, save_png, tmp_path,
                                                                               monkeypatch, capsys):
    folder = tmp_path / "in"
    save_png(folder / "good.png", _img())
    (folder / "locked").mkdir()
    save_png(folder / "locked" / "hidden.png", _img())
    os.symlink(".", folder / "loopdir")
    os.symlink("loop", folder / "loop")  # a looping link without an image suffix
    _unreadable(monkeypatch, folder / "locked")
    out = tmp_path / "p.csv"
    assert predict_main([f"model={cnmc_like['without']}", f"input={folder}", f"output={out}"]) == 0
    df = pd.read_csv(out, keep_default_na=False)
    by = {Path(p).name: r for p, r in zip(df["path"], df.to_dict("records"))}
    assert set(by) == {"good.png", "locked", "loopdir", "loop"}
    assert by["good.png"]["status"] == "ok"
    assert by["locked"]["status"] == "error" and "unreadable folder (PermissionError" in by["locked"]["error"]
    assert by["loopdir"]["status"] == "error" and "symlink loop" in by["loopdir"]["error"]
    assert by["loop"]["status"] == "error" and "symlink loop" in by["loop"]["error"]
    assert "3 errors" in capsys.readouterr().out


def test_unreadable_folder_in_training_data_is_rejected_by_the_scan(folder_dataset, save_png, monkeypatch):
    locked = folder_dataset / "lymphocyte" / "locked"
    save_png(locked / "x.png", _img())
    _unreadable(monkeypatch, locked)
    s = scan(folder_dataset, "folders")
    assert len(s.manifest) == 24
    rows = s.rejected[s.rejected["path"] == str(locked)]
    assert len(rows) == 1 and "unreadable folder (PermissionError" in rows["reason"].iloc[0]


def _img() -> np.ndarray:
    from hybridwbc.data.synthetic import PROFILES, draw_cell

    return draw_cell(np.random.default_rng(9), PROFILES["lymphocyte"], size=64, background="black").image
