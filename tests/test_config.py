import subprocess
import sys

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from hybridwbc.config import build_estimator, build_featurizer
from hybridwbc.errors import ConfigError


def test_experiment_not_in_root_defaults(conf_dir):
    defaults = yaml.safe_load((conf_dir / "config.yaml").read_text())["defaults"]
    assert not any(isinstance(d, dict) and "experiment" in d for d in defaults)
    assert "experiment" not in str(defaults)


@pytest.mark.each_experiment
def test_every_experiment_composes_and_builds(conf_dir, compose, name):
    first = (conf_dir / "experiment" / f"{name}.yaml").read_text().splitlines()[0]
    assert first == "# @package _global_"
    cfg, choices = compose(f"+experiment={name}")
    assert choices["experiment"] == name
    build_featurizer(cfg.features)
    build_estimator(cfg.classifier, cfg.seed)


def test_required_experiments_exist(experiments):
    assert {"all_hem", "wbc5", "pbc8", "all_pbs"} <= set(experiments)


def test_misspelled_key_fails_at_composition(conf_dir, compose, tmp_path):
    with pytest.raises((ConfigKeyError, ConfigCompositionException), match="n_split"):
        compose("+experiment=all_hem", "eval.n_split=3")
    # a typo inside an experiment file fails too, because our nodes have schemas
    import shutil

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    conf = tmp_path / "conf"
    shutil.copytree(conf_dir, conf)
    (conf / "experiment" / "typo.yaml").write_text("# @package _global_\neval:\n  n_split: 3\n")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        with pytest.raises(ConfigCompositionException, match="typo"):
            hydra_compose("config", overrides=["paths.root=/tmp", "+experiment=typo"])


def test_bad_enum_value_fails_at_composition(compose):
    with pytest.raises((ValidationError, ConfigCompositionException), match="protocol"):
        compose("eval.protocol=loo")


def test_unknown_group_option_fails(compose):
    with pytest.raises(ConfigCompositionException, match="mobilenetv9"):
        compose("classifier=mobilenetv9")


def test_sklearn_nodes_are_converted_to_plain_python(compose):
    cfg, _ = compose("classifier=svm")
    est = build_estimator(cfg.classifier, cfg.seed)
    pipe = est.estimator.estimator  # CalibratedModel(GridSearchCV(Pipeline))
    assert type(pipe.steps) is list and type(est.estimator.param_grid) is dict  # plain Python, not OmegaConf
    assert pipe.get_params()["clf__class_weight"] == "balanced"


def test_bad_search_grid_and_bad_targets(compose):
    from omegaconf import OmegaConf

    from hybridwbc.config import ClassifierConfig

    node = OmegaConf.merge(OmegaConf.structured(ClassifierConfig), {
        "search": {"param_grid": {"nope": [1]}},
        "estimator": {"_target_": "sklearn.ensemble.RandomForestClassifier"}})
    with pytest.raises(ConfigError, match=r"param_grid names \['nope'\]"):
        build_estimator(node)
    cfg, _ = compose("classifier=random_forest", "classifier.estimator._target_=sklearn.preprocessing.StandardScaler",
                     "~classifier.estimator.n_estimators", "~classifier.estimator.class_weight",
                     "~classifier.estimator.n_jobs", "~classifier.estimator.random_state")
    with pytest.raises(ConfigError, match="must be a scikit-learn classifier"):
        build_estimator(cfg.classifier)
    cfg, _ = compose("features.featurizer._target_=sklearn.preprocessing.StandardScaler",
                     "~features.featurizer.min_area_fraction")
    with pytest.raises(ConfigError, match="must build an ImageFeaturizer"):
        build_featurizer(cfg.features)
    cfg, _ = compose("features.featurizer._target_=hybridwbc.features.simple.Nope")
    with pytest.raises(ConfigError, match="Cannot build features.featurizer"):
        build_featurizer(cfg.features)
    cfg, _ = compose("features.featurizer=null")
    with pytest.raises(ConfigError, match="features.featurizer is not set"):
        build_featurizer(cfg.features)


def test_estimators_are_built_with_the_design_matrix_names(compose):
    names = ["path", "granularity__a", "colour__b", "geometry__c"]
    cfg, _ = compose("+experiment=wbc5", "classifier=cascade")
    assert build_estimator(cfg.classifier, cfg.seed, feature_names=names).feature_names == names
    cfg, _ = compose("+experiment=granularity_eo_baso")
    est = build_estimator(cfg.methods.granularity, cfg.seed, feature_names=names[1:])
    assert est.named_steps["select"].feature_names == names[1:]
    cfg, _ = compose("classifier=random_forest")
    assert "feature_names" not in build_estimator(cfg.classifier, feature_names=names).get_params()


def test_help_is_fast_and_imports_nothing_heavy(project_root):
    code = ("import sys, hybridwbc.run, hybridwbc.predict, hybridwbc.config;"
            "heavy=[m for m in ('tensorflow','mlflow','keras','sklearn','matplotlib') if m in sys.modules];"
            "print(heavy); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=project_root)
    out = subprocess.run([sys.executable, "-m", "hybridwbc.run", "--help"], capture_output=True, text=True,
                         cwd=project_root, timeout=120)
    assert out.returncode == 0 and "experiment" in out.stdout


def test_code_version_follows_the_code_that_makes_results(tmp_path):
    from hybridwbc.config import code_version

    pkg = tmp_path / "hybridwbc"
    for rel in ("evaluate/method.py", "report/tables.py", "serve/predict.py", "conf/config.yaml", "conf/eval/cv.yaml"):
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(f"# {rel}\n")
    base = code_version(pkg)
    (pkg / "report" / "tables.py").write_text("# drawn differently\n")
    (pkg / "serve" / "predict.py").write_text("# served differently\n")
    assert code_version(pkg) == base  # rendering and serving do not change a result
    (pkg / "evaluate" / "method.py").write_text("# scored differently\n")
    assert code_version(pkg) != base
    (pkg / "evaluate" / "method.py").write_text("# evaluate/method.py\n")
    (pkg / "conf" / "eval" / "cv.yaml").write_text("n_splits: 3\n")
    assert code_version(pkg) != base
