"""Cytoplasm step of the segmentation: a local clustering around each nucleus (step 4 of :mod:`hybridwbc.segment`).

Around each nucleus a 3-means runs on the non-nucleus pixels of a window bounded by
``max_cell_ratio`` times the nucleus radius. The cluster that dominates a thin ring just outside
the nucleus is the cytoplasm, unless it is the background. Cytoplasm pixels connected to the
nucleus, after an opening (which cuts touching red cells) and hole filling, form the cell; a
second non-background colour (granules) that lies mostly inside the cell's convex hull joins it.
"""

from __future__ import annotations

import numpy as np

from hybridwbc.segment.colour import assign, kmeans, stride
from hybridwbc.segment.morphology import closing, components, dilate, fill_holes, hull, opening

__all__ = ["find_cytoplasm"]


def _grow(cand, win_nuc, r_open) -> np.ndarray:
    """The component of the opened, filled candidates that holds most of the nucleus; (h, w) bool."""
    opened = opening(fill_holes(cand), r_open) | win_nuc
    n, cc, stats, _ = components(opened)
    hit = np.bincount(cc[win_nuc], minlength=n)
    hit[0] = 0
    return cc == int(np.argmax(hit))


def _with_granules(cell, cand, win_nuc, lab_w, centres, cyt_c, bg_colour, r_open) -> np.ndarray:
    """Regrow ``cell`` with the granule colours inside its hull (at most 3 times); (h, w) bool."""
    # a second cytoplasm colour (granules) lies mostly inside the cell's convex hull; red
    # cells mostly outside. Granules cut the cytoplasm into strips that the opening drops,
    # so the cell regrows (at most 3 times) while the hull takes in more granules.
    for _ in range(3):
        near = dilate(hull(cell), r_open)
        extra = np.zeros_like(cand)
        for k in range(3):
            if k == cyt_c or np.sqrt(((centres[k] - bg_colour) ** 2).sum()) < 6.0:
                continue
            mk = lab_w == k
            if mk.any() and (mk & near).sum() >= 0.5 * mk.sum():
                extra |= mk & near
        if not extra.any():
            break
        grown = _grow(cand | extra, win_nuc, r_open)
        if grown.sum() <= cell.sum():
            break
        cell = grown
    return cell


def find_cytoplasm(lab, nuc, all_nuclei, bg_colour, sample, max_cell_ratio, r_img):
    """Cytoplasm of the cell whose nucleus is ``nuc``; (H, W) bool, disjoint from ``nuc``.

    Parameters
    ----------
    lab : ndarray of shape (H, W, 3), float32
    nuc, all_nuclei : ndarray of shape (H, W), bool
        This cell's nucleus, and every nucleus (which the cytoplasm never takes).
    bg_colour : ndarray of shape (3,)
        Lab colour of the background cluster.
    sample : int
        The local k-means runs on at most ``sample // 2`` pixels.
    max_cell_ratio : float
    r_img : int
    """
    h, w = nuc.shape
    rows = np.flatnonzero(nuc.any(1))
    cols = np.flatnonzero(nuc.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    rn = 0.5 * max(r1 - r0, c1 - c0)
    rn_area = float(np.sqrt(nuc.sum() / np.pi))
    rad = max(rn, rn_area) * max_cell_ratio
    yc, xc = 0.5 * (r0 + r1 - 1), 0.5 * (c0 + c1 - 1)
    m = int(np.ceil(rad - 0.5 * min(r1 - r0, c1 - c0))) + 2
    wr0, wr1, wc0, wc1 = max(0, r0 - m), min(h, r1 + m), max(0, c0 - m), min(w, c1 + m)
    win_lab = lab[wr0:wr1, wc0:wc1]
    win_nuc = nuc[wr0:wr1, wc0:wc1]
    other = ~all_nuclei[wr0:wr1, wc0:wc1]
    yy, xx = np.ogrid[wr0:wr1, wc0:wc1]
    inside = ((yy - yc) ** 2 + (xx - xc) ** 2) <= rad * rad
    cand_px = other & inside
    idx = np.flatnonzero(cand_px.ravel())
    if idx.size < 16:
        return np.zeros_like(nuc)
    wflat = win_lab.reshape(-1, 3)
    centres, _ = kmeans(wflat[idx[:: stride(idx.size, sample // 2)]], 3)
    lab_w = np.full(wflat.shape[0], -1, np.int64)
    lab_w[idx] = assign(wflat[idx], centres)
    lab_w = lab_w.reshape(win_nuc.shape)
    ring_r = max(2, int(round(0.12 * rn_area)))
    ring = dilate(win_nuc, ring_r) & ~win_nuc & cand_px
    votes = np.bincount(lab_w[ring], minlength=3) if ring.any() else np.zeros(3, int)
    if votes.sum() == 0:
        return np.zeros_like(nuc)
    cyt_c = int(np.argmax(votes))
    # background-like cluster: as light as the global background and close in colour
    dist_bg = float(np.sqrt(((centres[cyt_c] - bg_colour) ** 2).sum()))
    if dist_bg < 6.0:
        cand = win_nuc.copy()
    else:
        cand = (lab_w == cyt_c) | win_nuc
        # granules and cytoplasm can share the ring (basophils, eosinophils): a second
        # non-background cluster holding at least a third of the ring votes joins the cell
        for k in range(3):
            far = np.sqrt(((centres[k] - bg_colour) ** 2).sum()) >= 6.0
            if k != cyt_c and far and votes[k] >= votes.sum() / 3.0:
                cand |= lab_w == k
    r_open = max(r_img, int(round(0.18 * rn_area)))
    cell = _grow(cand, win_nuc, r_open)
    if dist_bg >= 6.0:
        cell = _with_granules(cell, cand, win_nuc, lab_w, centres, cyt_c, bg_colour, r_open)
    cell = fill_holes(closing(cell, r_img) & inside) | win_nuc
    out = np.zeros_like(nuc)
    out[wr0:wr1, wc0:wc1] = cell & ~win_nuc
    return out
