"""The handcrafted featurizers: segment once, then concatenate the families asked for.

:class:`HandcraftedFeaturizer` segments each image **once**, with the
:class:`~hybridwbc.segment.Segmenter` it is given (the ``segment`` config group), cuts the
primary cell out (:func:`~hybridwbc.features.handcrafted.cell.crop_cell`) and concatenates the
families in ``families``; feature names are ``<family>__<name>``. The single-family classes
(:class:`GeometryFeaturizer`, ...) take the same parameters except ``families``.
"""

from __future__ import annotations

import inspect

import numpy as np

from hybridwbc.errors import ConfigError
from hybridwbc.features.base import ImageFeaturizer
from hybridwbc.features.handcrafted.cell import CellView, crop_cell, tighten
from hybridwbc.features.handcrafted.colour import colour_features, colour_names
from hybridwbc.features.handcrafted.geometry import (
    geometry_features,
    geometry_names,
    size_ratio_features,
    size_ratio_names,
)
from hybridwbc.features.handcrafted.granularity import GRAN_CHANNELS, granularity_features, granularity_names
from hybridwbc.features.handcrafted.texture import texture_features, texture_names
from hybridwbc.segment import VERSION as SEGMENT_VERSION
from hybridwbc.segment import CellMasks, Segmentation, Segmenter

__all__ = ["FAMILIES", "HandcraftedFeaturizer", "GeometryFeaturizer", "ColourFeaturizer", "TextureFeaturizer",
           "SizeRatioFeaturizer", "GranularityFeaturizer", "derived_init"]

#: Feature families, in the order :class:`HandcraftedFeaturizer` concatenates them.
FAMILIES = ("geometry", "colour", "texture", "size_ratio", "granularity")


def _check_params(est) -> None:
    fam = tuple(est.families)
    bad = [f for f in fam if f not in FAMILIES]
    if bad or not fam or len(set(fam)) != len(fam):
        raise ConfigError(
            f"families must be a non-empty tuple of distinct names from {FAMILIES}; received {est.families!r}."
        )
    if not (2 <= int(est.glcm_levels) <= 256):
        raise ConfigError(f"glcm_levels must be in [2, 256]; received {est.glcm_levels!r}.")
    if len(tuple(est.lbp_points)) != len(tuple(est.lbp_radii)):
        raise ConfigError(
            f"lbp_points and lbp_radii must have equal lengths; received {est.lbp_points!r} and {est.lbp_radii!r}."
        )
    if any(int(d) < 1 for d in est.glcm_distances):
        raise ConfigError(f"glcm_distances must be positive integers; received {est.glcm_distances!r}.")
    if int(est.gran_length) < 1 or int(est.gran_element) < 1 or int(est.gran_subsample) < 1:
        raise ConfigError(
            "gran_length, gran_element and gran_subsample must be integers >= 1; received "
            f"{est.gran_length!r}, {est.gran_element!r}, {est.gran_subsample!r}."
        )
    badc = [c for c in est.gran_channels if c not in GRAN_CHANNELS]
    if badc:
        raise ConfigError(f"gran_channels must be drawn from {GRAN_CHANNELS}; received {est.gran_channels!r}.")
    if not (0.0 < float(est.lobe_prominence) < 1.0):
        raise ConfigError(f"lobe_prominence must be in (0, 1); received {est.lobe_prominence!r}.")


