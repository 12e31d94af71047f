"""A first, simple feature set: colour statistics and the shape of a threshold mask.

This is the quick baseline the richer handcrafted features
(:mod:`hybridwbc.features.handcrafted`) are compared against. The stained
region is found by Otsu's threshold on a "stain" channel, ``255 - G`` (the
Giemsa-stained nucleus absorbs green most), and the connected component
nearest the image centre is kept.
"""

from __future__ import annotations

import numpy as np

from hybridwbc.errors import NoCellFoundError
from hybridwbc.features.base import ImageFeaturizer

__all__ = ["threshold_mask", "ColourShapeFeaturizer"]


def threshold_mask(image: np.ndarray, min_area_fraction: float = 0.002) -> np.ndarray:
    """Mask of the stained object nearest the centre.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), dtype uint8
    min_area_fraction : float, default 0.002
        Components smaller than this share of the image are ignored.

    Returns
    -------
    mask : ndarray of shape (H, W), dtype bool

    Raises
    ------
    NoCellFoundError
        If the image is blank or no component is large enough.
    """
    import cv2

    stain = (255 - image[..., 1]).astype(np.uint8)
    stain = cv2.GaussianBlur(stain, (5, 5), 0)
    if int(stain.max()) - int(stain.min()) < 10:
        raise NoCellFoundError("No cell found: the image is blank (no stain contrast).")
    _, binary = cv2.threshold(stain, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # On black backgrounds (C-NMC) everything non-black is "stained"; on light
    # backgrounds only the stained cell is. Either way take the central blob.
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    h, w = binary.shape
    best, best_d = 0, np.inf
    for k in range(1, n):
        if stats[k, cv2.CC_STAT_AREA] < min_area_fraction * h * w:
            continue
        d = np.hypot(centroids[k, 0] - w / 2, centroids[k, 1] - h / 2)
        if d < best_d:
            best, best_d = k, d
    if best == 0:
        raise NoCellFoundError("No cell found: no stained component is large enough.")
    return labels == best


class ColourShapeFeaturizer(ImageFeaturizer):
    """Colour statistics and mask shape, the first feature set.

    Features (per channel ``c`` of RGB and HSV, over the mask ``M`` and the
    whole image ``I``): ``mean_c = mean(c[M])``, ``std_c = std(c[M])``, and the
    same over ``I``. Shape of ``M``: ``area_fraction = |M| / (H W)``,
    ``circularity = 4 pi area / perimeter^2``, ``eccentricity`` and
    ``solidity = area / convex area`` (scikit-image ``regionprops``).

    Parameters
    ----------
    min_area_fraction : float, default 0.002
        Passed to :func:`threshold_mask`.
    """

    def __init__(self, min_area_fraction: float = 0.002):
        self.min_area_fraction = min_area_fraction

    _CHANNELS = ("r", "g", "b", "h", "s", "v")

    def feature_names(self) -> list[str]:
        names = []
        for region in ("mask", "image"):
            for stat in ("mean", "std"):
                names += [f"{region}_{stat}_{c}" for c in self._CHANNELS]
        return names + ["area_fraction", "circularity", "eccentricity", "solidity"]

    def featurize(self, image: np.ndarray) -> np.ndarray:
        import cv2
        from skimage.measure import regionprops

        mask = threshold_mask(image, self.min_area_fraction)
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)
        stack = np.concatenate([image, hsv], axis=2).astype(np.float64)
        out = []
        for region in (mask, np.ones_like(mask)):
            px = stack[region]
            out += list(px.mean(axis=0)) + list(px.std(axis=0))
        props = regionprops(mask.astype(np.uint8))[0]
        perimeter = max(props.perimeter, 1.0)
        out += [mask.mean(), 4 * np.pi * props.area / perimeter ** 2, props.eccentricity, props.solidity]
        return np.asarray(out, dtype=np.float64)
