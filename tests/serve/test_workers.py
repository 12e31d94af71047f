"""Prediction uses all cores by default; ``n_jobs=1`` keeps it in this process."""

import pytest

from hybridwbc.errors import ConfigError
from hybridwbc.serve import pipeline as pipeline_module
from hybridwbc.serve import workers
from hybridwbc.serve.predict import parse_args


def test_available_cores_follows_affinity(monkeypatch):
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    assert workers.available_cores() == 3
    monkeypatch.delattr(workers.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(workers.os, "cpu_count", lambda: 7)
    assert workers.available_cores() == 7


@pytest.mark.parametrize("value, expected", [(None, 6), (-1, 6), ("-1", 6), (1, 1), (3, 3), ("2", 2)])
def test_resolve_n_jobs(monkeypatch, value, expected):
    monkeypatch.setattr(workers, "available_cores", lambda: 6)
    assert workers.resolve_n_jobs(value) == expected


@pytest.mark.parametrize("value, match", [(0, "must be -1 \\(all cores\\) or >= 1"), (-2, "must be -1"),
                                          ("two", "n_jobs must be an integer"), (True, "n_jobs must be an integer")])
def test_resolve_n_jobs_refuses(value, match):
    with pytest.raises(ConfigError, match=match):
        workers.resolve_n_jobs(value)


def test_cli_default_is_all_cores(monkeypatch):
    monkeypatch.setattr(workers, "available_cores", lambda: 5)
    assert parse_args(["model=x", "input=y", "output=z"])["n_jobs"] == 5
    assert parse_args(["model=x", "input=y", "output=z", "n_jobs=1"])["n_jobs"] == 1


def test_predict_paths_default_featurizes_on_all_cores(monkeypatch, folder_dataset):
    """The pipeline's default hands every available core to the featurizing workers; n_jobs=1 keeps one."""
    from sklearn.dummy import DummyClassifier

    from hybridwbc.features.simple import ColourShapeFeaturizer

    seen = []
    real = pipeline_module._featurize_sources

    def spy(featurizer, sources, max_pixels, n_jobs=1, progress=False):
        seen.append(n_jobs)
        return real(featurizer, sources, max_pixels, 1, progress)

    monkeypatch.setattr(pipeline_module, "_featurize_sources", spy)
    monkeypatch.setattr(workers, "available_cores", lambda: 4)
    f = ColourShapeFeaturizer()
    paths = sorted(str(p) for p in folder_dataset.rglob("*.png"))[:4]
    est = DummyClassifier().fit([[0.0] * len(f.feature_names())] * 2, ["a", "b"])
    pipe = pipeline_module.WBCPipeline(f, est)
    assert (pipe.predict_paths(paths)["status"] == "ok").all()
    pipe.predict_paths(paths, n_jobs=1)
    assert seen == [4, 1]
