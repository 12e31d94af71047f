"""MODEL_CARD.md: written into every saved model folder from the run, and logged to MLflow."""

import json

import numpy as np
import pandas as pd

from hybridwbc.evaluate.method import RunData
from hybridwbc.report.card import model_card, protocol_sentence
from hybridwbc.run import run_experiment
from hybridwbc.serve.pipeline import CARD_FILE

SMALL = ["data.synthetic.n_per_class=12", "data.synthetic.size=64", "eval.n_bootstrap=20", "features.n_jobs=1",
         "classifier=svm"]  # the experiments default to CNN methods; the SVM keeps these runs to seconds


def test_every_run_saves_a_card_from_its_own_numbers_and_logs_it(compose, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("HYBRIDWBC_DATA", raising=False)
    cfg, choices = compose("+experiment=wbc5", *SMALL)
    out = run_experiment(cfg, tmp_path / "run", "wbc5", choices)
    card = (out["model_dir"] / CARD_FILE).read_text()
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert card.startswith("# Model card: wbc5 · svm · seed 0")
    assert f"MLflow run `{out['run_id']}`" in card
    assert "5 classes: `basophil`, `eosinophil`, `lymphocyte`, `monocyte`, `neutrophil`" in card
    assert "| basophil | 12 | 12 |" in card and "60 images" in card
    assert "BUILT-IN SYNTHETIC stand-in" in card and "Licence: n/a (generated)" in card
    assert (f"| balanced_accuracy | {m['all_balanced_accuracy']:.3f} [{m['all_balanced_accuracy_ci_low']:.3f}, "
            f"{m['all_balanced_accuracy_ci_high']:.3f}] |") in card
    assert f"ece {m['ece']:.3f}" in card and "Coverage" in card and "out_of_domain" in card
    assert "one held-out test split of 20% of images" in card
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert CARD_FILE in {a.path for a in client.list_artifacts(out["run_id"])}
    assert f"model/{CARD_FILE}" in {a.path for a in client.list_artifacts(out["run_id"], "model")}


def test_a_card_on_real_data_names_the_licence_the_citation_and_the_weak_classes(compose, tmp_path):
    cfg, _ = compose("+experiment=wbc5", "eval.n_bootstrap=20")
    kept = pd.DataFrame({"path": [f"{i}.jpg" for i in range(6)], "label": ["eosinophil"] * 3 + ["basophil"] * 3,
                         "subject": [""] * 6})
    rows = RunData(cfg=cfg, experiment="wbc5", kept=kept, features=np.zeros((6, 1)), y=kept["label"].to_numpy(),
                   groups=kept["path"].to_numpy(), subjects=False,
                   skip_reason=np.array(["", "", "no cell found", "", "", ""], dtype=object), source="real")
    report = tmp_path / "per_class_report.csv"
    pd.DataFrame({"class": ["basophil", "eosinophil"], "precision": [1, 0.5], "recall": [0.4, 1.0],
                  "f1": [0.6, 0.7], "support": [3, 3]}).to_csv(report, index=False)
    metrics = {"all_balanced_accuracy": 0.7, "all_balanced_accuracy_ci_low": 0.5, "all_balanced_accuracy_ci_high": 0.9,
               "balanced_accuracy": 0.8, "n_skipped_test": 1, "n_scored": 5, "n_test_rows": 6, "coverage": 5 / 6}
    card = model_card(rows, "svm", "svm", metrics, "r1", None, report, None)
    assert "Licence: CC BY 4.0" in card and "doi:10.17632/snkd93bnjr.1" in card
    assert "CellaVision DM96" in card and "(real images)" in card
    assert "| eosinophil | 3 | 2 |" in card and "6 images, 5 segmented and featurized" in card
    assert "Weakest classes (recall on held-out cells): basophil 0.40 (n=3)" in card
    assert "1 test images could not be scored" in card
    assert "per cell, the test rows the method scored | balanced_accuracy | 0.800" in card  # a skip: both variants


def test_protocol_sentence_reads_cross_validation_and_holdout():
    cv = protocol_sentence({"eval.protocol": "cv", "eval.n_splits": 5, "eval.n_bootstrap": 1000}, True)
    assert cv.startswith("5-fold cross-validation with whole subjects left out") and "1000 resamples of subjects" in cv
    ho = protocol_sentence({"eval.protocol": "holdout", "eval.test_size": 0.2, "eval.n_bootstrap": 200}, False)
    assert ho.startswith("one held-out test split of 20% of images") and "200 resamples of images" in ho
