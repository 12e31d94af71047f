"""Dataclass schemas of the config nodes hybridwbc owns (``data``, ``segment``, ``preprocess``, ``features``,
``classifier``, ``eval``, ``tracking``, ``paths``, ``backbone.augmentation``) and their enumerated choices.

:func:`hybridwbc.config.register_schemas` stores them in Hydra's ConfigStore, so composition rejects a
misspelled key, a wrong type or an unknown enum value in any node we own, with Hydra's message. The
builders that turn composed nodes into objects are in :mod:`hybridwbc.config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from omegaconf import MISSING

__all__ = [
    "PretrainConfig",
    "ShiftConfig",
    "Layout",
    "Protocol",
    "InputKind",
    "Background",
    "SegmentMode",
    "SyntheticConfig",
    "DataConfig",
    "SegmentConfig",
    "PreprocessMethod",
    "ScaleMethod",
    "PreprocessConfig",
    "AugmentConfig",
    "FeaturesConfig",
    "SearchConfig",
    "ClassifierConfig",
    "DomainConfig",
    "ExplainConfig",
    "EvalConfig",
    "TrackingConfig",
    "PathsConfig",
    "Config",
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
class PretrainConfig:
    """``+experiment=pretrain``: where the backbone weights go (:mod:`hybridwbc.cnn.pretrain`)."""

    output_dir: str = "${paths.root}/pretrained"
    name: str = "pbc8_${backbone.backbone}${backbone.input_size}"
    allow_synthetic: bool = False


@dataclass
class ShiftConfig:
    """``+experiment=domain_shift`` (:mod:`hybridwbc.evaluate.shift`): the target lab's cells and the arms."""

    target: str = "bccd"
    cell_side: int = 360
    min_iou: float = 0.3
    pool_fraction: float = 0.5
    shots: list[int] = field(default_factory=lambda: [0, 5, 10, 20])
    draws: int = 3
    target_repeat: int = 10
    preprocess: dict[str, PreprocessConfig] = field(default_factory=dict)
    backbones: dict[str, str] = field(default_factory=dict)
    heads: dict[str, Any] = field(default_factory=dict)
    representations: list[str] = field(default_factory=lambda: ["handcrafted", "cnn", "hybrid"])


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
    #: Set by ``+experiment=pretrain``: train the backbone on every image and export its weights.
    pretrain: Optional[PretrainConfig] = None
    #: Set by ``+experiment=domain_shift``: train on ``data``, score on another lab's cells.
    shift: Optional[ShiftConfig] = None
    #: Caveats a reader of the experiment's result table must see (printed under the table's provenance).
    notes: list[str] = field(default_factory=list)
