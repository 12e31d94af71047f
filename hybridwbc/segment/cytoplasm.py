"""Cytoplasm step of the segmentation: a local clustering around each nucleus (step 4 of :mod:`hybridwbc.segment`).

Around each nucleus a 3-means runs on the non-nucleus pixels of a window bounded by
``max_cell_ratio`` times the nucleus radius. The cluster that dominates a thin ring just outside
the nucleus is the cytoplasm, unless it is the background. Cytoplasm pixels connected to the
nucleus, after an opening (which cuts touching red cells) and hole filling, form the cell; a
second non-background colour (granules) that lies mostly inside the cell's convex hull joins it.

That cell can take in red cells that touch it through a neck (real smears: red cells crowd round
the white cell and share its colour cluster). :func:`split_touching` (``cytoplasm_method="split"``)
cuts them off by a watershed of the cell's distance transform: every disc-like part has its own
maximum, and the parts that hold (almost) none of the nucleus leave the cell.

Red cells that touch the white cell along a broad contact have no neck, and pale cytoplasm close
to the background colour falls outside the cluster. :func:`colour_model` (``cytoplasm_method="colour"``)
learns the image's own colours instead: one Gaussian in Lab per class, fitted on pseudo-labels
(cytoplasm: the clustered cell's pixels just outside the nucleus; red cells: pixels far from the
nucleus that are neither nucleus nor background; background: pixels of the background colour),
and the cell is the component of the pixels most likely cytoplasm that holds the nucleus.
"""

from __future__ import annotations

import cv2
import numpy as np

from hybridwbc.segment.colour import assign, kmeans, stride
from hybridwbc.segment.morphology import (
    as_u8,
    closing,
    components,
    dilate,
    fill_holes,
    hull,
    opening,
    reconstruct_by_dilation,
)

__all__ = ["CYTOPLASM_METHODS", "colour_model", "find_cytoplasm", "split_touching"]

#: Accepted values of ``cytoplasm_method``: the local clustering alone, followed by :func:`split_touching`,
#: or followed by :func:`colour_model` (by :func:`split_touching` where the model does not apply).
CYTOPLASM_METHODS = ("cluster", "split", "colour")


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


def split_touching(cell, nuc, h=0.1, share=0.05) -> np.ndarray:
    """``cell`` without the disc-like parts joined to it by a neck (touching red cells); (H, W) bool.

    The distance transform of ``cell``, in units of the nucleus radius ``r = sqrt(|nuc| / pi)``
    and quantised to 0.01 r, has one regional maximum per disc-like part; its h-maxima (maxima of
    dynamic at least ``h`` r, by greyscale reconstruction) seed a watershed of the negated
    transform inside ``cell``, so the parts meet along the necks. A part stays when the nucleus
    covers at least ``share`` of it or it holds half the nucleus; the kept parts' component that
    holds the nucleus, with holes filled, is returned (always a superset of ``nuc``).

    Parameters
    ----------
    cell, nuc : ndarray of shape (H, W), bool
        The cell (a superset of ``nuc``) and its nucleus.
    h : float, default 0.1
        Least depth of a neck, in nucleus radii.
    share : float, default 0.05
        Least share of a part the nucleus covers for the part to stay.
    """
    from skimage.segmentation import watershed  # noqa: PLC0415 - only this method needs it

    rows = np.flatnonzero(cell.any(1))
    cols = np.flatnonzero(cell.any(0))
    r0, r1, c0, c1 = max(0, rows[0] - 1), rows[-1] + 2, max(0, cols[0] - 1), cols[-1] + 2
    win, win_nuc = cell[r0:r1, c0:c1], nuc[r0:r1, c0:c1]
    rn = max(1.0, float(np.sqrt(win_nuc.sum() / np.pi)))
    dist = cv2.distanceTransform(as_u8(win), cv2.DIST_L2, 5) / rn
    f = np.clip(np.rint(100.0 * dist), 0, 255).astype(np.uint8)
    depth = int(round(100.0 * h))
    # h-maxima: where f stands at least `depth` above its reconstruction from f - depth
    rec = reconstruct_by_dilation(cv2.subtract(f, depth), f)
    peaks = (cv2.subtract(f, rec) >= depth) & win
    _, markers = cv2.connectedComponents(as_u8(peaks), connectivity=8)
    parts = watershed(-dist, markers, mask=win)
    n = int(parts.max()) + 1
    area = np.bincount(parts.ravel(), minlength=n)
    hit = np.bincount(parts[win_nuc], minlength=n)
    keep = [b for b in range(1, n) if hit[b] >= share * area[b] or hit[b] >= 0.5 * win_nuc.sum()]
    kept = np.isin(parts, keep) | win_nuc
    n, cc, _, _ = components(kept)
    votes = np.bincount(cc[win_nuc], minlength=n)
    votes[0] = 0
    out = np.zeros_like(cell)
    out[r0:r1, c0:c1] = fill_holes(cc == int(np.argmax(votes))) | win_nuc
    return out


def find_cytoplasm(lab, nuc, all_nuclei, bg_colour, sample, max_cell_ratio, r_img, method="colour"):
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
    method : {"cluster", "split", "colour"}, default "colour"
        ``split`` cuts touching red cells off the clustered cell (:func:`split_touching`);
        ``colour`` redraws the clustered cell with the image's colour model (:func:`colour_model`),
        or, where that model does not apply, is ``split``.
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
    out[wr0:wr1, wc0:wc1] = cell
    if method == "colour" and out.any():
        drawn = colour_model(lab, out, nuc, all_nuclei, bg_colour, (yc, xc, rad), r_img, sample,
                             far=max_cell_ratio)
        if drawn is not None:
            return drawn & ~nuc
    if method in ("split", "colour") and out.any():
        out = split_touching(out, nuc)
    return out & ~nuc


