import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import parametrize_with_checks

from hybridwbc.errors import ConfigError
from hybridwbc.models.cascade import CascadeClassifier


@parametrize_with_checks([CascadeClassifier(stage2=RandomForestClassifier(n_estimators=10, random_state=0))])
def test_sklearn_contract(estimator, check):
    check(estimator)


def _wbc(n=40, seed=0):
    """Column 0 separates eos/baso/other ("granularity"); column 1 types the others."""
    rng = np.random.default_rng(seed)
    classes = ["eosinophil", "basophil", "neutrophil", "monocyte", "lymphocyte"]
    g = {"eosinophil": 4.0, "basophil": 8.0}
    t = {"neutrophil": -4.0, "monocyte": 0.0, "lymphocyte": 4.0}
    y = np.repeat(classes, n).astype(object)
    X = rng.normal(0, 0.3, (len(y), 3))
    X[:, 0] += [g.get(c, 0.0) for c in y]
    X[:, 1] += [t.get(c, 0.0) for c in y]
    return X, y


class _Spy(RandomForestClassifier):
    seen: list = []

    def predict_proba(self, X):
        _Spy.seen.append(X.copy())
        return super().predict_proba(X)


def test_routing_special_cells_never_reach_stage2():
    X, y = _wbc()
    _Spy.seen = []
    casc = CascadeClassifier(stage1=LogisticRegression(), stage2=_Spy(n_estimators=20, random_state=0),
                             stage1_columns=[0], stage2_columns=[1]).fit(X, y)
    Xt, yt = _wbc(seed=1)
    pred = casc.predict(Xt)
    assert (pred == yt).mean() > 0.95
    route = casc.route(Xt)
    assert set(route[np.isin(pred, ["eosinophil", "basophil"])]) == {"stage1"}
    # stage 2 saw only the rows stage 1 routed to it, and only its own column
    reached = np.vstack(_Spy.seen[-1:])
    assert reached.shape == ((route == "stage2").sum(), 1)
    eos_rows = Xt[pred == "eosinophil"][:, [1]]
    assert not any((reached == r).all(axis=1).any() for r in eos_rows)


def test_probabilities_sum_to_one_and_agree_with_predict():
    X, y = _wbc()
    casc = CascadeClassifier(stage1=LogisticRegression(), stage1_columns=[0], stage2_columns=[1]).fit(X, y)
    p = casc.predict_proba(X)
    assert list(casc.classes_) == sorted(set(y))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_array_equal(casc.classes_[p.argmax(axis=1)], casc.predict(X))


def test_prefit_head_splits_lymphocytes():
    X, y = _wbc()
    rng = np.random.default_rng(3)
    Xh = rng.normal(0, 1, (60, 3))
    yh = np.where(Xh[:, 2] > 0, "all", "hem")
    head = LogisticRegression().fit(Xh, yh)  # fitted elsewhere (C-NMC)
    casc = CascadeClassifier(stage1=LogisticRegression(), stage1_columns=[0], stage2_columns=[1], head=head,
                             head_columns=[0, 1, 2]).fit(X, y)
    assert "lymphocyte:all" in casc.classes_ and "lymphocyte" not in casc.classes_
    p = casc.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    lym = casc.predict(X[y == "lymphocyte"])
    assert set(lym) <= {"lymphocyte:all", "lymphocyte:hem"} and len(set(lym)) == 2
    assert casc.head_ is head  # prefit: not refitted


