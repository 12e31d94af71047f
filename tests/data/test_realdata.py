"""Checks on the real development data in ../shared/data (skipped when it is absent)."""

import pytest

from hybridwbc.data.check import check_root, format_report
from hybridwbc.data.manifest import scan

pytestmark = pytest.mark.realdata


def test_every_shared_data_set_scans(real_data):
    report = check_root(real_data)
    assert {"pbc", "cnmc", "all_pbs", "bccd"} <= set(report)
    assert len(report["pbc"]["counts"]) == 8
    assert set(report["cnmc"]["counts"]) == {"all", "hem"} and report["cnmc"]["subjects"] >= 10
    assert set(report["all_pbs"]["counts"]) == {"Benign", "Early", "Pre", "Pro"}
    assert "skipped: 0" in format_report(report) or "skipped" in format_report(report)


def test_cnmc_subject_ids_match_labels(real_data):
    m = scan(real_data / "cnmc", "cnmc").manifest
    healthy = m["subject"].str.startswith("H")
    assert (m.loc[healthy, "label"] == "hem").all() and (m.loc[~healthy, "label"] == "all").all()


def test_all_hem_runs_on_real_cells(real_data, compose, tmp_path, monkeypatch):
    from hybridwbc.run import run_experiment

    monkeypatch.setenv("HYBRIDWBC_DATA", str(real_data))
    cfg, choices = compose("+experiment=all_hem", "eval.n_bootstrap=100", "tracking=disabled", "features.n_jobs=1")
    out = run_experiment(cfg, tmp_path / "run", "all_hem", choices)
    assert out["source"] == "real"
    assert out["metrics"]["n_images"] >= 50
    assert 0.0 <= out["metrics"]["roc_auc"] <= 1.0
