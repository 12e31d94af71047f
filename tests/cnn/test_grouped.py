"""No subject leaks into the CNN's own choices: its validation split, and the embeddings its heads learn from.

* The validation split (early stopping, the kept checkpoint, the BatchNorm check) takes whole subjects when
  ``fit`` gets ``groups``; the groups reach the CNN through ``EmbeddingClassifier`` and the protocol.
* ``EmbeddingClassifier(crossfit=k)`` fits its head on out-of-fold embeddings: a stand-in CNN whose embedding
  says whether the image's subject was among its training subjects shows the head never sees such an embedding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression

from hybridwbc.cnn.embed import EmbeddingResult
from hybridwbc.cnn.estimators import CNNClassifier
from hybridwbc.cnn.heads import EmbeddingClassifier
from hybridwbc.cnn.paths import split_paths
from hybridwbc.errors import ConfigError

TINY = dict(input_size=32, backbone_params={"depth": 2, "width": 8}, epochs=1, batch_size=8,
            validation_fraction=0.25, embed_batch_size=16, random_state=0, verbose=0, bn_recalibration=1)


@pytest.fixture(scope="module")
def subjects_data(tmp_path_factory):
    """32 synthetic cells, 2 classes x 4 subjects x 4 cells; every image distinct (own content hash)."""
    from hybridwbc.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("subj")
    m = pd.read_csv(generate_dataset(root, ["lymphocyte", "eosinophil"], n_per_class=16, size=32, n_subjects=4,
                                     seed=1))
    return {"X": np.array([str(root / p) for p in m["path"]], dtype=object).reshape(-1, 1),
            "y": m["label"].to_numpy(dtype=object), "groups": m["subject"].astype(str).to_numpy(dtype=object)}


def test_validation_split_takes_whole_subjects(subjects_data, monkeypatch):
    pytest.importorskip("keras")
    import hybridwbc.cnn.estimators as estimators
    from hybridwbc.evaluate import fit_estimator

    splits = []
    real = estimators.fit_model

    def spy(est, model, paths, yi, tr, va, cw, steps, **kwargs):
        splits.append((tr, va))
        return real(est, model, paths, yi, tr, va, cw, steps, **kwargs)

    monkeypatch.setattr(estimators, "fit_model", spy)
    X, y, groups = subjects_data["X"], subjects_data["y"], subjects_data["groups"]
    assert len(set(groups)) == 8
    CNNClassifier(**TINY).fit(X, y, groups=groups)
    # through the protocol's fit: EmbeddingClassifier passes the training rows' subjects to its CNN
    emb = fit_estimator(EmbeddingClassifier(cnn=CNNClassifier(**TINY), head=LogisticRegression()), X, y, groups)
    assert emb.predict(X).shape == (32,) and emb.crossfit_folds_ == 0
    assert len(splits) == 2
    for tr, va in splits:
        assert len(va) and not set(groups[tr]) & set(groups[va])
    with pytest.raises(ValueError, match=r"groups has 3 entries but X has 32 rows"):
        CNNClassifier(**TINY).fit(X, y, groups=groups[:3])


def test_subject_groups_name_a_different_training_run():
    pytest.importorskip("keras")
    from hybridwbc.cnn.training import training_key

    settings = CNNClassifier(**TINY).training_settings()
    shas, y = ["s1", "s2", "s3", "s4"], ["a", "a", "b", "b"]
    plain = training_key(settings, shas, y)
    assert plain == training_key(settings, shas, y, None)  # a run grouped by content hash keeps its key
    assert training_key(settings, shas, y, ["p1", "p1", "p2", "p3"]) not in {
        plain, training_key(settings, shas, y, ["p1", "p2", "p2", "p3"])}


class _SubjectCNN(BaseEstimator):
    """Stand-in CNN: the embedding of ``/<subject>_<i>.png`` is (1 if its subject was among the training
    subjects else 0, i). Paths only (nothing is read)."""

    def __init__(self, random_state=0):
        self.random_state = random_state

    def fit(self, X, y, groups=None):
        paths, _ = split_paths(X)
        self.subjects_ = {p.rsplit("/", 1)[1].split("_")[0] for p in paths}
        self.groups_seen_ = groups
        self.n_embed_ = 2
        self.history_ = {}
        return self

    def embed(self, paths):
        rows = [[float(p.rsplit("/", 1)[1].split("_")[0] in self.subjects_), float(p.rsplit("_", 1)[1][:-4])]
                for p in paths]
        return EmbeddingResult(X=np.asarray(rows, dtype=np.float32), index=np.arange(len(paths)))

    def transform(self, X):
        return self.embed(split_paths(X)[0]).X


class _Head(LogisticRegression):
    seen: list = []

    def fit(self, X, y, groups=None):
        _Head.seen.append((np.asarray(X).copy(), groups))
        return super().fit(X, y)


@pytest.mark.parametrize("crossfit", [0, 3])
@pytest.mark.parametrize("grouped", [True, False])
def test_crossfit_head_sees_only_out_of_fold_embeddings(crossfit, grouped):
    subjects = np.repeat([f"S{k}" for k in range(12)], 3)  # 12 subjects of 3 cells, 6 per class
    X = np.array([f"/cells/{s}_{i}.png" for i, s in enumerate(subjects)], dtype=object).reshape(-1, 1)
    y = np.where(np.isin(subjects, [f"S{k}" for k in range(6)]), "all", "hem").astype(object)
    _Head.seen = []
    est = EmbeddingClassifier(cnn=_SubjectCNN(), head=_Head(), crossfit=crossfit)
    est.fit(X, y, groups=subjects if grouped else None)
    (E, head_groups), = _Head.seen
    assert len(E) == 36 and (head_groups is not None) == grouped
    if crossfit:
        # grouped by subject: no training embedding came from a CNN that trained on that subject;
        # without subjects the folds group by content hash, so other cells of a subject may be seen
        assert est.crossfit_folds_ == 3 and (not E[:, 0].any() if grouped else E[:, 0].mean() < 1.0)
    else:
        assert E[:, 0].all()  # the head learns from embeddings of the CNN's own training images
    assert est.cnn_.subjects_ == set(subjects) and est.predict(X).shape == (36,)


def test_crossfit_must_be_off_or_at_least_two_folds():
    with pytest.raises(ConfigError, match=r"crossfit must be 0 \(off\) or at least 2 \(inner folds\); received 1"):
        EmbeddingClassifier(cnn=_SubjectCNN(), head=LogisticRegression(), crossfit=1).validate()


def test_validation_split_with_fewer_subjects_than_folds():
    """0.1 asks for 10 stratified folds; 9 subjects cannot fill them, so a grouped shuffle split is drawn."""
    from hybridwbc.cnn.training import validation_split

    groups = np.repeat([f"S{k}" for k in range(9)], 4)
    y = (np.arange(36) // 4 % 2).astype(np.int64)  # subjects alternate between the two classes
    tr, va = validation_split(y, groups, 0.1, seed=0)
    assert len(va) and sorted(np.concatenate([tr, va]).tolist()) == list(range(36))
    assert not set(groups[tr]) & set(groups[va])
    shas = np.array([f"h{i}" for i in range(36)])  # by content hash: 36 groups, stratified folds
    tr, va = validation_split(y, shas, 0.1, seed=0)
    assert len(va) == 4 and sorted(set(y[va].tolist())) == [0, 1]


def test_embedding_classifier_keeps_its_old_import_path():
    """Models pickled when EmbeddingClassifier lived in cnn.estimators still load (pickle looks it up there)."""
    import hybridwbc.cnn.estimators as old

    assert old.EmbeddingClassifier is EmbeddingClassifier
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        old.Nope  # noqa: B018
