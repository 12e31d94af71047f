"""Segmentation overlays: nucleus and cytoplasm outlines drawn on the image.

:func:`draw_overlay` returns an array (no plotting library needed);
:func:`overlay_grid` saves a PNG grid of overlays with matplotlib's Agg
backend, imported only when called.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional

import cv2
import numpy as np

from hybridwbc.data.atomic import atomic_path
from hybridwbc.segment.colour import as_rgb_uint8

__all__ = ["NUCLEUS_COLOUR", "CYTOPLASM_COLOUR", "draw_overlay", "overlay_grid", "heatmap_overlay", "mass_share",
           "primary_masks"]

#: Outline colour of the nucleus (RGB): yellow.
NUCLEUS_COLOUR = (255, 230, 0)
#: Outline colour of the whole cell / cytoplasm (RGB): green.
CYTOPLASM_COLOUR = (0, 200, 60)


def _outline(mask: np.ndarray, thickness: int) -> np.ndarray:
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * thickness + 1, 2 * thickness + 1))
    return (m > 0) & (cv2.erode(m, k, borderType=cv2.BORDER_REPLICATE) == 0)


def draw_overlay(
    image: np.ndarray,
    nucleus: Optional[np.ndarray],
    cytoplasm: Optional[np.ndarray],
    thickness: Optional[int] = None,
) -> np.ndarray:
    """Draw the outlines of the nucleus and of the whole cell on an image.

    Parameters
    ----------
    image : ndarray of shape (H, W[, C])
        Anything :func:`hybridwbc.segment.as_rgb_uint8` accepts.
    nucleus, cytoplasm : ndarray of shape (H, W), bool, or None
        Masks; the cell outline is drawn around ``nucleus | cytoplasm``.
    thickness : int, optional
        Outline width in pixels; default ``max(1, min(H, W) // 150)``.

    Returns
    -------
    overlay : ndarray of shape (H, W, 3), dtype uint8
        A copy of the image with the cell outline in green and the nucleus
        outline in yellow.
    """
    out = as_rgb_uint8(image).copy()
    h, w = out.shape[:2]
    t = thickness if thickness is not None else max(1, min(h, w) // 150)
    nuc = np.zeros((h, w), bool) if nucleus is None else np.asarray(nucleus, bool)
    cyt = np.zeros((h, w), bool) if cytoplasm is None else np.asarray(cytoplasm, bool)
    if nuc.shape != (h, w) or cyt.shape != (h, w):
        raise ValueError(
            f"Masks must match the image's {h}x{w} pixels; received nucleus {nuc.shape} and "
            f"cytoplasm {cyt.shape}."
        )
    out[_outline(nuc | cyt, t)] = CYTOPLASM_COLOUR
    out[_outline(nuc, t)] = NUCLEUS_COLOUR
    return out


def heatmap_overlay(
    image: np.ndarray,
    heat: np.ndarray,
    nucleus: Optional[np.ndarray] = None,
    cytoplasm: Optional[np.ndarray] = None,
    alpha: float = 0.45,
) -> np.ndarray:
    """A heat map (jet colours) blended over an image, with the segmentation outlines on top.

    Parameters
    ----------
    image : ndarray of shape (H, W[, C])
    heat : ndarray of shape (H, W), float in [0, 1]
        E.g. a Grad-CAM map (:func:`hybridwbc.cnn.explain.explain_images`); values outside are clipped.
    nucleus, cytoplasm : ndarray of shape (H, W), bool, or None
        Drawn as in :func:`draw_overlay` (None: no outline, e.g. no cell found).
    alpha : float, default 0.45
        Weight of the heat colours: ``out = (1 - alpha * heat) * image + alpha * heat * colour``, so
        where the map is 0 the image shows unchanged.

    Returns
    -------
    ndarray of shape (H, W, 3), dtype uint8

    Raises
    ------
    ValueError
        If the heat map's shape is not the image's.
    """
    rgb = as_rgb_uint8(image)
    h, w = rgb.shape[:2]
    heat = np.clip(np.nan_to_num(np.asarray(heat, np.float64)), 0.0, 1.0)
    if heat.shape != (h, w):
        raise ValueError(f"The heat map must match the image's {h}x{w} pixels; received {heat.shape}.")
    colour = cv2.applyColorMap(np.rint(heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    a = (float(alpha) * heat)[..., None]
    blended = np.rint((1.0 - a) * rgb + a * colour).clip(0, 255).astype(np.uint8)
    return draw_overlay(blended, nucleus, cytoplasm)


def mass_share(heat: np.ndarray, region: np.ndarray) -> float:
    """Share of a heat map's mass inside a region: ``sum(heat[region]) / sum(heat)`` (NaN for an all-zero map).

    Parameters
    ----------
    heat : ndarray of shape (H, W), float, non-negative
    region : ndarray of shape (H, W), bool

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    heat, region = np.asarray(heat, np.float64), np.asarray(region, bool)
    if heat.shape != region.shape:
        raise ValueError(f"Heat map {heat.shape} and region {region.shape} must have the same shape.")
    total = heat.sum()
    return float(heat[region].sum() / total) if total > 0 else float("nan")


def primary_masks(segment, image) -> tuple:
    """``(nucleus, cytoplasm)`` masks of the primary cell ``segment(image)`` finds, or ``(None, None)`` where
    there is no segmenter (``segment`` None) or no cell was found (a :class:`~hybridwbc.errors.HybridWBCError`)."""
    from hybridwbc.errors import HybridWBCError

    if segment is None:
        return None, None
    try:
        cell = segment(image).primary
    except HybridWBCError:
        return None, None
    return cell.nucleus, cell.cytoplasm


def overlay_grid(
    items: Iterable,
    path: str | os.PathLike,
    ncols: int = 6,
    tile: float = 2.0,
    title: Optional[str] = None,
) -> str:
    """Save a PNG grid of overlays.

    Parameters
    ----------
    items : iterable of tuple
        ``(image, nucleus, cytoplasm, caption)`` per tile (masks may be None
        when the cell was not found; the caption then says so). Typically a
        few cells per class, captioned with the class.
    path : path-like
        Output PNG; parent folders are created; written atomically.
    ncols : int, default 6
    tile : float, default 2.0
        Size of one tile in inches.
    title : str, optional

    Returns
    -------
    path : str
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    items = list(items)
    n = max(1, len(items))
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig = Figure(figsize=(tile * ncols, tile * nrows + (0.4 if title else 0)))
    for k, item in enumerate(items):
        image, nuc, cyt = item[0], item[1], item[2]
        caption = str(item[3]) if len(item) > 3 else ""
        ax = fig.add_subplot(nrows, ncols, k + 1)
        ax.imshow(draw_overlay(image, nuc, cyt))
        ax.set_title(caption, fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    return path


def manifest_overlays(featurizer, manifest, path, n_per_class: int = 4, seed: int = 0) -> Optional[str]:
    """Save a grid of segmentation overlays for a seeded sample of each class.

    Parameters
    ----------
    featurizer : object with a ``segment(image)`` method
        E.g. :class:`~hybridwbc.features.handcrafted.HandcraftedFeaturizer`.
    manifest : DataFrame with ``path`` and ``label`` columns
    path : path-like
        Output PNG.
    n_per_class : int, default 4
    seed : int, default 0

    Returns
    -------
    str or None
        ``path``, or ``None`` when the featurizer cannot segment or the sample is empty.
        Images that cannot be read or hold no cell appear with the reason as caption.
    """
    from hybridwbc.data.io import read_image
    from hybridwbc.errors import HybridWBCError

    if not hasattr(featurizer, "segment") or n_per_class <= 0 or manifest.empty:
        return None
    sample = manifest.sample(frac=1.0, random_state=seed).groupby("label", sort=True).head(n_per_class)
    sample = sample.sort_values("label", kind="stable")
    items = []
    for p, label in zip(sample["path"], sample["label"]):
        try:
            image = read_image(p)
        except HybridWBCError:
            items.append((np.full((32, 32, 3), 255, np.uint8), None, None, f"{label}: unreadable"))
            continue
        try:
            seg = featurizer.segment(image)  # of the normalised image where a preprocess is fitted
            shown = image if seg.image is None else seg.image
            items.append((shown, seg.primary.nucleus, seg.primary.cytoplasm, str(label)))
        except HybridWBCError:
            items.append((image, None, None, f"{label}: no cell found"))
    overlay_grid(items, path, ncols=max(1, n_per_class), title="segmentation: nucleus (yellow), cell (green)")
    return str(path)