def _gaussian_loglik(x, fit) -> np.ndarray:
    """Log-likelihood (up to a constant) of pixels ``x`` (N, 1, 3) float32 under a Gaussian fitted on ``fit`` (M, 3).

    Returns an (N,) float32 array.
    """
    mu = fit.mean(0)
    cov = np.cov(fit.T) + np.eye(3)  # 1 unit of Lab variance: a flat class stays invertible
    a = np.linalg.cholesky(np.linalg.inv(cov)).T  # |a (x - mu)|^2 is the Mahalanobis distance
    z = cv2.transform(x, np.hstack([a, -(a @ mu)[:, None]]).astype(np.float32)).reshape(-1, 3)
    return -0.5 * (z * z).sum(1) - 0.5 * float(np.log(np.linalg.det(cov)))


def colour_model(lab, cell, nuc, all_nuclei, bg_colour, circle, r_img, sample, ring=0.35, far=2.6,
                 min_px=20, min_kept=0.5):
    """The cell redrawn from a per-image colour model of cytoplasm, red cells and background; (H, W) bool.

    One Gaussian per class in Lab, fitted on pseudo-labels: cytoplasm, the pixels of ``cell`` within
    ``ring`` nucleus radii of the nucleus; red cells, pixels farther than ``far`` nucleus radii from
    its centre that are neither (near) a nucleus nor background; background, pixels within
    6 Lab units of ``bg_colour``. Pixels of the cell's disc (``circle``) more likely cytoplasm than
    either other class, opened (radius 0.18 nucleus radius) so thin bridges break, form the cell:
    their component holding the nucleus, closed and with holes filled.

    The model does not apply, and None is returned, with fewer than ``min_px`` cytoplasm
    pseudo-labels (a bare nucleus), with fewer than ``min_px`` grid pixels of both other classes,
    or when the cell drawn keeps less than ``min_kept`` of the cytoplasm pseudo-labels (a
    cytoplasm coloured like the red cells).

    Parameters
    ----------
    lab : ndarray of shape (H, W, 3), float32
    cell, nuc, all_nuclei : ndarray of shape (H, W), bool
        The cell found so far (a superset of ``nuc``), its nucleus, and every nucleus.
    bg_colour : ndarray of shape (3,)
    circle : tuple of 3 float
        ``(row, col, radius)`` of the disc the cell may fill.
    r_img : int
        Radius of the final closing.
    sample : int
        Red-cell and background pseudo-labels are taken on a regular grid of about ``sample`` pixels.
    ring, far : float
        In nucleus radii.
    min_px : int
    min_kept : float

    Returns
    -------
    ndarray of shape (H, W), bool, or None
    """
    h, w = nuc.shape
    rn = max(1.0, float(np.sqrt(nuc.sum() / np.pi)))
    cyt = dilate(nuc, max(2, int(round(ring * rn)))) & cell & ~nuc
    if cyt.sum() < min_px:
        return None
    yc, xc, rad = circle
    ys, xs = np.nonzero(nuc)
    step = max(1, int(np.sqrt(h * w / sample)))
    yy, xx = np.ogrid[0:h:step, 0:w:step]
    grid = lab[::step, ::step].reshape(-1, 3)
    is_bg = (np.sqrt(((grid - bg_colour) ** 2).sum(1)) < 6.0) & ~all_nuclei[::step, ::step].ravel()
    away = ~dilate(all_nuclei, 2)[::step, ::step]
    away &= ((yy - ys.mean()) ** 2 + (xx - xs.mean()) ** 2) > (far * rn) ** 2
    others = [m for m in (away.ravel() & ~is_bg, is_bg) if m.sum() >= min_px]
    if not others:
        return None
    r0, r1 = max(0, int(yc - rad)), min(h, int(np.ceil(yc + rad)) + 1)
    c0, c1 = max(0, int(xc - rad)), min(w, int(np.ceil(xc + rad)) + 1)
    x = np.ascontiguousarray(lab[r0:r1, c0:c1], np.float32).reshape(-1, 1, 3)
    best = _gaussian_loglik(x, lab[cyt].astype(np.float64))
    likely = np.ones(x.shape[0], bool)
    for m in others:
        likely &= best > _gaussian_loglik(x, grid[m].astype(np.float64))
    wy, wx = np.ogrid[r0:r1, c0:c1]
    cand = likely.reshape(r1 - r0, c1 - c0) & (((wy - yc) ** 2 + (wx - xc) ** 2) <= rad * rad)
    win_nuc = nuc[r0:r1, c0:c1]
    cand = (cand & ~all_nuclei[r0:r1, c0:c1]) | win_nuc
    grown = _grow(cand, win_nuc, max(r_img, int(round(0.18 * rn))))
    out = np.zeros_like(nuc)
    out[r0:r1, c0:c1] = fill_holes(closing(grown, r_img)) | win_nuc
    # a model that keeps less than `min_kept` of its own cytoplasm labels misread the cytoplasm
    # (one the colour of red cells, as in eosinophils with sparse granules)
    return out if out[cyt].mean() >= min_kept else None
