"""Image normalisation before features and CNNs: colour (Reinhard, Macenko for MGG/Wright stains, grey
world) and scale (measured cell or nucleus diameter, or micrometres per pixel).

Pixel stages are pure functions in :mod:`~hybridwbc.preprocess.colour` and :mod:`~hybridwbc.preprocess.scale`;
:class:`ImageNormaliser` is the fitted scikit-learn transformer (reference learnt on training images only)
that the ``preprocess`` config group builds and the model folder saves.
"""

from hybridwbc.preprocess.normaliser import METHODS, SCALES, ImageNormaliser

__all__ = ["ImageNormaliser", "METHODS", "SCALES"]
