"""Object builders and identities of composed configs.

The dataclass schemas of the nodes hybridwbc owns live in :mod:`hybridwbc.schema` (re-exported here);
:func:`register_schemas` stores them in Hydra's ConfigStore as ``config_schema``, named first in
``conf/config.yaml``'s defaults list, so composition rejects a misspelled key, a wrong type or an unknown enum
value with Hydra's message. Third-party ``_target_`` nodes (scikit-learn estimators) are typed ``Any`` and
instantiated here, in one place, with ``_convert_="all"``. :func:`config_hash` and :func:`code_version` are
what ``make tables`` matches a run on.
"""

from __future__ import annotations

from typing import Sequence

from hybridwbc.schema import (  # noqa: F401  (re-exported: the schemas' public home is hybridwbc.schema)
    AugmentConfig,
    Background,
    ClassifierConfig,
    Config,
    DataConfig,
    DomainConfig,
    EvalConfig,
    ExplainConfig,
    FeaturesConfig,
    InputKind,
    Layout,
    PathsConfig,
    PreprocessConfig,
    PreprocessMethod,
    Protocol,
    ScaleMethod,
    SearchConfig,
    SegmentConfig,
    SegmentMode,
    SyntheticConfig,
    TrackingConfig,
)

__all__ = [
    "AugmentConfig", "Background", "ExplainConfig",
    "Layout", "Protocol", "InputKind", "SegmentMode", "SyntheticConfig", "DataConfig", "SegmentConfig",
    "FeaturesConfig", "SearchConfig", "PreprocessMethod", "ScaleMethod", "PreprocessConfig", "build_preprocess",
    "build_normaliser",
    "ClassifierConfig", "DomainConfig", "EvalConfig", "TrackingConfig", "PathsConfig", "Config",
    "register_schemas", "build_featurizer", "build_estimator", "enum_value", "config_hash", "code_version", "conf_dir",
    "compose_experiment",
]


def enum_value(x):
    """The value of a config enum member (``InputKind.paths`` -> ``"paths"``); anything else unchanged."""
    return getattr(x, "value", x)


def config_hash(cfg) -> str:
    """A short hash of what determines a run's results: the resolved config without ``paths``,
    ``tracking``, ``progress``, ``notes`` and every ``n_jobs``. ``make tables`` reruns an experiment when no
    finished run has it (and the current :func:`code_version`)."""
    import hashlib
    import json

    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    for key in ("paths", "tracking", "progress", "hydra", "notes"):
        data.pop(key, None)
    data = _drop_key(data, "n_jobs")
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _drop_key(data, key: str):
    """``data`` (nested dicts and lists) without any ``key`` entry: worker counts never change a result."""
    if isinstance(data, dict):
        return {k: _drop_key(v, key) for k, v in data.items() if k != key}
    if isinstance(data, list):
        return [_drop_key(v, key) for v in data]
    return data


#: Package folders that render or serve results without changing them (left out of :func:`code_version`).
_NOT_RESULTS = ("report", "serve")


def code_version(package=None) -> str:
    """A short hash of the code and configs that make a result: every ``.py`` file of the package except
    the wings that only render or serve results (``report/``, ``serve/``), and every ``.yaml`` file of
    the config tree, by relative path and content.

    Unlike the git commit it ignores documentation and result tables, and it is defined for an
    installed package too; a run made by other code never matches (``make tables`` reruns it), while a
    change to how tables are drawn or models served does not invalidate the runs. ``package``: the
    package folder to hash (default: this one; its ``conf/`` is the config tree).
    """
    import hashlib
    from pathlib import Path

    h = hashlib.sha256()
    package = Path(package) if package is not None else Path(__file__).resolve().parent
    for base, pattern in ((package, "*.py"), (package / "conf", "*.yaml")):
        for f in sorted(base.rglob(pattern)):
            rel = f.relative_to(base).parts
            if "__pycache__" in rel or (pattern == "*.py" and rel[0] in _NOT_RESULTS):
                continue
            h.update(f"{base.name}/{f.relative_to(base).as_posix()}\0".encode())
            h.update(f.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:16]


def conf_dir():
    """The folder of ``config.yaml`` (the Hydra config tree)."""
    from pathlib import Path

    return Path(__file__).resolve().parent / "conf"


def compose_experiment(experiment: str, overrides=()):
    """Compose ``conf/config.yaml`` with ``+experiment=<experiment>`` outside a Hydra run."""
    from hydra import compose, initialize_config_dir

    register_schemas()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose("config", overrides=[f"+experiment={experiment}", "paths.root=.", *overrides])


def register_schemas() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    store.store(group="augmentation", name="schema", node=AugmentConfig, package="backbone.augmentation")


def _selects_by_name(node) -> bool:
    """Whether ``node``'s ``_target_`` is a class that takes ``feature_names`` (:class:`SelectsByName`)."""
    from hydra.utils import get_object

    from hybridwbc.models.parts import SelectsByName

    target = node.get("_target_") if hasattr(node, "get") else None
    try:
        obj = get_object(str(target)) if target else None
    except Exception:  # noqa: BLE001 - a bad target is reported by instantiate, with Hydra's message
        return False
    return isinstance(obj, type) and issubclass(obj, SelectsByName)


def _instantiate(node, what: str, feature_names: Sequence[str] | None = None):
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from hybridwbc.errors import ConfigError

    if node is None:
        raise ConfigError(f"{what} is not set. Expected a node with a _target_; choose one in conf/.")
    extra = {"feature_names": list(feature_names)} if feature_names is not None and _selects_by_name(node) else {}
    try:
        return instantiate(node, _convert_="all", **extra)
    except InstantiationException as exc:
        raise ConfigError(f"Cannot build {what} from the config: {exc}") from exc


