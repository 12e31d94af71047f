"""No test row ever reaches a fit: a spy on every estimator fit inside ``predict_out_of_sample``.

Every row is identifiable wherever it travels: by its image path (the CNN estimators and the cascade),
by an id column in a range no feature takes (handcrafted columns, scalers, pipelines, searches,
calibration), or by the exact embedding a CNN produced for it (heads on embeddings: the spy on
``CNNClassifier.embed`` maps each embedding row back to its image). The methods are built from ``conf/``
as a run builds them (the tiny backbone; cross-fitting on for cnn_svm, hybrid and the cascade), on
synthetic cells with subjects, under subject-grouped 3-fold CV. Each fit is attributed to the outer split
being fitted, and the test asserts that every row it saw is a training row of that split. A fit whose rows
cannot be identified fails the test, so it cannot pass by seeing nothing.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

keras = pytest.importorskip("keras")

ID0 = 1_000_000.0  # row i carries the id ID0 + i; the other feature columns stay within a few units of 0
NAMES = ["granularity__rowid", "granularity__a", "colour__b", "texture__c"]
METHODS = {  # name: (classifier option, X kind, overrides)
    "svm": ("svm", "features", []),
    "random_forest": ("random_forest", "features", []),
    "cnn_softmax": ("cnn_softmax", "paths", []),
    "cnn_svm": ("cnn_svm", "paths", ["classifier.estimator.crossfit=2"]),
    "cnn_rf": ("cnn_rf", "paths", []),
    "hybrid": ("hybrid", "paths_features", ["classifier.estimator.crossfit=2"]),
    "cascade": ("cascade", "paths_features", ["classifier.estimator.crossfit=2"]),
}


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """36 synthetic 32 px cells: eosinophil, lymphocyte, neutrophil x 6 subjects x 2 cells, and a feature table."""
    from hybridwbc.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("cells")
    m = pd.read_csv(generate_dataset(root, ["eosinophil", "lymphocyte", "neutrophil"], n_per_class=12, size=32,
                                     n_subjects=6, seed=3))
    y = m["label"].to_numpy(dtype=object)
    rng = np.random.default_rng(0)
    signal = (y[:, None] == np.array(["eosinophil", "lymphocyte", "neutrophil"])).astype(float)
    F = np.column_stack([ID0 + np.arange(len(y)), signal + rng.normal(0, 0.3, signal.shape)])
    paths = np.array([str(root / p) for p in m["path"]], dtype=object).reshape(-1, 1)
    return {"paths": paths, "F": F, "y": y, "groups": ("subject:" + m["subject"].astype(str)).to_numpy(dtype=object),
            "X": {"features": F, "paths": paths, "paths_features": np.hstack([paths, F.astype(object)])}}


class _Spy:
    """Records ``(outer split, class, row ids)`` of every fit of the spied classes."""

    def __init__(self, paths):
        self.path_id = {p: i for i, p in enumerate(paths[:, 0])}
        self.n = len(paths)
        self.emb_id: dict[bytes, int] = {}
        self.split = -1
        self.records: list[tuple[int, str, set | None]] = []

    def ids(self, X) -> set | None:
        """Row ids of a fit's ``X``; ``None`` if they cannot be told."""
        A = np.asarray(X, dtype=object)
        A = A.reshape(-1, 1) if A.ndim == 1 else A
        if isinstance(A[0, 0], str):
            return {self.path_id[p] for p in A[:, 0]}
        F = np.asarray(A, dtype=np.float64)
        for col in F.T:
            if np.all((col >= ID0) & (col < ID0 + self.n) & (col == np.round(col))):
                return set((col - ID0).astype(int).tolist())
        keys = [row.tobytes() for row in F]
        return {self.emb_id[k] for k in keys} if all(k in self.emb_id for k in keys) else None

    def on_fit(self, cls, monkeypatch):
        real = cls.fit

        @functools.wraps(real)
        def fit(est, X, *args, **kwargs):
            self.records.append((self.split, cls.__name__, self.ids(X)))
            return real(est, X, *args, **kwargs)

        monkeypatch.setattr(cls, "fit", fit)

    def on_embed(self, cnn_cls, monkeypatch):
        real = cnn_cls.embed

        @functools.wraps(real)
        def embed(est, paths, shas=None):
            res = real(est, paths, shas)
            for i, row in zip(res.index, np.asarray(res.X, dtype=np.float64)):
                self.emb_id[row.tobytes()] = self.path_id[list(paths)[i]]
            return res

        monkeypatch.setattr(cnn_cls, "embed", embed)

    def on_split(self, protocol, monkeypatch):
        real = protocol.fit_estimator

        def fit_estimator(*args, **kwargs):
            self.split += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(protocol, "fit_estimator", fit_estimator)


def test_no_test_row_reaches_any_fit(cells, compose, tmp_path, monkeypatch):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    import hybridwbc.evaluate.protocol as protocol
    from hybridwbc.calibration import CalibratedModel
    from hybridwbc.cnn.estimators import CNNClassifier
    from hybridwbc.cnn.heads import EmbeddingClassifier
    from hybridwbc.config import build_estimator
    from hybridwbc.models.cascade import CascadeClassifier

    spied = [CNNClassifier, EmbeddingClassifier, CascadeClassifier, CalibratedModel, GridSearchCV, Pipeline,
             StandardScaler, RandomForestClassifier]
    seen_classes: set[str] = set()
    for name, (option, kind, overrides) in METHODS.items():
        spy = _Spy(cells["paths"])
        for cls in spied:
            spy.on_fit(cls, monkeypatch)
        spy.on_embed(CNNClassifier, monkeypatch)
        spy.on_split(protocol, monkeypatch)
        cfg, _ = compose("+experiment=wbc5", f"classifier={option}", "backbone=tiny",
                         f"paths.cache_dir={tmp_path / 'cache'}", *overrides)
        est = build_estimator(cfg.classifier, 0, feature_names=["path", *NAMES] if kind == "paths_features" else NAMES)
        pred, splits, fitted = protocol.predict_out_of_sample(est, cells["X"][kind], cells["y"], cells["groups"],
                                                              protocol="cv", n_splits=3, grouped=True, seed=0)
        assert len(splits) == 3 and spy.split == 2 and sorted(pred.rows.tolist()) == list(range(36)), name
        unknown = [cls for _, cls, ids in spy.records if ids is None]
        assert not unknown, f"{name}: cannot tell which rows these fits saw: {unknown}"
        for k, cls, ids in spy.records:
            train, test = splits[k]
            assert not ids & set(test.tolist()), f"{name}: {cls}.fit saw test rows {sorted(ids & set(test))}"
            assert ids <= set(train.tolist()), name
        seen_classes |= {cls for _, cls, _ in spy.records}
        if option in ("cnn_svm", "hybrid"):
            assert all(f.crossfit_folds_ == 2 for f in fitted), name
        monkeypatch.undo()
    assert seen_classes == {cls.__name__ for cls in spied}  # every kind of fit was watched at least once
