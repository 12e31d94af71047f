"""``python -m hybridwbc.analyze`` and ``hybridwbc.verify`` end to end on synthetic slides with known answers."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from hybridwbc.data.manifest import scan
from hybridwbc.data.slides import generate_slides
from hybridwbc.data.synthetic import generate_dataset
from hybridwbc.errors import ConfigError, DataLayoutError
from hybridwbc.evaluate.detection import match_boxes
from hybridwbc.features.simple import ColourShapeFeaturizer
from hybridwbc.features.table import featurize_manifest
from hybridwbc.serve.analyze import analyze, collect_fields, main, parse_args
from hybridwbc.serve.pipeline import WBCPipeline
from hybridwbc.serve.verify import main as verify_main
from hybridwbc.serve.verify import verify

CLASSES = ["eosinophil", "lymphocyte"]
# two slides; per field the white cells, the first one cut by the border (flagged, not counted); red cells and
# platelets around them. Touching cells are tested in tests/segment/test_locate.py.
SLIDES = {
    "S1": [["lymphocyte", "eosinophil", "lymphocyte", "lymphocyte"], ["eosinophil", "lymphocyte", "eosinophil"]],
    "S2": [["eosinophil", "eosinophil", "lymphocyte", "lymphocyte"], ["lymphocyte", "lymphocyte", "eosinophil"]],
}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze")
    generate_dataset(root / "cells", CLASSES, n_per_class=40, size=96)
    m = scan(root / "cells", "folders").manifest
    f = ColourShapeFeaturizer()
    t = featurize_manifest(f, m, progress=False)
    est = RandomForestClassifier(n_estimators=60, random_state=0).fit(t.X, m["label"].iloc[t.index])
    model = WBCPipeline(f, est).save(root / "model")
    truth = pd.read_csv(generate_slides(root / "slides", SLIDES, seed=1, shape=(240, 320), cell_size=96, n_red=20,
                                        n_border=1))
    (root / "slides" / "S2" / "broken.jpg").write_bytes(b"not an image")
    out = root / "out"
    args = [f"model={model}", f"input={root / 'slides'}", f"output={out}", "crop=96", "window=96", "n_jobs=1",
            "min_count=5", f"tracking=sqlite:///{root / 'mlflow.db'}"]
    assert main(args) == 0
    return {"root": root, "model": model, "truth": truth, "out": out}


def _read(path):
    return pd.read_csv(path, keep_default_na=False)


def test_every_white_cell_is_found_once_with_its_flags(analysed):
    cells, truth = _read(analysed["out"] / "cells.csv"), analysed["truth"]
    inside = truth[~truth["border"]]
    matched = 0
    for (slide, field), ref in inside.groupby(["slide", "field"]):
        det = cells[(cells["sample"] == slide) & (cells["field"] == f"{field}.png") & ~cells["border"]]
        pairs = match_boxes(det[["col0", "row0", "col1", "row1"]].to_numpy().tolist(),
                            ref[["col0", "row0", "col1", "row1"]].to_numpy().tolist())
        matched += len(pairs)
        for i, j in pairs:
            assert det.iloc[i]["border"] == ref.iloc[j]["border"]
            assert det.iloc[i]["overlap"] == ref.iloc[j]["touching"]
    # every cell inside the field is found once, and nothing else: no red cell or platelet is taken for one
    assert matched == len(inside) == int((~cells["border"]).sum())
    assert 1 <= int(cells["border"].sum()) <= int(truth["border"].sum())


def test_counts_match_the_slides_by_construction(analysed):
    samples = _read(analysed["out"] / "samples.csv").set_index("sample")
    truth = analysed["truth"]
    for slide in SLIDES:
        counted = truth[(truth["slide"] == slide) & ~truth["border"]]
        assert samples.loc[slide, "n_counted"] == len(counted)
        for c in CLASSES:
            k = int((counted["label"] == c).sum())
            assert samples.loc[slide, f"n_{c}"] == k
            assert samples.loc[slide, f"pct_{c}"] == pytest.approx(100 * k / len(counted))
            low, pct, high = (samples.loc[slide, f"{k}_{c}"] for k in ("ci_low", "pct", "ci_high"))
            assert low <= pct <= high
        assert samples.loc[slide, "flags"] == ""  # 5 counted cells >= min_count=5, nothing uncertain
    fields = _read(analysed["out"] / "fields.csv")
    for _, f in fields.iterrows():
        inside = truth[(truth["path"] == f"{f['sample']}/{f['field']}") & ~truth["border"]]
        assert f["n_counted"] == len(inside) and f["n_lymphocyte"] == (inside["label"] == "lymphocyte").sum()
    bad = fields[fields["field"] == "broken.jpg"]
    assert bad["status"].tolist() == ["error"] and "ImageReadError" in bad["reason"].iloc[0]
    assert samples.loc["S2", "n_error_fields"] == 1


def test_geojson_is_a_qupath_feature_collection(analysed):
    cells = _read(analysed["out"] / "cells.csv")
    gj = json.loads((analysed["out"] / "geojson" / "S1" / "field_000.geojson").read_text())
    assert gj["type"] == "FeatureCollection"
    mine = cells[(cells["sample"] == "S1") & (cells["field"] == "field_000.png")]
    assert [f["id"] for f in gj["features"]] == mine["cell_id"].tolist()
    for feat, (_, row) in zip(gj["features"], mine.iterrows()):
        ring = feat["geometry"]["coordinates"][0]
        assert feat["properties"]["objectType"] == "cell" and ring[0] == ring[-1]
        assert feat["properties"]["classification"]["name"] == row["label"]
        xs, ys = [p[0] for p in ring], [p[1] for p in ring]
        assert row["col0"] <= min(xs) and max(xs) <= row["col1"] and row["row0"] <= min(ys) and max(ys) <= row["row1"]
        assert feat["nucleusGeometry"]["type"] == "Polygon"


def test_the_analysis_is_an_mlflow_run(analysed):
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{analysed['root'] / 'mlflow.db'}")
    exp = client.get_experiment_by_name("analyze")
    (run,) = client.search_runs([exp.experiment_id])
    cells = _read(analysed["out"] / "cells.csv")
    assert run.data.metrics["n_cells"] == len(cells)
    assert run.data.metrics["count.lymphocyte"] == int((cells["label"][~cells["border"]] == "lymphocyte").sum())
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"cells.csv", "samples.csv", "fields.csv", "report.html", "geojson"} <= names


def test_low_confidence_cells_are_uncertain_and_counted_apart(analysed, tmp_path):
    out = tmp_path / "strict"
    assert main([f"model={analysed['model']}", f"input={analysed['root'] / 'slides' / 'S1'}", f"output={out}",
                 "crop=96", "window=96", "n_jobs=1", "min_confidence=1",
                 "tracking=none"]) == 0
    cells = _read(out / "cells.csv")
    unsure = cells["confidence"] < 1
    assert unsure.any()
    assert (cells.loc[unsure, "label"] == "uncertain").all() and (cells.loc[unsure, "status"] == "uncertain").all()
    samples = _read(out / "samples.csv")
    assert samples["n_uncertain"].iloc[0] == int(unsure.sum())
    assert samples["n_counted"].iloc[0] == int((~unsure & ~cells["border"]).sum())
    assert "low_count" in samples["flags"].iloc[0]


def test_verify_applies_corrections_and_measures_agreement(analysed, tmp_path):
    cells = _read(analysed["out"] / "cells.csv")
    first = cells[~cells["border"]].iloc[0]
    other = [c for c in CLASSES if c != first["label"]][0]
    corr = tmp_path / "corrections.csv"
    pd.DataFrame({"cell_id": [first["cell_id"]], "verified": [other]}).to_csv(corr, index=False)
    res = verify(str(analysed["out"]), str(corr), output=str(tmp_path / "v"), min_count=5)
    assert res["n_corrected"] == 1
    samples = res["samples"].set_index("sample")
    before = _read(analysed["out"] / "samples.csv").set_index("sample")
    s = first["sample"]
    assert samples.loc[s, f"n_{other}"] == before.loc[s, f"n_{other}"] + 1
    assert samples.loc[s, f"n_{first['label']}"] == before.loc[s, f"n_{first['label']}"] - 1
    agree = res["agreement"].set_index("class")
    n = len(cells)
    assert agree.loc["all", "agreement"] == pytest.approx((n - 1) / n)
    assert 0 < agree.loc["all", "kappa"] < 1
    assert (tmp_path / "v" / "agreement.csv").is_file()
    # not_wbc removes a detection from the count
    pd.DataFrame({"cell_id": [first["cell_id"]], "verified": ["not_wbc"]}).to_csv(corr, index=False)
    assert verify_main([f"analysis={analysed['out']}", f"corrections={corr}", f"output={tmp_path / 'w'}",
                        "min_count=5"]) == 0
    w = _read(tmp_path / "w" / "verified_samples.csv").set_index("sample")
    assert w.loc[s, "n_counted"] == before.loc[s, "n_counted"] - 1


def test_verify_refuses_bad_corrections(analysed, tmp_path, capsys):
    corr = tmp_path / "c.csv"
    pd.DataFrame({"cell_id": ["S1/nothing.png#0"], "verified": ["lymphocyte"]}).to_csv(corr, index=False)
    with pytest.raises(ConfigError, match="name 1 cell"):
        verify(str(analysed["out"]), str(corr))
    cid = _read(analysed["out"] / "cells.csv")["cell_id"].iloc[0]
    pd.DataFrame({"cell_id": [cid], "verified": ["martian"]}).to_csv(corr, index=False)
    with pytest.raises(ConfigError, match="martian"):
        verify(str(analysed["out"]), str(corr))
    pd.DataFrame({"cell": [cid]}).to_csv(corr, index=False)
    with pytest.raises(DataLayoutError, match="lacks column"):
        verify(str(analysed["out"]), str(corr))
    with pytest.raises(DataLayoutError, match="No cells table"):
        verify(str(tmp_path), str(corr))
    (tmp_path / "cells.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataLayoutError, match="Cannot read cells table"):
        verify(str(tmp_path), str(corr))
    assert verify_main([f"analysis={tmp_path / 'none'}", f"corrections={corr}"]) == 1
    assert capsys.readouterr().err.startswith("hybridwbc: error: No cells table")


def test_verify_arguments():
    from hybridwbc.serve.verify import parse_args as vargs

    with pytest.raises(ConfigError, match="not key=value"):
        vargs(["oops"])
    with pytest.raises(ConfigError, match="Unknown argument 'x'"):
        vargs(["x=1"])
    with pytest.raises(ConfigError, match="Missing argument"):
        vargs(["analysis=a"])
    with pytest.raises(ConfigError, match="invalid literal"):
        vargs(["analysis=a", "corrections=b", "min_count=many"])
    assert vargs(["analysis=a", "corrections=b", "count_border=true"])["count_border"] is True


def test_analyze_arguments(tmp_path):
    base = ["model=m", "input=i", "output=o"]
    assert parse_args(base + ["window=cell", "crop=224", "count_border=true"])["count_border"] is True
    assert parse_args(base + ["window=200"])["window"] == 200
    missing = r"Missing argument\(s\) \['input', 'output'\]\. usage: python -m hybridwbc.analyze"
    for bad, message in ((["oops"], "not key=value"), (["model=m"], missing),
                         (base + ["colour=1"], "Unknown argument 'colour'"), (base + ["crop=0"], "crop must be"),
                         (base + ["crop=big"], "crop must be an integer; received 'big'"),
                         (base + ["cell_fraction=0"], "cell_fraction"),
                         (base + ["window=4"], "window must be 'cell'"),
                         (base + ["count_border=maybe"], "true or false"),
                         (base + ["uncertain_share=2"], "uncertain_share must be in"),
                         (base + ["min_nucleus_frac=0"], "min_nucleus_frac above 0")):
        with pytest.raises(ConfigError, match=message):
            parse_args(bad)


def test_samples_from_a_csv_and_missing_input(tmp_path, save_png, rng):
    img = np.full((32, 32, 3), 230, np.uint8)
    for name in ("a.png", "b.png"):
        save_png(tmp_path / "x" / name, img)
    (tmp_path / "list.csv").write_text("path,sample\nx/a.png,P1\nx/b.png,\n")
    paths, samples, refused = collect_fields(str(tmp_path / "list.csv"))
    assert samples == ["P1", "x"] and not refused
    assert collect_fields(str(tmp_path / "x"))[1] == ["x", "x"]
    with pytest.raises(DataLayoutError, match="matches no files"):
        collect_fields(str(tmp_path / "nothing*.png"))


def test_cli_error_is_one_line(tmp_path, capsys):
    assert main([f"model={tmp_path / 'none'}", f"input={tmp_path}", f"output={tmp_path / 'o'}"]) == 1
    assert capsys.readouterr().err.startswith("hybridwbc: error: ")


def test_review_page_in_a_browser_moves_a_cell_and_exports_corrections(analysed, browser, tmp_path):
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    cells = _read(analysed["out"] / "cells.csv")
    browser.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow",
                                                         "downloadPath": str(browser.download_dir)})
    browser.get((analysed["out"] / "report.html").as_uri())
    for c in CLASSES:
        shown = browser.find_elements(By.CSS_SELECTOR, f".gallery[data-label='{c}'] figure.cell")
        assert len(shown) == int((cells["label"] == c).sum())
    table = browser.find_element(By.CSS_SELECTOR, "table.differential").text
    assert "lymphocyte" in table and "95% CI (Wilson)" in table
    assert len(browser.find_elements(By.CSS_SELECTOR, ".field svg rect")) == len(cells)
    fig = browser.find_element(By.CSS_SELECTOR, ".gallery[data-label='lymphocyte'] figure.cell")
    cell_id = fig.get_attribute("data-id")
    Select(fig.find_element(By.TAG_NAME, "select")).select_by_value("eosinophil")
    moved = browser.find_element(By.CSS_SELECTOR, ".gallery[data-label='eosinophil'] figure.corrected")
    assert moved.get_attribute("data-id") == cell_id
    assert browser.find_element(By.ID, "n-corrected").text == "1"
    browser.save_screenshot(str(tmp_path / "review.png"))
    browser.find_element(By.ID, "download").click()
    target = browser.download_dir / "corrections.csv"
    for _ in range(100):
        if target.is_file() and target.stat().st_size:
            break
        time.sleep(0.1)
    corr = _read(target)
    assert list(corr.columns) == ["cell_id", "sample", "field", "predicted", "verified"] and len(corr) == len(cells)
    changed = corr[corr["predicted"] != corr["verified"]]
    assert changed["cell_id"].tolist() == [cell_id] and changed["verified"].tolist() == ["eosinophil"]
    res = verify(str(analysed["out"]), str(target), output=str(tmp_path / "verified"), min_count=5)
    assert res["n_corrected"] == 1


def test_a_pyfunc_model_gives_the_same_cells(analysed, tmp_path):
    from hybridwbc.serve.pyfunc import save_pyfunc

    pdir = save_pyfunc(WBCPipeline.load(analysed["model"]), tmp_path / "pyfunc")
    out = tmp_path / "via_pyfunc"
    assert main([f"model={pdir}", f"input={analysed['root'] / 'slides'}", f"output={out}", "crop=96", "window=96",
                 "n_jobs=1", "tracking=none"]) == 0
    a, b = _read(analysed["out"] / "cells.csv"), _read(out / "cells.csv")
    assert b["label"].tolist() == a["label"].tolist()
    np.testing.assert_allclose(b["p_lymphocyte"], a["p_lymphocyte"])
    from hybridwbc.serve.fields import classify_crops, encode
    from hybridwbc.serve.predict import load_model

    crop = encode(np.full((96, 96, 3), 200, np.uint8))
    with pytest.raises(ConfigError, match="min_confidence"):
        classify_crops(load_model(str(pdir)), [crop], ["c"], 1, min_confidence=2.0)


def test_cells_outside_the_training_domain_are_uncertain_with_the_reason(analysed, tmp_path):
    from hybridwbc.models.domain import ApplicabilityDomain

    pipe = WBCPipeline.load(analysed["model"])
    m = scan(analysed["root"] / "cells", "folders").manifest
    t = featurize_manifest(pipe.featurizer, m, progress=False)
    domain = ApplicabilityDomain().fit(t.X)
    domain.threshold_ = -1.0  # nothing is inside: every cell is a stranger
    model = WBCPipeline(pipe.featurizer, pipe.estimator, domain=domain).save(tmp_path / "strict_model")
    out = tmp_path / "ood"
    assert main([f"model={model}", f"input={analysed['root'] / 'slides' / 'S1'}", f"output={out}", "crop=96",
                 "window=96", "n_jobs=1", "tracking=none"]) == 0
    cells = _read(out / "cells.csv")
    assert (cells["status"] == "uncertain").all() and (cells["label"] == "uncertain").all()
    assert cells["reason"].str.contains("outside the model's training domain").all()
    assert cells["p_lymphocyte"].notna().all()
    samples = _read(out / "samples.csv")
    assert samples["n_counted"].iloc[0] == 0 and samples["n_uncertain"].iloc[0] == len(cells)
    assert "many_uncertain" in samples["flags"].iloc[0]


def test_explain_puts_each_answered_cell_s_heat_map_on_the_review_page(analysed, tmp_path):
    import base64
    import io
    import re

    from PIL import Image

    from hybridwbc.cnn.estimators import CNNClassifier

    m = scan(analysed["root"] / "cells", "folders").manifest
    tiny = dict(input_size=32, backbone_params={"depth": 2, "width": 8}, epochs=1, batch_size=16,
                validation_fraction=0, random_state=0, verbose=0)
    est = CNNClassifier(**tiny).fit(m["path"].to_numpy(dtype=object).reshape(-1, 1), m["label"].to_numpy(dtype=object))
    model = WBCPipeline(ColourShapeFeaturizer(), est, input_kind="paths").save(tmp_path / "cnn")
    out = tmp_path / "out"
    assert main([f"model={model}", f"input={analysed['root'] / 'slides' / 'S1'}", f"output={out}", "crop=96",
                 "window=96", "n_jobs=1", "tracking=none", "explain=true"]) == 0
    cells = _read(out / "cells.csv")
    page = (out / "report.html").read_text()
    heats = re.findall(r"<img class='heat' alt='heat map of [^']+' src='data:image/jpeg;base64,([^']+)'>", page)
    assert len(heats) == int((cells["status"] != "error").sum()) > 0
    assert Image.open(io.BytesIO(base64.b64decode(heats[0]))).size == (96, 96)
    with pytest.raises(ConfigError, match=r"explain=true needs a model with a CNN; .* has none"):
        analyze(str(analysed["model"]), str(analysed["root"] / "slides"), str(tmp_path / "x"), explain=True,
                tracking="none")
    assert not (tmp_path / "x" / "cells.csv").exists()  # refused before any field was read