def test_head_fitted_in_place_and_errors():
    X, y = _wbc()
    y2 = y.copy()
    lym = np.flatnonzero(y == "lymphocyte")
    y2[lym[::2]], y2[lym[1::2]] = "lymphocyte:all", "lymphocyte:hem"
    casc = CascadeClassifier(head=LogisticRegression(), head_prefit=False).fit(X, y2)
    assert {"lymphocyte:all", "lymphocyte:hem"} <= set(casc.classes_)
    with pytest.raises(ConfigError, match="head_prefit=False but y has no 'lymphocyte:<k>'"):
        CascadeClassifier(head=LogisticRegression(), head_prefit=False).fit(X, y)
    with pytest.raises(ConfigError, match="out of range"):
        CascadeClassifier(stage1_columns=[7]).fit(X, y)
    with pytest.raises(ConfigError, match="feature_names is not set"):
        CascadeClassifier(stage1_columns=["gran_"]).fit(X, y)
    with pytest.raises(ConfigError, match="matches none"):
        CascadeClassifier(stage1_columns=["gran_"], feature_names=["a", "b", "c"]).fit(X, y)
    with pytest.raises(ConfigError, match="has 2 names but X has 3"):
        CascadeClassifier(stage1_columns=["a"], feature_names=["a", "b"]).fit(X, y)
    named = CascadeClassifier(stage1_columns=["gran"], stage2_columns=["type"],
                              feature_names=["gran_0", "type_0", "noise"]).fit(X, y)
    assert list(named.cols1_) == [0] and list(named.cols2_) == [1]


def test_degenerate_label_sets():
    X, y = _wbc()
    Xt, yt = _wbc(seed=1)  # held out: the accuracy below is generalisation, not memory
    only_rest = np.isin(y, ["neutrophil", "monocyte", "lymphocyte"])
    c = CascadeClassifier().fit(X[only_rest], y[only_rest])
    assert c.stage1_ is None and set(c.predict(Xt[only_rest])) <= set(y[only_rest])
    only_special = ~only_rest
    c = CascadeClassifier().fit(X[only_special], y[only_special])
    assert c.stage2_ is None and (c.predict(Xt[only_special]) == yt[only_special]).mean() > 0.9


def test_embedder_is_fitted_on_all_rows_and_feeds_stage2():
    from sklearn.decomposition import PCA
    from sklearn.feature_selection import SelectKBest

    X, y = _wbc()
    casc = CascadeClassifier(stage1=LogisticRegression(), stage1_columns=[0], embedder=SelectKBest(k=1),
                             embedder_columns=[1, 2]).fit(X, y)
    assert casc.embedder_.n_features_in_ == 2 and casc.embedder_.get_support().tolist() == [True, False]
    assert casc.stage2_.n_features_in_ == 1
    Xt, yt = _wbc(seed=1)
    assert (casc.predict(Xt) == yt).mean() > 0.95
    np.testing.assert_allclose(casc.predict_proba(Xt).sum(axis=1), 1.0)
    with pytest.raises(ConfigError, match="out of range"):
        CascadeClassifier(embedder=PCA(1), embedder_columns=[9]).fit(X, y)


def test_stage1_embeddings_let_stage1_see_the_embedder():
    from sklearn.feature_selection import SelectKBest

    X, y = _wbc()
    # stage 1's own column (2) is noise; the embedder keeps column 0, which separates eos/baso
    common = dict(stage1=LogisticRegression(), stage1_columns=[2], embedder=SelectKBest(k=1),
                  embedder_columns=[0, 2])
    plain = CascadeClassifier(**common).fit(X, y)
    seeing = CascadeClassifier(**common, stage1_embeddings=True).fit(X, y)
    assert seeing.stage1_.n_features_in_ == 2 and plain.stage1_.n_features_in_ == 1
    Xt, yt = _wbc(seed=1)
    special = np.isin(yt, ["eosinophil", "basophil"])
    assert (seeing.predict(Xt)[special] == yt[special]).mean() > 0.95
    assert (plain.predict(Xt)[special] == yt[special]).mean() < 0.8
    np.testing.assert_allclose(seeing.predict_proba(Xt).sum(axis=1), 1.0)
    with pytest.raises(ConfigError, match="stage1_embeddings=True needs an embedder"):
        CascadeClassifier(stage1_embeddings=True).fit(X, y)


# ------------------------------------------------------------------ no leakage: groups and cross-fitting
class _FlagEmbedder:
    """Fake embedder on columns (row id, subject): outputs (1 if the row's subject was among its training
    subjects else 0, the row id), so a stage that sees column 0 == 1 saw an embedding of a subject the
    embedder was trained on."""

    def __init__(self, random_state=0):
        self.random_state = random_state

    def get_params(self, deep=True):
        return {"random_state": self.random_state}

    def set_params(self, **params):
        self.random_state = params.get("random_state", self.random_state)
        return self

    def fit(self, X, y, groups=None):
        self.subjects_ = set(np.asarray(X)[:, 1].tolist())
        self.groups_seen_ = groups
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=float)
        return np.column_stack([[float(s in self.subjects_) for s in X[:, 1]], X[:, 0]])


