"""White-cell segmentation by colour clustering: nucleus and cytoplasm masks (pure ndarray functions).

``from hybridwbc.segment import segment, Segmenter`` is the public API; the stages live in
:mod:`~hybridwbc.segment.colour` (Lab, stain score, k-means), :mod:`~hybridwbc.segment.nucleus`,
:mod:`~hybridwbc.segment.cytoplasm`, :mod:`~hybridwbc.segment.morphology` and the driver
:mod:`~hybridwbc.segment.segmenter` (whose docstring describes the whole pipeline).
"""

from hybridwbc.segment.colour import as_rgb_uint8, kmeans, rgb_to_lab, stain_score
from hybridwbc.segment.morphology import dice, disk
from hybridwbc.segment.segmenter import MIN_SIDE, MODES, VERSION, CellMasks, Segmentation, Segmenter, segment

__all__ = ["VERSION", "MODES", "MIN_SIDE", "CellMasks", "Segmentation", "Segmenter", "as_rgb_uint8", "rgb_to_lab",
           "stain_score", "kmeans", "disk", "segment", "dice"]