class HandcraftedFeaturizer(ImageFeaturizer):
    """Segment once, then concatenate handcrafted feature families.

    Parameters
    ----------
    families : tuple of str, default all of :data:`FAMILIES`
        Families to compute, in this order; names are ``<family>__<feature>``.
    segmenter : Segmenter, default ``Segmenter()``
        How to segment (:class:`hybridwbc.segment.Segmenter`: mode, clustering and size settings); in
        ``field`` mode the cell nearest the centre is described.
    lobe_prominence : float, default 0.2
        Least prominence of a distance-transform maximum, as a fraction of the
        nucleus's largest inscribed radius, for it to count as a lobe.
    glcm_levels : int, default 16
    glcm_distances : tuple of int, default (1, 2, 4)
    lbp_points : tuple of int, default (8, 16)
    lbp_radii : tuple of float, default (1, 2)
    gran_length : int, default 8
        Granular spectrum length (CellProfiler's ``granular_spectrum_length``).
    gran_element : int, default 10
        Radius of the background-removal disk, in subsampled pixels
        (CellProfiler's ``element_size``).
    gran_subsample : int, default 1
        Keep every n-th row and column (CellProfiler's ``subsample_size`` =
        1/n). At PBC's resolution eosinophil granules have a radius of 2-4 px
        and basophil granules slightly more, so the default keeps full
        resolution and spectrum steps 1-8 cover them.
    gran_channels : tuple of str, default ("gray", "g")
        Inverted channels the spectrum is measured on; ``g`` (green absorbance)
        shows the orange-red eosinophil granules, ``gray`` all granules.

    Raises
    ------
    ConfigError
        From ``fit``/``featurize`` when a parameter is invalid.
    NoCellFoundError
        From ``featurize`` when no plausible cell is found.
    """

    version = f"2/segment-{SEGMENT_VERSION}"

    def __init__(self, families=FAMILIES, segmenter: Segmenter = Segmenter(), lobe_prominence=0.2, glcm_levels=16,
                 glcm_distances=(1, 2, 4), lbp_points=(8, 16), lbp_radii=(1, 2), gran_length=8,
                 gran_element=10, gran_subsample=1, gran_channels=("gray", "g")):
        self.families = families
        self.segmenter = segmenter
        self.lobe_prominence = lobe_prominence
        self.glcm_levels = glcm_levels
        self.glcm_distances = glcm_distances
        self.lbp_points = lbp_points
        self.lbp_radii = lbp_radii
        self.gran_length = gran_length
        self.gran_element = gran_element
        self.gran_subsample = gran_subsample
        self.gran_channels = gran_channels

    # -- names
    def _family_names(self, family: str) -> list[str]:
        if family == "geometry":
            return geometry_names(self.lobe_prominence)
        if family == "colour":
            return colour_names()
        if family == "texture":
            return texture_names(tuple(self.glcm_distances), tuple(self.lbp_points), tuple(self.lbp_radii))
        if family == "size_ratio":
            return size_ratio_names()
        return granularity_names(int(self.gran_length), tuple(self.gran_channels))

    def feature_names(self) -> list[str]:
        """``<family>__<feature>`` for each family in ``families``."""
        _check_params(self)
        return [f"{fam}__{n}" for fam in self.families for n in self._family_names(fam)]

    # -- values
    @property
    def mode(self) -> str:
        """The segmentation mode this featurizer uses (its segmenter's)."""
        return self.segmenter.mode

    def segment(self, image) -> Segmentation:
        """Segment an image with this featurizer's :class:`~hybridwbc.segment.Segmenter`."""
        return self.segmenter.segment(image)

    def margin(self) -> int:
        """Crop margin that makes every family equal to its full-image value."""
        m = self.tight_margin()
        if "granularity" in self.families:
            m = max(m, (2 * int(self.gran_element) + 2) * int(self.gran_subsample))
        return m

    def view(self, image, cell: CellMasks) -> CellView:
        """The :class:`CellView` of one segmented cell, cropped with :meth:`margin`."""
        align = int(self.gran_subsample) if "granularity" in self.families else 1
        return crop_cell(image, cell, self.margin(), align)

    def tight_margin(self) -> int:
        """Margin of the tight crop used by geometry, colour and texture (LBP needs ``R + 2``)."""
        return max([int(np.ceil(r)) + 2 for r in self.lbp_radii] + [2])

    def features_of(self, view: CellView) -> np.ndarray:
        """Concatenated family features of one :class:`CellView`; shape (n_features,), float64."""
        out = []
        full = view
        view = tighten(full, self.tight_margin())
        for fam in self.families:
            if fam == "geometry":
                out.append(geometry_features(view, float(self.lobe_prominence)))
            elif fam == "colour":
                out.append(colour_features(view))
            elif fam == "texture":
                out.append(texture_features(view, int(self.glcm_levels), tuple(int(d) for d in self.glcm_distances),
                                            tuple(int(p) for p in self.lbp_points), tuple(self.lbp_radii)))
            elif fam == "size_ratio":
                out.append(size_ratio_features(view))
            else:
                out.append(granularity_features(full, int(self.gran_length), int(self.gran_element),
                                                int(self.gran_subsample), tuple(self.gran_channels)))
        # No clean-up here: each family defines its degenerate cases at the source (empty region, constant
        # values, zero area: see the family modules), so a non-finite value is a bug, which
        # hybridwbc.features.table rejects, counts and reports by feature name.
        return np.concatenate(out).astype(np.float64)

    def featurize(self, image) -> np.ndarray:
        """Features of the primary cell of one image.

        Parameters
        ----------
        image : ndarray of shape (H, W[, C])
            RGB uint8 (other layouts are normalised by
            :func:`hybridwbc.segment.as_rgb_uint8`).

        Returns
        -------
        ndarray of shape (n_features,), float64
            Finite by construction: degenerate cells (empty cytoplasm, a constant region, a one-pixel
            nucleus) get the values their family documents. Nothing masks a non-finite value; a
            batch (:func:`hybridwbc.features.table.featurize_paths`) reports one as an error row.

        Raises
        ------
        NoCellFoundError
            When segmentation finds no plausible cell.
        """
        _check_params(self)
        seg = self.segment(image)
        return self.features_of(self.view(seg.image, seg.primary))