class _Recorder(LogisticRegression):
    seen: list = []

    def fit(self, X, y, groups=None):
        _Recorder.seen.append((np.asarray(X, dtype=float).copy(), groups))
        return super().fit(X, y)


def _subject_wbc():
    X, y = _wbc(n=12)
    subjects = np.tile(np.repeat(np.arange(4), 3), 5) + 4 * np.repeat(np.arange(5), 12)  # 4 per class
    return np.column_stack([np.arange(len(y)), subjects, X]), y, subjects


@pytest.mark.parametrize("crossfit", [0, 3])
def test_crossfit_stages_see_only_out_of_fold_embeddings(crossfit):
    X, y, subjects = _subject_wbc()
    _Recorder.seen = []
    casc = CascadeClassifier(stage1=_Recorder(), stage2=_Recorder(), stage1_columns=[2], embedder=_FlagEmbedder(),
                             embedder_columns=[0, 1], stage1_embeddings=True, crossfit=crossfit)
    casc.fit(X, y, groups=subjects)
    (x1, g1), (x2, g2) = _Recorder.seen  # stage 1 on every row, stage 2 on the others; both got the subjects
    assert len(x1) == len(y) and g1 is not None and len(g2) == len(x2) == 36
    flags = np.concatenate([x1[:, -2], x2[:, 0]])  # the embedder's "trained on this subject" column
    if crossfit:
        assert not flags.any()  # every training embedding came from an embedder that never saw its subject
    else:
        assert flags.all()  # today's default: the stages see embeddings of the embedder's own training rows
    assert casc.embedder_.subjects_ == set(subjects.tolist()) and casc.embedder_.groups_seen_ is not None
    assert casc.predict_proba(X).shape == (len(y), 5)
    with pytest.raises(ConfigError, match=r"crossfit must be 0 \(off\) or at least 2"):
        CascadeClassifier(crossfit=1).fit(X, y)
    with pytest.raises(ValueError, match=r"groups has 3 entries but X has 60 rows"):
        CascadeClassifier().fit(X, y, groups=subjects[:3])


def test_default_stage1_calibrates_on_folds_that_keep_subjects_whole():
    X, y, subjects = _subject_wbc()
    casc = CascadeClassifier(stage1_columns=[2]).fit(X, y, groups=subjects)
    folds = casc.stage1_[-1].cv  # CalibratedClassifierCV(ensemble=False) of the default stage 1
    assert len(folds) == 3
    for tr, te in folds:
        assert not set(subjects[tr]) & set(subjects[te])


def test_configured_stage1_calibration_is_grouped(compose, monkeypatch):
    """Stage 1 from conf (svm_calibrated): its calibration folds keep subjects whole."""
    from sklearn.pipeline import Pipeline

    from hybridwbc.config import build_estimator

    fits = []
    real = Pipeline.fit

    def spy(self, X, y=None, **params):
        fits.append(set(np.asarray(X)[:, 0].astype(int).tolist()))  # stage 1's column 0: the row id
        return real(self, X, y, **params)

    monkeypatch.setattr(Pipeline, "fit", spy)
    cfg, _ = compose("+experiment=wbc5", "classifier=cascade_handcrafted")
    X, y, subjects = _subject_wbc()
    names = ["granularity__id", "other__subject", "colour__a", "other__b", "other__c"]
    casc = build_estimator(cfg.classifier, cfg.seed, feature_names=names).fit(X, y, groups=subjects)
    inner = [f for f in fits if len(f) < len(y)]  # the calibration folds' fits (the last fit takes all rows)
    assert len(inner) == 3 and any(len(f) == len(y) for f in fits)
    for rows in inner:
        held_out = sorted(set(range(len(y))) - rows)
        assert not set(subjects[sorted(rows)]) & set(subjects[held_out])
    assert (casc.predict(X) == y).mean() > 0.9
