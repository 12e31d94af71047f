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
    sections: dict[str, list[str]] = {}
    for line in format_report(report).splitlines():
        if not line.startswith(" "):
            sections[line.split(" ", 1)[0]] = lines = []
        else:
            lines.append(line.strip())
    for name, r in report.items():
        assert "error" not in r, (name, r.get("error"))
        assert list(r["skipped"].columns) == ["path", "reason"]
        assert f"skipped: {len(r['skipped'])}" in sections[name], name  # the report counts what it lists
    # the development files are all well-formed images in their layouts: nothing is skipped
    assert {name: len(r["skipped"]) for name, r in report.items()} == dict.fromkeys(report, 0)


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
