"""Nucleus steps of the segmentation: global colour clustering, clean-up, lobe grouping, granule removal.

Pure functions on ndarrays (steps 2, 3 and the ``cutout`` case of :mod:`hybridwbc.segment`):

* :func:`find_nuclei` clusters the image's Lab colours (:func:`~hybridwbc.segment.colour.kmeans`
  started by :func:`~hybridwbc.segment.colour.stain_init`); the cluster of highest stain score
  is the nucleus, unless it does not exceed the lightest (background) cluster's score by
  ``min_contrast``. Clusters of similar stain join it; an opening, hole filling and a minimum
  area clean it up; a closing groups the lobes of one nucleus.
* :func:`cutout_cell` takes the cell on a black background (C-NMC) as the largest non-black
  object and its nucleus by a 2-means inside it.
* :func:`drop_dark_granules` removes basophil granules that joined a nucleus mask.

Every failure is a :class:`~hybridwbc.errors.NoCellFoundError` (:func:`no_cell`): the image is
reported as skipped, never guessed.
"""

from __future__ import annotations

import cv2
import numpy as np

from hybridwbc.errors import NoCellFoundError
from hybridwbc.segment.colour import assign, kmeans, nearest_is, stain_init, stain_score, stride
from hybridwbc.segment.morphology import as_u8, closing, components, dilate, fill_holes, opening

__all__ = ["no_cell", "cutout_cell", "find_nuclei", "drop_dark_granules"]


def no_cell(reason: str) -> NoCellFoundError:
    """The error for an image without a plausible cell, with ``reason`` in its message."""
    return NoCellFoundError(f"No cell found: {reason}. The image is reported as skipped, not guessed.")


def cutout_cell(rgb, lab, r_img, *, sample, min_contrast, min_nucleus_frac) -> list:
    """The one cell of a cut-out on black (``mode="cutout"``): ``[(nucleus, cytoplasm)]``, (H, W) bool each.

    Raises
    ------
    NoCellFoundError
        No non-black object, one too small, or no stained or plausible nucleus in it.
    """
    h, w = rgb.shape[:2]
    flat = lab.reshape(-1, 3)
    fg = rgb.max(2) >= 30
    fg = fill_holes(opening(fg, r_img))
    n, cc, stats, _ = components(fg)
    if n <= 1:
        raise no_cell("the cut-out holds no non-black object")
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[big, cv2.CC_STAT_AREA] < min_nucleus_frac * h * w:
        raise no_cell("the non-black object is too small to be a cell")
    cell = cc == big
    idx = np.flatnonzero(cell.ravel())
    xs = flat[idx[:: stride(idx.size, sample)]]
    centres, _ = kmeans(xs, 2, init=stain_init(xs, 2))
    s = stain_score(centres)
    nuc_c = int(np.argmax(s))
    if s[nuc_c] < min_contrast:
        raise no_cell("the cut-out object has no stained nucleus")
    lab_in = np.zeros(flat.shape[0], np.int64) - 1
    lab_in[idx] = assign(flat[idx], centres)
    nuc = (lab_in == nuc_c).reshape(h, w)
    if np.sort(s)[-1] - np.sort(s)[0] < 0.5 * min_contrast:
        nuc = cell.copy()  # one homogeneous object: all nucleus (e.g. a blast)
    nuc = fill_holes(opening(nuc, r_img)) & cell
    nuc = drop_dark_granules(lab, nuc, r_img)
    if nuc.sum() < 0.05 * cell.sum():
        raise no_cell("the cut-out object has no plausible nucleus")
    return [(nuc, cell & ~nuc)]


def _large_components(mask: np.ndarray, min_area: float) -> tuple[np.ndarray, np.ndarray]:
    """``mask`` without components smaller than a quarter of ``min_area``, and the kept areas."""
    n, cc, stats, _ = components(mask)
    keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area * 0.25]
    if not keep:
        raise no_cell("no nucleus-coloured region is large enough")
    areas = np.array([stats[i, cv2.CC_STAT_AREA] for i in keep], float)
    return np.isin(cc, keep), areas


def _stained(lab, *, n_clusters, sample, min_contrast) -> tuple[np.ndarray, np.ndarray, int]:
    """Global clustering: the nucleus-coloured pixels (H, W) bool, the Lab centres and the background cluster."""
    h, w = lab.shape[:2]
    flat = lab.reshape(-1, 3)
    step = stride(h * w, sample)
    xs = flat[::step]
    centres, _ = kmeans(xs, n_clusters, init=stain_init(xs, n_clusters))
    s = stain_score(centres)
    nuc_c = int(np.argmax(s))
    bg_c = int(np.argmax(centres[:, 0]))  # lightest cluster
    if s[nuc_c] - s[bg_c] < min_contrast or nuc_c == bg_c:
        raise no_cell("no colour cluster is stained like a nucleus")
    nucleus = nearest_is(lab, centres, nuc_c)
    # a large nucleus may be split in two clusters of similar stain: merge clusters whose
    # score is within the top quarter of the background-to-nucleus range
    for k in range(len(centres)):
        if k != nuc_c and k != bg_c and s[k] >= s[bg_c] + 0.75 * (s[nuc_c] - s[bg_c]):
            nucleus |= nearest_is(lab, centres, k)
    return nucleus, centres, bg_c


