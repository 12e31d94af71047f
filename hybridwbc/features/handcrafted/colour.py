"""Colour statistics of nucleus, cytoplasm and cell (masks ``N``, ``C``, ``W = N | C``).

``colour`` (:func:`colour_features`), for ``N``, ``C`` and ``W``, for each channel of
RGB (0-255), HSV (H in degrees rotated by 180, i.e. ``(H + 180) mod 360``, so
that the wrap-around lies at cyan, a hue these stains do not produce and
pink-red-orange is contiguous; S, V in [0, 1]) and CIE Lab (OpenCV float,
L in [0, 100]); with ``x`` the channel values over the region, ``n`` their
count, ``mu = sum x / n``, ``m_k = sum (x - mu)^k / n``:
    * ``mean = mu``; ``std = sqrt(m_2)``;
    * ``skew = m_3 / m_2^1.5``; ``kurt = m_4 / m_2^2 - 3`` (Fisher);
      skew and kurt are 0 when ``m_2 <= 1e-12``; all four are 0 on an empty region.
"""

from __future__ import annotations

import cv2
import numpy as np

from hybridwbc.features.handcrafted.cell import CellView

__all__ = ["COLOUR_CHANNELS", "COLOUR_STATS", "REGIONS", "colour_names", "colour_planes", "moments4",
           "colour_features"]

COLOUR_CHANNELS = ("R", "G", "B", "H", "S", "V", "L", "a", "b")
COLOUR_STATS = ("mean", "std", "skew", "kurt")
REGIONS = ("nucleus", "cytoplasm", "cell")


def colour_names() -> list[str]:
    """Names of :func:`colour_features`."""
    return [f"{r}_{c}_{s}" for r in REGIONS for c in COLOUR_CHANNELS for s in COLOUR_STATS]


def colour_planes(rgb: np.ndarray) -> np.ndarray:
    """RGB, rotated-hue HSV and Lab planes of an image.

    Parameters
    ----------
    rgb : ndarray of shape (h, w, 3), dtype uint8

    Returns
    -------
    planes : ndarray of shape (h, w, 9), dtype float64
        R, G, B (0-255), H ((hue + 180) mod 360, degrees), S, V ([0, 1]), L, a, b.
    """
    f = rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    hsv = cv2.cvtColor(f, cv2.COLOR_RGB2HSV)
    lab = cv2.cvtColor(f, cv2.COLOR_RGB2Lab)
    out = np.empty(rgb.shape[:2] + (9,), np.float64)
    out[..., 0:3] = rgb
    out[..., 3] = np.mod(hsv[..., 0].astype(np.float64) + 180.0, 360.0)
    out[..., 4:6] = hsv[..., 1:3]
    out[..., 6:9] = lab
    return out


def moments4(x: np.ndarray) -> np.ndarray:
    """Mean, std, skewness, kurtosis (Fisher) of each column.

    Parameters
    ----------
    x : ndarray of shape (n, c), float64

    Returns
    -------
    ndarray of shape (c, 4)
        Zeros when ``n = 0``; skew and kurt 0 where the variance <= 1e-12.
    """
    c = x.shape[1]
    if x.shape[0] == 0:
        return np.zeros((c, 4))
    mu = x.mean(0)
    d = x - mu
    d2 = d * d
    m2 = d2.mean(0)
    m3 = (d2 * d).mean(0)
    m4 = (d2 * d2).mean(0)
    ok = m2 > 1e-12
    safe = np.where(ok, m2, 1.0)
    skew = np.where(ok, m3 / safe ** 1.5, 0.0)
    kurt = np.where(ok, m4 / (safe * safe) - 3.0, 0.0)
    return np.stack([mu, np.sqrt(m2), skew, kurt], 1)


def colour_features(view: CellView) -> np.ndarray:
    """Colour statistics of nucleus, cytoplasm and cell (module docstring).

    Returns
    -------
    ndarray of shape (108,), float64
    """
    planes = colour_planes(view.rgb)
    out = [moments4(planes[m]).ravel() for m in (view.nucleus, view.cytoplasm, view.cell)]
    return np.concatenate(out)
