"""The closing summary of a run: headline with its interval, the run, its folder and the next commands."""

from hybridwbc.report.summary import UI_URL, format_final, headline

M = {"all_balanced_accuracy": 0.8123, "all_balanced_accuracy_ci_low": 0.7, "all_balanced_accuracy_ci_high": 0.9,
     "balanced_accuracy": 0.85, "n_scored": 9, "n_test_rows": 10}


def test_headline_is_balanced_accuracy_on_all_test_rows_with_its_interval():
    assert headline(M) == ("balanced accuracy 0.812 [0.700, 0.900] (95% CI, all test rows), scored 9/10 test rows")
    assert headline({"balanced_accuracy": 0.5}) == "balanced accuracy 0.500"


def test_final_summary_names_the_best_method_the_store_and_the_ui_command():
    text = format_final("wbc5_compare", "real data at /d", "wbc5_compare · 3 methods · seed 0", "abc", "/runs/1",
                        "hybrid", M, "/runs/1/hybrid/model", n_methods=3, seconds=12.0, store="sqlite:////tmp/o.db",
                        ui="mlflow ui --backend-store-uri sqlite:////tmp/o.db --host 127.0.0.1")
    lines = text.splitlines()
    assert lines[0] == "== wbc5_compare · 3 methods · seed 0: done in 12.0 s on real data at /d"
    assert lines[1].startswith("   headline: best of 3 methods: hybrid; balanced accuracy 0.812 [0.700, 0.900]")
    assert "   MLflow run: 'wbc5_compare · 3 methods · seed 0' (abc) in sqlite:////tmp/o.db" in lines
    assert any(ln.strip().startswith("mlflow ui --backend-store-uri sqlite:////tmp/o.db") and UI_URL in ln
               for ln in lines)
    assert any("python -m hybridwbc.report --run abc --uri sqlite:////tmp/o.db" in ln for ln in lines)
    assert any("python -m hybridwbc.predict model=/runs/1/hybrid/model" in ln for ln in lines)