def _lobe_groups(nucleus, areas, min_area, mode) -> tuple[np.ndarray, list]:
    """Group the lobes of one nucleus: labels of the closed mask and the groups kept (the central one for crop)."""
    h, w = nucleus.shape
    # group lobes of one nucleus: closing with a radius ~ a third of the typical nucleus radius
    r_typ = float(np.sqrt(areas.max() / np.pi))
    r_group = max(1, int(round(0.35 * r_typ)))
    grouped = closing(nucleus, r_group)
    n, gcc, gstats, gcent = components(grouped)
    groups = [i for i in range(1, n) if (nucleus & (gcc == i)).sum() >= min_area]
    if not groups:
        raise no_cell("no nucleus-coloured region is large enough")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    if mode == "crop":
        d = [(gcent[i][1] - cy) ** 2 + (gcent[i][0] - cx) ** 2 for i in groups]
        groups = [groups[int(np.argmin(d))]]
    return gcc, groups


def find_nuclei(lab, r_img, mode, *, n_clusters, sample, min_contrast, min_nucleus_frac):
    """Nuclei of a crop or a field (steps 2 and 3 of :func:`hybridwbc.segment.segment`).

    Parameters
    ----------
    lab : ndarray of shape (H, W, 3), float32
        :func:`~hybridwbc.segment.colour.rgb_to_lab` of the working image.
    r_img : int
        Radius of the clean-up opening, in pixels.
    mode : {"crop", "field"}

    Returns
    -------
    nuclei : list of ndarray of shape (H, W), bool
        One mask per cell (one for ``crop``).
    all_nuclei : ndarray of shape (H, W), bool
        Every nucleus pixel after granule removal (neighbours' nuclei bound each cytoplasm).
    background : ndarray of shape (3,), float32
        Lab colour of the background cluster.

    Raises
    ------
    NoCellFoundError
        No cluster stained like a nucleus, or no nucleus-coloured region large enough.
    """
    h, w = lab.shape[:2]
    nucleus, centres, bg_c = _stained(lab, n_clusters=n_clusters, sample=sample, min_contrast=min_contrast)
    nucleus = fill_holes(opening(nucleus, r_img))
    frac = min_nucleus_frac * (2.0 if mode == "field" else 1.0)
    min_area = max(12.0, frac * h * w)
    nucleus, areas = _large_components(nucleus, min_area)
    # granules darker than chromatin (basophils) join the nucleus cluster as thin specks:
    # an opening at a tenth of the nucleus radius removes them, not the nucleus
    r_specks = int(round(0.1 * float(np.sqrt(areas.max() / np.pi))))
    if r_specks > r_img:
        opened = opening(nucleus, r_specks)
        if opened.sum() >= min_area:
            nucleus, areas = _large_components(opened, min_area)
    gcc, groups = _lobe_groups(nucleus, areas, min_area, mode)
    nucs = []
    for g in groups:
        nuc = nucleus & (gcc == g)
        core = drop_dark_granules(lab, nuc, r_img)
        nucleus &= ~(nuc & ~core)  # granules dropped from a nucleus may become cytoplasm
        nucs.append(core)
    return nucs, nucleus, centres[bg_c]


def drop_dark_granules(lab, nuc, r_img, min_delta_e=6.0, max_thickness=0.45):
    """Remove dark granules (basophils) that joined a nucleus mask; (H, W) bool.

    The stained pixels of ``nuc`` (lightness at most 15 above its median; the
    rest are filled-in holes) are split by a 2-means in Lab. The split is kept only
    when the two colours differ by at least ``min_delta_e``, the darker part
    lies mostly outside the filled main component of the lighter part, and it
    is thin: its largest inscribed radius is below ``max_thickness`` times the
    lighter part's; the rest of the mask must not ring the lighter part (its
    closed, filled outline covers less than half of it) and must be scattered
    (its largest piece at most 70 % of it). Basophil granules are darker than
    chromatin and scattered as specks a few pixels wide, so they pass;
    chromatin texture (dark and light parts interleaved inside one outline), a
    dark chromatin rim or crescent beside a lighter centre (lymphocytes,
    lymphoblasts) and a second lobe (as thick as the first) do not, and the
    mask is returned unchanged. Returns the filled main component of the
    lighter part, limited to ``nuc``.
    """
    idx = np.flatnonzero(nuc.ravel())
    if idx.size < 64:
        return nuc
    x = lab.reshape(-1, 3)[idx]
    # pixels much lighter than the median are filled-in holes (cytoplasm between granules)
    stained = x[:, 0] <= np.median(x[:, 0]) + 15.0
    if stained.sum() < 64:
        return nuc
    idx, x = idx[stained], x[stained]
    centres, _ = kmeans(x[:: stride(idx.size, 2048)], 2)
    if float(np.sqrt(((centres[0] - centres[1]) ** 2).sum())) < min_delta_e:
        return nuc
    dark = int(np.argmin(centres[:, 0]))
    sub = np.zeros(nuc.size, bool)
    sub[idx] = assign(x, centres) == dark
    dark_m = sub.reshape(nuc.shape)
    light_m = nuc & ~dark_m
    n, cc, stats, _ = components(opening(light_m, r_img))
    if n <= 1:
        return nuc
    core = fill_holes(cc == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])))
    outside = dark_m & ~dilate(core, r_img)
    if outside.sum() < 0.5 * dark_m.sum():
        return nuc
    if (fill_holes(closing(nuc & ~core, r_img)) & core).sum() >= 0.5 * core.sum():
        return nuc  # the rest rings the light part: a dark chromatin rim (lymphocytes), not granules
    n, _, stats, _ = components(nuc & ~dilate(core, r_img))
    areas = stats[1:, cv2.CC_STAT_AREA]
    if n <= 1 or areas.max() > 0.7 * areas.sum():
        return nuc  # one dark piece (a crescent of chromatin), not scattered granules

    def thickness(m):
        return float(cv2.distanceTransform(as_u8(m), cv2.DIST_L2, 5).max())

    if thickness(dark_m) >= max_thickness * thickness(core):
        return nuc
    return core & nuc