def build_featurizer(features_cfg):
    """Instantiate ``features.featurizer``; raises :class:`ConfigError` on a bad node."""
    from hybridwbc.errors import ConfigError
    from hybridwbc.features.base import ImageFeaturizer

    obj = _instantiate(features_cfg.featurizer, "features.featurizer")
    if not isinstance(obj, ImageFeaturizer):
        raise ConfigError(
            f"features.featurizer must build an ImageFeaturizer; received {type(obj).__name__}. "
            "Point its _target_ at a class in hybridwbc.features."
        )
    obj.fit()
    return obj


def build_normaliser(p, segment_cfg, seed: int = 0):
    """The unfitted, validated :class:`~hybridwbc.preprocess.ImageNormaliser` of one ``preprocess`` node."""
    from hybridwbc.preprocess import ImageNormaliser

    norm = ImageNormaliser(method=enum_value(p.method), fit_images=int(p.fit_images), seed=int(seed),
                           io=float(p.io), beta=float(p.beta), alpha=float(p.alpha), rescale=bool(p.rescale),
                           scale=enum_value(p.scale),
                           side=int(p.side), fraction=float(p.fraction), um_per_px=p.um_per_px,
                           target_um_per_px=p.target_um_per_px, segmenter=_instantiate(segment_cfg, "segment"))
    norm.validate()
    return norm


def build_preprocess(cfg):
    """The unfitted :class:`~hybridwbc.preprocess.ImageNormaliser` of ``cfg.preprocess`` (segmenter: ``cfg.segment``),
    checked against the protocol.

    Raises
    ------
    ConfigError
        Invalid settings, or an active normaliser under ``eval.protocol=cv`` (it is fitted once, on the holdout
        training split, before the features).
    """
    from hybridwbc.errors import ConfigError

    norm = build_normaliser(cfg.preprocess, cfg.segment, int(cfg.seed))
    if not norm.active:
        return norm
    if enum_value(cfg.eval.protocol) != "holdout":
        raise ConfigError(
            f"preprocess (method={norm.method}, scale={norm.scale}) needs eval.protocol=holdout; received "
            f"{enum_value(cfg.eval.protocol)!r}. The normaliser is fitted once, on the training split's images, "
            "before the features; under cross-validation every image is some fold's test image. Fix: eval=holdout.")
    return norm


def build_estimator(classifier_cfg, seed: int = 0, feature_names: Sequence[str] | None = None):
    """Instantiate ``classifier.estimator``, wrapped in a grid search when ``classifier.search`` is set.

    Parameters
    ----------
    classifier_cfg : DictConfig
        A ``classifier`` (or ``methods.<name>``) node.
    seed : int
        Seed of the search's inner splits.
    feature_names : sequence of str, optional
        Names of the design matrix's columns (:func:`hybridwbc.features.table.design_names`): passed
        to the column selector of ``classifier.columns``, or else to an estimator that selects
        columns by name (:class:`hybridwbc.models.parts.SelectsByName`, e.g. the cascade).

    The estimator's :meth:`~hybridwbc.models.parts.WBCEstimator.validate` runs here, before any
    training. The search's inner cross-validation is stratified and grouped; it is only ever
    fitted on a training split (see :func:`hybridwbc.evaluate.fit_estimator`).

    Raises
    ------
    ConfigError
        A bad node, invalid settings, not a classifier, or a search grid naming unknown parameters.
    """
    from sklearn.base import is_classifier

    from hybridwbc.errors import ConfigError
    from hybridwbc.models.parts import validate

    columns = classifier_cfg.get("columns") if hasattr(classifier_cfg, "get") else None
    est = _instantiate(classifier_cfg.estimator, "classifier.estimator", None if columns else feature_names)
    validate(est)  # e.g. an unknown backbone or a too-small input size, before any training
    if not is_classifier(est):
        raise ConfigError(
            f"classifier.estimator must be a scikit-learn classifier; received {type(est).__name__}."
        )
    search = classifier_cfg.get("search") if hasattr(classifier_cfg, "get") else classifier_cfg.search
    prefix = ""
    if columns:
        from sklearn.pipeline import Pipeline

        from hybridwbc.models.columns import ColumnPrefixSelector

        selector = ColumnPrefixSelector(prefixes=[str(c) for c in columns],
                                        feature_names=None if feature_names is None else list(feature_names))
        est = Pipeline([("select", selector), ("model", est)])
        prefix = "model__"
    if search and search.get("param_grid"):
        est = _grid_search(est, search, prefix, seed)
    return est


def _grid_search(est, search, prefix: str, seed: int):
    """``est`` in a grouped, stratified :class:`~sklearn.model_selection.GridSearchCV` over ``search.param_grid``."""
    from omegaconf import OmegaConf
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold

    from hybridwbc.errors import ConfigError

    grid = OmegaConf.to_container(search.param_grid, resolve=True) \
        if not isinstance(search.param_grid, dict) else search.param_grid
    grid = {prefix + k: v for k, v in grid.items()}
    params = est.get_params(deep=True)
    bad = [k for k in grid if k not in params]
    if bad:
        raise ConfigError(
            f"classifier.search.param_grid names {bad}, which {type(est).__name__} has no parameter for. "
            f"Expected keys among {sorted(est.get_params())[:12]}..."
        )
    return GridSearchCV(est, grid, scoring=search.scoring, refit=True, n_jobs=1,
                        cv=StratifiedGroupKFold(n_splits=int(search.cv), shuffle=True, random_state=seed))
