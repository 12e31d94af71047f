"""Colour steps of the segmentation: input normalisation, CIE Lab, the stain score and a deterministic k-means.

Pure functions on ndarrays (OpenCV for the colour conversion and the nearest-centre arithmetic).
:func:`kmeans` starts its centres at quantiles of lightness (or at :func:`stain_init`, which
seeds one centre on the most stained pixels) and runs a fixed number of Lloyd iterations, so its
result depends only on the data. :func:`assign` and :func:`nearest_is` give every pixel its
nearest centre; ties go to the lower index.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from hybridwbc.errors import ImageReadError

__all__ = ["as_rgb_uint8", "rgb_to_lab", "stain_score", "kmeans", "assign", "nearest_is", "stain_init", "stride"]


# --------------------------------------------------------------------------- input
def as_rgb_uint8(image) -> np.ndarray:
    """Normalise an array to ``(H, W, 3) uint8`` RGB.

    Parameters
    ----------
    image : array-like of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)
        uint8, uint16 (rescaled by 257), other integer types (rescaled by their
        maximum when it exceeds 255), bool, or float (``[0, 1]`` when its
        maximum is at most 1, else ``[0, 255]``). RGBA is composited on white.

    Returns
    -------
    rgb : ndarray of shape (H, W, 3), dtype uint8, C-contiguous

    Raises
    ------
    ImageReadError
        If the array is not 2-D or 3-D with 1, 3 or 4 channels, is empty, or is float with
        NaN or infinite values.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or arr.size == 0 or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ImageReadError(
            f"Cannot use an array of shape {arr.shape} as an image: expected (H, W), (H, W, 1), "
            "(H, W, 3) or (H, W, 4). Pass one RGB image."
        )
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = (arr.astype(np.uint32) // 257).astype(np.uint8)
    elif arr.dtype.kind == "f":
        a = arr.astype(np.float64)
        bad = int(np.count_nonzero(~np.isfinite(a)))
        if bad:  # never guess a pixel: NaN made black would read as background (cutout) or stain
            raise ImageReadError(
                f"Cannot use a float image with {bad} non-finite values (NaN or inf) of {a.size}: expected "
                "finite intensities. Fill or crop the undefined pixels before segmenting."
            )
        scale = 255.0 if a.max(initial=0.0) <= 1.0 else 1.0
        arr = np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        a = arr.astype(np.float64)
        top = a.max(initial=0.0)
        if top > 255:
            a = a * (255.0 / top)
        arr = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 255.0
        rgb = arr[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        arr = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of an RGB image, from OpenCV's 8-bit conversion.

    Parameters
    ----------
    rgb : ndarray of shape (H, W, 3), dtype uint8

    Returns
    -------
    lab : ndarray of shape (H, W, 3), dtype float32
        ``L*`` in [0, 100], ``a*`` and ``b*`` in [-128, 127], quantised to
        about one unit (ample for clustering).
    """
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).astype(np.float32)
    lab -= np.array([0.0, 128.0, 128.0], np.float32)
    lab[..., 0] *= np.float32(100.0 / 255.0)
    return lab


def stain_score(lab: np.ndarray) -> np.ndarray:
    """Nucleus-likeness ``s = a* - b* + 0.5 (100 - L*)`` of Lab colours.

    Large for dark purple-blue (haematoxylin/azure-stained chromatin), near 0
    for the light background, small for pink red cells.

    Parameters
    ----------
    lab : ndarray of shape (..., 3)

    Returns
    -------
    score : ndarray of shape (...,), float
    """
    lab = np.asarray(lab, np.float32)
    return lab[..., 1] - lab[..., 2] + 0.5 * (100.0 - lab[..., 0])


def kmeans(x: np.ndarray, k: int, n_iter: int = 10, init: Optional[np.ndarray] = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic Lloyd k-means.

    Centres start at ``init`` or, by default, at the points at quantiles
    ``(i + 0.5) / k`` of the first column (lightness), so the result depends
    only on the data. Empty clusters keep their previous centre.

    Parameters
    ----------
    x : ndarray of shape (n, d), float
    k : int
    n_iter : int, default 10
    init : ndarray of shape (k, d), optional

    Returns
    -------
    centres : ndarray of shape (k, d), float32
    labels : ndarray of shape (n,), int64
    """
    x = np.asarray(x, np.float32)
    n = len(x)
    order = np.argsort(x[:, 0], kind="stable")
    if init is not None:
        centres = np.array(init, np.float32).reshape(k, x.shape[1])
    else:
        centres = x[order[((np.arange(k) + 0.5) * n / k).astype(int).clip(0, n - 1)]].copy()
    labels = np.zeros(n, np.int64)
    for _ in range(n_iter):
        labels = assign(x, centres)
        counts = np.bincount(labels, minlength=k)
        new = np.zeros_like(centres)
        for d in range(x.shape[1]):
            new[:, d] = np.bincount(labels, weights=x[:, d], minlength=k)
        keep = counts > 0
        new[keep] /= counts[keep, None]
        new[~keep] = centres[~keep]
        if np.allclose(new, centres, atol=1e-3):
            centres = new
            break
        centres = new
    return centres, assign(x, centres)


def _affine(centres: np.ndarray) -> np.ndarray:
    # rows: squared distance to each centre minus |x|^2 (constant per pixel), as an affine map
    c = np.asarray(centres, np.float32)
    return np.concatenate([-2.0 * c, (c * c).sum(1)[:, None]], 1).astype(np.float32)


def assign(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for each row of ``x`` (n, 3); ties go to the lower index."""
    x = np.ascontiguousarray(x, np.float32)
    d = cv2.transform(x.reshape(-1, 1, x.shape[1]), _affine(centres)).reshape(len(x), -1)
    return d.argmin(1)


def nearest_is(img: np.ndarray, centres: np.ndarray, j: int) -> np.ndarray:
    """``(H, W)`` bool: pixels of ``img`` (H, W, 3) whose nearest centre is ``j``."""
    m = _affine(centres)
    others = [k for k in range(len(centres)) if k != j]
    diff = (m[j][None, :] - m[others]).astype(np.float32)  # d_j - d_k, want < 0 for every k
    out = None
    for start in range(0, len(others), 4):
        block = diff[start:start + 4]
        d = cv2.transform(img, block) if len(block) > 1 else cv2.transform(img, block)
        d = d.reshape(img.shape[0], img.shape[1], -1)
        cur = d.max(2) < 0 if d.shape[2] > 1 else d[..., 0] < 0
        out = cur if out is None else out & cur
    return out


def stain_init(x: np.ndarray, k: int) -> np.ndarray:
    """Initial centres: the 99th-percentile stain-score pixel (a nucleus, even a small one),
    then pixels at lightness quantiles ``(i + 0.5) / (k - 1)``."""
    n = len(x)
    s = stain_score(x)
    first = x[np.argsort(s, kind="stable")[min(n - 1, int(0.99 * n))]]
    order = np.argsort(x[:, 0], kind="stable")
    rest = x[order[((np.arange(k - 1) + 0.5) * n / (k - 1)).astype(int).clip(0, n - 1)]]
    return np.vstack([first[None], rest])


def stride(n: int, sample: int) -> int:
    """Step of a regular subsample of at most ``sample`` of ``n`` items: ``max(1, ceil(n / sample))``."""
    return max(1, int(np.ceil(n / sample)))
