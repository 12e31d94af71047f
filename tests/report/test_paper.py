"""``python -m hybridwbc.report``: methods paragraph, result tables (Markdown, LaTeX) and checklist from a store."""

import pytest

from hybridwbc.errors import DataLayoutError
from hybridwbc.report.paper import CHECKLIST, main, search_grids, write_report
from hybridwbc.run import run_experiment

SMALL = ["data.synthetic.n_per_class=12", "data.synthetic.size=64", "eval.n_bootstrap=20", "features.n_jobs=1",
         "eval.n_splits=3"]


@pytest.fixture
def comparison(compose, tmp_path, monkeypatch):
    """A tiny tracked comparison (two SVMs, no CNN) on the built-in synthetic data."""
    monkeypatch.delenv("HYBRIDWBC_DATA", raising=False)
    cfg, choices = compose("+experiment=granularity_eo_baso", *SMALL)
    out = run_experiment(cfg, tmp_path / "run", "granularity_eo_baso", choices)
    return f"sqlite:///{tmp_path}/mlflow.db", out


def test_report_of_a_comparison(comparison, tmp_path):
    uri, out = comparison
    md = write_report("granularity_eo_baso", uri, tmp_path / "reports", overrides=SMALL, allow_synthetic=True)
    text = md.read_text()
    methods = text.split("## Methods")[1].split("## Results")[0]
    assert "the built-in SYNTHETIC data set `pbc`" in methods and "96 images" in methods
    assert "3-fold cross-validation with images" in methods and "20 resamples of images" in methods
    assert "`granularity` (classifier `svm_granularity`" in methods and "clf__C in [1.0, 10.0, 100.0]" in methods
    assert "exact McNemar test" in methods and "scikit-learn 1." in methods and "mlflow 3." in methods
    results = text.split("## Results")[1].split("## Reporting checklist")[0]
    for res in out["methods"].values():
        assert res["run_id"] in results
    assert "McNemar, best" in results and str(tmp_path) not in text
    rows = [ln for ln in text.split("## Reporting checklist")[1].splitlines() if ln.startswith("| ")][1:]
    assert [r.split(" | ")[0][2:] for r in rows] == list(CHECKLIST)
    status = {r.split(" | ")[0][2:]: r.split(" | ")[1] for r in rows}
    assert status["data partitions"] == status["uncertainty (CIs)"] == status["calibration"] == "filled"
    assert status["external validation"] == status["ethics, consent, funding, intended use"] == "for the authors"
    assert status["reference standard (labels)"] == "partly"
    tex = md.with_name("tables.tex").read_text()
    assert tex.count("\\begin{table}") == tex.count("\\end{tabular}") >= 2 and "\\toprule" in tex
    best = out["methods"][out["methods"] and max(out["methods"], key=lambda n: out["methods"][n]["metrics"]
                                                  ["all_balanced_accuracy"])]["metrics"]
    assert f"{best['balanced_accuracy']:.3f} [{best['balanced_accuracy_ci_low']:.3f}" in tex
    assert "granularity\\_colour" in tex  # LaTeX-escaped


def test_report_of_one_run_by_id_from_the_command_line_and_its_errors(comparison, tmp_path, capsys):
    uri, out = comparison
    assert main(["--run", out["run_id"], "--uri", uri, "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "granularity_eo_baso" / "report.md").is_file()
    assert "wrote" in capsys.readouterr().out
    assert main(["--run", "0" * 32, "--uri", uri, "--out", str(tmp_path / "r")]) == 1
    assert "No run '000" in capsys.readouterr().err
    with pytest.raises(DataLayoutError, match="No finished MLflow run of experiment 'granularity_eo_baso'.*"
                                              "Or report any run by its id: python -m hybridwbc.report --run"):
        write_report("granularity_eo_baso", uri, tmp_path / "r")  # synthetic runs are not published by default
    with pytest.raises(SystemExit):
        main([])
    assert "name an experiment" in capsys.readouterr().err


def test_search_grids_are_found_at_any_depth():
    node = {"estimator": {"param_grid": {"C": [1, 10]}, "estimator": {"steps": [{"param_grid": {"k": [3]}}]}}}
    assert search_grids(node) == [("estimator", {"C": [1, 10]}), ("estimator.estimator.steps[0]", {"k": [3]})]
