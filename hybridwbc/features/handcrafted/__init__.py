"""Handcrafted white-cell features: geometry, colour, texture, size ratio, granularity.

Every family is a pure function of a :class:`CellView` (the cell's bounding
box, with a margin, cut from the image and its masks), one module per family,
each documenting its formulas: :mod:`~hybridwbc.features.handcrafted.geometry`
(geometry and size ratio), :mod:`~hybridwbc.features.handcrafted.colour`,
:mod:`~hybridwbc.features.handcrafted.texture` and
:mod:`~hybridwbc.features.handcrafted.granularity`.
:class:`HandcraftedFeaturizer` (:mod:`~hybridwbc.features.handcrafted.featurizer`)
segments each image **once** (:class:`hybridwbc.segment.Segmenter`) and
concatenates the families it is asked for, as an
:class:`~hybridwbc.features.base.ImageFeaturizer` (a scikit-learn transformer
with ``get_feature_names_out``); feature names are ``<family>__<name>``.

Conventions
-----------
Masks: ``N`` nucleus, ``C`` cytoplasm (cell minus nucleus), ``W = N | C`` whole
cell. ``|M|`` is a pixel count. Grey level ``g`` is OpenCV's
``round(0.299 R + 0.587 G + 0.114 B)`` (uint8). Every value is finite: a
quantity undefined on an empty or constant region is 0 (stated per feature).
"""

from hybridwbc.features.handcrafted.cell import CellView, crop_cell, tighten
from hybridwbc.features.handcrafted.colour import (
                                                   COLOUR_CHANNELS,
                                                   COLOUR_STATS,
                                                   REGIONS,
                                                   colour_features,
                                                   colour_names,
                                                   colour_planes,
                                                   moments4,
)
from hybridwbc.features.handcrafted.featurizer import (
                                                   FAMILIES,
                                                   ColourFeaturizer,
                                                   GeometryFeaturizer,
                                                   GranularityFeaturizer,
                                                   HandcraftedFeaturizer,
                                                   SizeRatioFeaturizer,
                                                   TextureFeaturizer,
                                                   derived_init,
)
from hybridwbc.features.handcrafted.geometry import (
                                                   GEOM_PROPS,
                                                   count_lobes,
                                                   geometry_features,
                                                   geometry_names,
                                                   lobe_peaks,
                                                   perimeter,
                                                   size_ratio_features,
                                                   size_ratio_names,
)
from hybridwbc.features.handcrafted.granularity import (
                                                   GRAN_CHANNELS,
                                                   cellprofiler_object_spectrum,
                                                   granular_spectrum,
                                                   granular_tophat,
                                                   granularity_features,
                                                   granularity_names,
                                                   inverted_channel,
)
from hybridwbc.features.handcrafted.texture import (
                                                   GLCM_ANGLES,
                                                   GLCM_PROPS,
                                                   glcm_features,
                                                   glcm_masked,
                                                   glcm_offset,
                                                   glcm_props,
                                                   glcm_stack,
                                                   lbp_histogram,
                                                   texture_features,
                                                   texture_names,
)
from hybridwbc.segment.morphology import reconstruct_by_dilation

__all__ = [
    "FAMILIES", "CellView", "crop_cell", "tighten",
    "GEOM_PROPS", "geometry_features", "geometry_names", "perimeter", "lobe_peaks", "count_lobes",
    "size_ratio_features", "size_ratio_names",
    "COLOUR_CHANNELS", "COLOUR_STATS", "REGIONS", "colour_features", "colour_names", "colour_planes", "moments4",
    "GLCM_PROPS", "GLCM_ANGLES", "texture_features", "texture_names", "glcm_offset", "glcm_masked", "glcm_props",
    "glcm_stack", "glcm_features",
    "lbp_histogram",
    "GRAN_CHANNELS", "granularity_features", "granularity_names", "granular_spectrum", "inverted_channel",
    "granular_tophat", "cellprofiler_object_spectrum",
    "reconstruct_by_dilation",
    "HandcraftedFeaturizer", "GeometryFeaturizer", "ColourFeaturizer", "TextureFeaturizer", "SizeRatioFeaturizer",
    "GranularityFeaturizer", "derived_init",
]
