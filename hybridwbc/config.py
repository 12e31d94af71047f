"""Dataclass schemas of the config nodes hybridwbc owns, and object builders.

The schemas are registered in Hydra's ConfigStore as ``config_schema`` and
named first in ``conf/config.yaml``'s defaults list, so composition rejects a
misspelled key or a wrong type in any node we own (``data``, ``segment``,
``features``, ``classifier``, ``eval``, ``tracking``, ``paths``) with Hydra's message.
Enumerated choices are :class:`enum.Enum` fields, so an unknown value fails at
composition too. Third-party ``_target_`` nodes (scikit-learn estimators)
are typed ``Any`` and instantiated here, in one place, with ``_convert_="all"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional, Sequence

from omegaconf import MISSING

__all__ = [
    "Layout", "Protocol", "InputKind", "SegmentMode", "SyntheticConfig", "DataConfig", "SegmentConfig",
    "FeaturesConfig", "SearchConfig", "PreprocessMethod", "ScaleMethod", "PreprocessConfig", "build_preprocess",
    "ClassifierConfig", "DomainConfig", "EvalConfig", "TrackingConfig", "PathsConfig", "Config",
    "register_schemas", "build_featurizer", "build_estimator", "enum_value", "config_hash", "code_version", "conf_dir",
    "compose_experiment",
]


class Layout(Enum):
    """On-disk layouts :func:`hybridwbc.data.manifest.scan` reads, plus ``synthetic``."""

    folders = "folders"
    pbc = "pbc"
    all_pbs = "all_pbs"
    cnmc = "cnmc"
    bccd = "bccd"
    csv = "csv"
    synthetic = "synthetic"


class Protocol(Enum):
    """Evaluation protocols: one held-out split, or k-fold cross-validation."""

    holdout = "holdout"
    cv = "cv"


class InputKind(Enum):
    """What a classifier's ``fit``/``predict`` receive as ``X``.

    ``features``: the feature table, ``(n, n_features) float64``.
    ``paths``: image file paths, ``(n, 1) object`` (CNN estimators that read images).
    ``paths_features``: paths in column 0, then the feature table (hybrid estimators).
    """

    features = "features"
    paths = "paths"
    paths_features = "paths_features"


class Background(Enum):
    smear = "smear"
    black = "black"


class SegmentMode(Enum):
    """Segmentation modes (:data:`hybridwbc.segment.MODES`)."""

    auto = "auto"
    crop = "crop"
    cutout = "cutout"
    field = "field"


@dataclass
class SyntheticConfig:
    """The synthetic stand-in used when no real data is found (or ``layout: synthetic``)."""

    classes: list[str] = field(default_factory=lambda: ["lymphocyte", "neutrophil"])
    n_per_class: int = 30
    size: int = 96
    n_subjects: int = 0
    background: Background = Background.smear


@dataclass
class DataConfig:
    name: str = "synthetic"
    layout: Layout = Layout.synthetic
    root: Optional[str] = None
    subdir: Optional[str] = None
    classes: Optional[list[str]] = None
    max_per_class: Optional[int] = None
    relabel: Optional[dict[str, str]] = None
    min_classes: int = 2
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    # for model cards and reports (hybridwbc.report.card, .paper): what the images are, their licence, the citation
    acquisition: Optional[str] = None
    licence: Optional[str] = None
    citation: Optional[str] = None


@dataclass
class SegmentConfig:
    """The ``segment`` group: a :class:`hybridwbc.segment.Segmenter`, referenced by the featurizers as
    ``segmenter: ${segment}``. The values live in ``conf/segment/default.yaml`` (and the Python defaults
    in ``Segmenter``); the schema only fixes names and types."""

    _target_: str = "hybridwbc.segment.Segmenter"
    mode: SegmentMode = MISSING
    n_clusters: int = MISSING
    sample: int = MISSING
    min_contrast: float = MISSING
    min_nucleus_frac: float = MISSING
    max_cell_ratio: float = MISSING
    work_side: int = MISSING
    cytoplasm_method: str = MISSING


class PreprocessMethod(Enum):
    """Colour normalisation (:data:`hybridwbc.preprocess.METHODS`)."""

    none = "none"
    reinhard = "reinhard"
    macenko = "macenko"
    greyworld = "greyworld"


class ScaleMethod(Enum):
    """Scale normalisation (:data:`hybridwbc.preprocess.SCALES`)."""

    none = "none"
    cell = "cell"
    nucleus = "nucleus"
    mpp = "mpp"


@dataclass
class PreprocessConfig:
    """The ``preprocess`` group: an :class:`hybridwbc.preprocess.ImageNormaliser` fitted on the training split's
    images, saved in the model and applied before every featurizer (``conf/preprocess/``)."""

    method: PreprocessMethod = PreprocessMethod.none
    fit_images: int = 200
    io: float = 240.0
    beta: float = 0.15
    alpha: float = 1.0
    rescale: bool = True
    scale: ScaleMethod = ScaleMethod.none
    side: int = 360
    fraction: float = 0.37
    um_per_px: Optional[float] = None
    target_um_per_px: Optional[float] = None


@dataclass
class AugmentConfig:
    """``backbone.augmentation`` (the ``augmentation`` group, ``conf/augmentation/``): the CNN's training
    augmentation, read by :func:`hybridwbc.cnn.augment.augmentation_options`.

    The first seven fields are the amounts of the original augmentation: ``null`` keeps its built-in
    amount (:data:`hybridwbc.cnn.augment.BUILT_IN`), ``0`` turns that op off. The last four are the stain and
    acquisition ops, off by default (``0`` / ``null``). At the defaults training is exactly what it was.
    """

    scale: Optional[float] = None  # zoom in [1 - scale, 1 + scale]
    shift: Optional[float] = None  # centre shift, a fraction of the side
    brightness: Optional[float] = None  # added to [0, 1] intensities, in [-brightness, brightness]
    contrast: Optional[float] = None  # contrast factor in [1 - contrast, 1 + contrast]
    saturation: Optional[float] = None  # saturation factor in [1 - saturation, 1 + saturation]
    hue: Optional[float] = None  # hue shift in [-hue, hue] (a fraction of the hue circle)
    gain: Optional[float] = None  # per-channel RGB gain in [1 - gain, 1 + gain]
    stain: float = 0.0  # optical-density jitter: per-channel OD x [1 - stain, 1 + stain], + [-stain, stain]
    blur_sigma: float = 0.0  # Gaussian blur with sigma drawn in [0, blur_sigma] pixels
    jpeg_quality_min: Optional[int] = None  # JPEG re-encoding at a quality drawn in [min, max]
    jpeg_quality_max: int = 100


@dataclass
class FeaturesConfig:
    name: str = "simple"
    featurizer: Any = None
    n_jobs: int = 2
    cache: bool = True
    overlays: bool = False


@dataclass
class SearchConfig:
    """Inner cross-validated hyperparameter search, run on training data only."""

    param_grid: Any = None
    cv: int = 3
    scoring: str = "balanced_accuracy"


@dataclass
class ClassifierConfig:
    name: str = "svm"
    input: InputKind = InputKind.features
    columns: Optional[list[str]] = None
    estimator: Any = None
    search: Optional[SearchConfig] = None


@dataclass
class DomainConfig:
    """``eval.domain``: the applicability domain fitted with every saved model (:mod:`hybridwbc.models.domain`).

    Fitted on the final model's training rows and saved with it (rows outside it are predicted
    ``out_of_domain``); during evaluation fitted per training split, and the share of held-out
    rows it flags is the metric ``ood_share_test``. The quantile is a principle, not a tuning knob.
    """

    enabled: bool = True
    quantile: float = 0.99
    n_neighbors: int = 5


@dataclass
class ExplainConfig:
    """``eval.explain``: the explanation artifacts of every method (:mod:`hybridwbc.evaluate.explanations`).

    A method holding a trained CNN writes a Grad-CAM gallery of ``gallery_per_class`` correct and as many
    wrong held-out cells per class; a method reading handcrafted features (or a cascade, per stage) writes
    the permutation importance of each feature family on held-out rows, repeated ``importance_repeats`` times.
    """

    enabled: bool = True
    gallery_per_class: int = 2
    importance_repeats: int = 10


@dataclass
class EvalConfig:
    protocol: Protocol = Protocol.holdout
    test_size: float = 0.2
    n_splits: int = 5
    grouped: bool = True
    n_bootstrap: int = 1000
    ci: float = 0.95
    positive_label: Optional[str] = None
    binary_groups: Optional[dict[str, list[str]]] = None
    binary_positive: Optional[str] = None
    n_overlays_per_class: int = 4
    n_error_gallery: int = 16
    subject_level: bool = False
    leaky_reference: bool = False
    domain: DomainConfig = field(default_factory=DomainConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = "sqlite:///${paths.root}/mlflow.db"
    artifact_root: str = "${paths.root}/mlartifacts"
    experiment_name: Optional[str] = None
    run_name: Optional[str] = None
    log_pyfunc: bool = True


@dataclass
class PathsConfig:
    root: str = "${hydra:runtime.cwd}"
    cache_dir: str = "${paths.root}/.cache/hybridwbc"


@dataclass
class Config:
    seed: int = 0
    progress: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    methods: Optional[dict[str, ClassifierConfig]] = None
    backbone: Any = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    #: Caveats a reader of the experiment's result table must see (printed under the table's provenance).
    notes: list[str] = field(default_factory=list)


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
    from hybridwbc.preprocess import ImageNormaliser

    p = cfg.preprocess
    norm = ImageNormaliser(method=enum_value(p.method), fit_images=int(p.fit_images), seed=int(cfg.seed),
                           io=float(p.io), beta=float(p.beta), alpha=float(p.alpha), rescale=bool(p.rescale),
                           scale=enum_value(p.scale),
                           side=int(p.side), fraction=float(p.fraction), um_per_px=p.um_per_px,
                           target_um_per_px=p.target_um_per_px, segmenter=_instantiate(cfg.segment, "segment"))
    norm.validate()
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
