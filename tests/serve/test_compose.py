"""A cascade trained on white cells composed with an ALL/HEM head trained elsewhere (saved models)."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from hybridwbc.data.synthetic import generate_dataset
from hybridwbc.errors import ConfigError, ModelLoadError, PartialPredictionError
from hybridwbc.features.simple import ColourShapeFeaturizer
from hybridwbc.features.table import featurize_paths
from hybridwbc.models.cascade import CascadeClassifier
from hybridwbc.serve.compose import compose_head, main
from hybridwbc.serve.pipeline import WBCPipeline, design_matrix
from hybridwbc.serve.prefit import SavedModelClassifier, load_saved_classifier


def _data(root, classes, background, seed):
    manifest = pd.read_csv(generate_dataset(root, classes, n_per_class=10, size=64, background=background, seed=seed))
    return [str(root / p) for p in manifest["path"]], manifest["label"].to_numpy(dtype=object)


def _features(f, paths):
    t = featurize_paths(f, paths, shas=[""] * len(paths), cache_dir=None, n_jobs=1, progress=False)
    assert len(t.index) == len(paths)
    return t.X


def _head(tmp_path, seed=0, flip=False):
    paths, y = _data(tmp_path / f"cnmc{seed}", ["all", "hem"], "black", seed)
    f = ColourShapeFeaturizer()
    y = np.where(y == "all", "hem", "all") if flip else y
    est = LogisticRegression(max_iter=2000).fit(_features(f, paths), y)
    return WBCPipeline(f, est, info={"experiment": "all_hem", "run_id": f"head{seed}"}).save(
        tmp_path / f"head{seed}" / "model"), paths


@pytest.fixture
def models(tmp_path):
    paths, y = _data(tmp_path / "pbc", ["eosinophil", "lymphocyte", "monocyte", "neutrophil"], "smear", 1)
    f = ColourShapeFeaturizer()
    feats = _features(f, paths)
    names = ["path"] + list(f.feature_names())
    cols = list(range(1, len(names)))
    casc = CascadeClassifier(stage1=LogisticRegression(max_iter=2000), stage2=RandomForestClassifier(
        n_estimators=30, random_state=0), stage1_columns=cols, stage2_columns=cols, feature_names=names)
    casc.fit(design_matrix("paths_features", paths, feats), y)
    cascade_dir = WBCPipeline(f, casc, info={"experiment": "wbc5"}, input_kind="paths_features").save(
        tmp_path / "wbc" / "model")
    features_only = WBCPipeline(f, LogisticRegression(max_iter=2000).fit(feats, y)).save(tmp_path / "lr" / "model")
    head_dir, head_paths = _head(tmp_path)
    return dict(paths=paths, y=y, cascade=cascade_dir, head=head_dir, head_paths=head_paths, other=features_only)


def test_saved_model_is_a_prefit_classifier(models):
    head = load_saved_classifier(models["head"])
    assert list(head.classes_) == ["all", "hem"] and clone(head) is head
    X = np.asarray(models["head_paths"], dtype=object).reshape(-1, 1)
    proba = head.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    truth = np.array(["all"] * 10 + ["hem"] * 10)
    assert (head.predict(X) == truth).mean() > 0.9
    # a file the head cannot read: no invented (uniform) probabilities, but the reason, naming the head
    mixed = np.array([[models["head_paths"][0]], [str(models["head"] / "model.json")]], dtype=object)
    with pytest.raises(PartialPredictionError, match=r"1 of 2 rows could not be predicted; e.g. row 1: saved model "
                       r".*head0/model.*ImageReadError") as info:
        head.predict_proba(mixed)
    assert list(info.value.reasons) == [1] and np.isnan(info.value.proba[1]).all()
    np.testing.assert_allclose(info.value.proba[0], proba[0])
    with pytest.raises(ModelLoadError, match="model.json is missing"):
        load_saved_classifier(models["head"].parent / "nowhere")


def test_compose_cli_splits_lymphocytes_and_keeps_the_rest(models, tmp_path, capsys):
    out = tmp_path / "composed" / "model"
    assert main([f"cascade={models['cascade']}", f"head={models['head']}", f"output={out}"]) == 0
    assert "wrote" in capsys.readouterr().out
    base = WBCPipeline.load(models["cascade"]).predict_paths(models["paths"])
    composed = WBCPipeline.load(out)
    assert composed.classes_ == ["eosinophil", "lymphocyte:all", "lymphocyte:hem", "monocyte", "neutrophil"]
    assert composed.info["composed"]["head_run_id"] == "head0"
    df = composed.predict_paths(models["paths"])
    assert (df["status"] == "ok").all()
    p = df[[f"p_{c}" for c in composed.classes_]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    lym = base["label"] == "lymphocyte"
    assert lym.any() and set(df.loc[lym, "label"]) <= {"lymphocyte:all", "lymphocyte:hem"}
    assert (df.loc[~lym, "label"] == base.loc[~lym, "label"]).all()
    # P(lymphocyte:all) + P(lymphocyte:hem) is the cascade's P(lymphocyte)
    np.testing.assert_allclose(p[:, 1] + p[:, 2], base["p_lymphocyte"], atol=1e-9)
    # the composed estimator pickles without the head's pipeline, and reloads it
    est = composed.estimator
    again = pickle.loads(pickle.dumps(est))
    assert "pipeline_" not in again.head_.__dict__
    X = design_matrix("paths_features", models["paths"][:5], np.zeros((5, est.n_features_in_ - 1)))
    np.testing.assert_allclose(again.head_.predict_proba(X[:, :1]), est.head_.predict_proba(X[:, :1]))


def test_a_changed_head_is_refused(models, tmp_path):
    out = compose_head(models["cascade"], models["head"], tmp_path / "c" / "model")
    # replace the head's folder with another (consistent, but different) model
    other, _ = _head(tmp_path, seed=5, flip=True)
    for name in ("pipeline.joblib", "model.json"):
        (models["head"] / name).write_bytes((other / name).read_bytes())
    df = WBCPipeline.load(out).predict_paths(models["paths"])
    assert (df["status"] == "error").any()
    assert df.loc[df["status"] == "error", "error"].str.contains("changed since this classifier was composed").all()


def test_compose_errors(models, tmp_path, capsys):
    with pytest.raises(ConfigError, match="holds a LogisticRegression, not a CascadeClassifier"):
        compose_head(models["other"], models["head"], tmp_path / "x")
    assert main([f"cascade={models['cascade']}", f"head={models['head']}"]) == 1
    assert "Missing argument(s) ['output']" in capsys.readouterr().err
    assert main(["cascade", "head=x", "output=y"]) == 1
    assert "Argument 'cascade' is not key=value" in capsys.readouterr().err
    pipe = WBCPipeline.load(models["cascade"])
    features_kind = WBCPipeline(pipe.featurizer, pipe.estimator, input_kind="features").save(tmp_path / "f" / "model")
    with pytest.raises(ConfigError, match="not image paths"):
        compose_head(features_kind, models["head"], tmp_path / "y")
    no_lym = clone(pipe.estimator).set_params(special_classes=["eosinophil", "lymphocyte"])
    n_features = len(no_lym.feature_names) - 1
    X = design_matrix("paths_features", models["paths"], np.zeros((len(models["paths"]), n_features)))
    no_lym.fit(X, models["y"])
    with pytest.raises(ConfigError, match="Cannot attach a head for 'lymphocyte'"):
        no_lym.attach_head(SavedModelClassifier(models["head"]).fit(), head_columns=["path"])


def _failing_head(tmp_path, models, how):
    """The head of ``models`` saved so that it cannot answer smear cells: ``nocell`` (its featurizer finds no
    cell in any image) or ``domain`` (an applicability domain fitted on its black-background training cells)."""
    from hybridwbc.evaluate.protocol import fit_domain

    pipe = WBCPipeline.load(models["head"])
    if how == "nocell":  # no component can cover twice the image: NoCellFoundError by construction
        return WBCPipeline(ColourShapeFeaturizer(min_area_fraction=2.0), pipe.estimator, info=pipe.info).save(
            tmp_path / "nocell" / "model")
    X = _features(pipe.featurizer, models["head_paths"])  # 20 cells: the 0.9 quantile keeps two hue outliers out
    return WBCPipeline(pipe.featurizer, pipe.estimator, info=pipe.info,
                       domain=fit_domain(pipe.estimator, X, quantile=0.9)).save(tmp_path / "domain" / "model")


@pytest.mark.parametrize("how, reason", [("nocell", "NoCellFoundError"), ("domain", "out_of_domain")])
def test_a_head_that_cannot_answer_never_says_leukaemic(models, tmp_path, how, reason):
    """Issue #10.1: a head that cannot read a cell, finds none, or finds it out of its domain makes the
    lymphocyte rows error rows naming the head, never ``lymphocyte:all`` from a tie at 0.5 with status ok."""
    head = _failing_head(tmp_path, models, how)
    out = compose_head(models["cascade"], head, tmp_path / "composed" / "model")
    base = WBCPipeline.load(models["cascade"]).predict_paths(models["paths"])
    df = WBCPipeline.load(out).predict_paths(models["paths"])
    lym = (base["label"] == "lymphocyte").to_numpy()
    assert lym.sum() >= 5
    assert (df.loc[lym, "status"] == "error").all()
    assert not df["label"].isin(["lymphocyte:all", "lymphocyte:hem"]).any()
    reasons = df.loc[lym, "error"]
    assert reasons.str.contains("'lymphocyte' head").all() and reasons.str.contains(str(head)).all()
    assert reasons.str.contains(reason).all()
    # the other cells keep the cascade's verdict and a row of probabilities that sums to one
    assert (df.loc[~lym, "status"] == "ok").all() and (df.loc[~lym, "label"] == base.loc[~lym, "label"]).all()
    p = df.loc[~lym, [c for c in df.columns if c.startswith("p_")]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


def test_cascade_raises_only_for_rows_the_head_decides(models, tmp_path):
    cascade = WBCPipeline.load(models["cascade"]).estimator
    composed = cascade.attach_head(load_saved_classifier(_failing_head(tmp_path, models, "nocell")),
                                   head_columns=["path"])
    feats = _features(ColourShapeFeaturizer(), models["paths"])
    X = design_matrix("paths_features", models["paths"], feats)
    lym = cascade.predict(X) == "lymphocyte"
    with pytest.raises(PartialPredictionError, match=r"the 'lymphocyte' head \(SavedModelClassifier\) cannot split "
                       r"this lymphocyte cell: saved model .*NoCellFoundError") as info:
        composed.predict_proba(X)
    assert sorted(info.value.reasons) == np.flatnonzero(lym).tolist()
    assert np.isnan(info.value.proba[lym]).all() and np.isfinite(info.value.proba[~lym]).all()


def test_a_composed_model_carries_the_cards_of_its_parts(models, tmp_path):
    (models["head"] / "MODEL_CARD.md").write_text("# Model card: all_hem · svm\n\n## Training data\n\n- cnmc\n")
    out = compose_head(models["cascade"], models["head"], tmp_path / "c" / "model")
    card = (out / "MODEL_CARD.md").read_text()
    assert card.startswith("# Model card: composed model")
    assert "## Part: cascade (white-cell types)" in card and "saved without a MODEL_CARD.md" in card
    assert "## Part: ALL/HEM head (lymphocytes)" in card and "### Training data" in card
    WBCPipeline.load(out)  # the card is not one of the hashed files: the folder still loads