def derived_init(base, *, fixed: dict | None = None, extra: dict | None = None):
    """An ``__init__`` with the keyword parameters of ``base.__init__`` less ``fixed`` plus ``extra``.

    ``fixed`` (name -> value) is passed to ``base.__init__`` and is no parameter of the new class;
    ``extra`` (name -> default) are new parameters stored as attributes. The signature is explicit
    (``__signature__``), so scikit-learn's ``get_params`` and ``clone`` see exactly these parameters,
    and the defaults stay written once, in ``base``.
    """
    fixed, extra = dict(fixed or {}), dict(extra or {})
    sig = inspect.signature(base.__init__)
    params = [p for p in sig.parameters.values() if p.name not in fixed]
    params += [inspect.Parameter(k, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=v) for k, v in extra.items()]

    def __init__(self, *args, **kwargs):
        bound = inspect.Signature(params).bind(self, *args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        values.pop("self")
        for k in extra:
            setattr(self, k, values.pop(k))
        base.__init__(self, **fixed, **values)

    __init__.__signature__ = inspect.Signature(params)
    return __init__


def _family_class(name: str, family: str, doc: str):
    init = derived_init(HandcraftedFeaturizer, fixed={"families": (family,)})
    return type(name, (HandcraftedFeaturizer,), {"__init__": init, "__doc__": doc, "__module__": __name__})


GeometryFeaturizer = _family_class(
    "GeometryFeaturizer", "geometry",
    "Geometric features only (``families=('geometry',)``); parameters as :class:`HandcraftedFeaturizer`.")
ColourFeaturizer = _family_class(
    "ColourFeaturizer", "colour",
    "Colour statistics only (``families=('colour',)``); parameters as :class:`HandcraftedFeaturizer`.")
TextureFeaturizer = _family_class(
    "TextureFeaturizer", "texture",
    "GLCM and LBP texture only (``families=('texture',)``); parameters as :class:`HandcraftedFeaturizer`.")
SizeRatioFeaturizer = _family_class(
    "SizeRatioFeaturizer", "size_ratio",
    "Nucleus/cytoplasm and nucleus/cell area ratios (``families=('size_ratio',)``).")
GranularityFeaturizer = _family_class(
    "GranularityFeaturizer", "granularity",
    "Granular spectra only (``families=('granularity',)``); parameters as :class:`HandcraftedFeaturizer`.")
