"""Colour normalisation of stained blood-cell images: pure functions of ndarrays.

* Reinhard et al. (2001): move an image's per-channel CIE Lab mean and standard deviation onto a
  reference's (:func:`reinhard`); in float Lab the map ``(x - m) / s * s_ref + m_ref`` is exact.
* Grey world / white balance: per-channel gains that move the image's RGB channel means onto a
  reference (:func:`grey_world`); with a grey reference this is the classic grey-world assumption.
* Macenko et al. (2009), for May-Grünwald-Giemsa / Wright stains: the two stain vectors are the
  extreme angles of the optical densities projected on their top-two principal plane
  (:func:`macenko_stains`); stain 1 is the basophilic (azure / methylene blue) one, which absorbs red
  light most, stain 2 eosin. :func:`macenko` re-expresses an image's stain concentrations with a
  reference stain matrix and reference maximum concentrations. No H&E default matrix is used: the
  reference is estimated from training images (:class:`hybridwbc.preprocess.ImageNormaliser`).

Images are ``(H, W, 3) uint8`` RGB in and out; statistics are float64.
"""

from __future__ import annotations

import cv2
import numpy as np

from hybridwbc.errors import NoCellFoundError

__all__ = ["to_lab", "from_lab", "lab_moments", "reinhard_lab", "reinhard", "channel_means", "grey_world",
           "optical_density", "stained", "macenko_stains", "stain_concentrations", "macenko", "MIN_STAINED_PIXELS"]

#: Fewest stained pixels (:func:`stained`) Macenko needs in one image.
MIN_STAINED_PIXELS = 50


def to_lab(image: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of an RGB image in float (OpenCV's float conversion: no 8-bit quantisation).

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), dtype uint8

    Returns
    -------
    lab : ndarray of shape (H, W, 3), dtype float32
        ``L*`` in [0, 100], ``a*`` and ``b*`` about [-128, 127].
    """
    return cv2.cvtColor(np.ascontiguousarray(image, np.float32) / np.float32(255.0), cv2.COLOR_RGB2Lab)


def from_lab(lab: np.ndarray) -> np.ndarray:
    """RGB ``(H, W, 3) uint8`` of a float Lab image (the inverse of :func:`to_lab`), clipped to the gamut."""
    rgb = cv2.cvtColor(np.ascontiguousarray(lab, np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def lab_moments(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of an image in Lab: two ``(3,) float64`` arrays."""
    lab = to_lab(image).reshape(-1, 3).astype(np.float64)
    return lab.mean(0), lab.std(0)


def reinhard_lab(lab: np.ndarray, mean: np.ndarray, std: np.ndarray, ref_mean: np.ndarray,
                 ref_std: np.ndarray) -> np.ndarray:
    """The Reinhard map in Lab: ``(lab - mean) / std * ref_std + ref_mean``, per channel.

    Parameters
    ----------
    lab : ndarray of shape (..., 3), float
    mean, std : ndarray of shape (3,)
        The source's moments (a zero ``std`` is treated as 1: a flat channel only moves its mean).
    ref_mean, ref_std : ndarray of shape (3,)

    Returns
    -------
    ndarray of the shape of ``lab``, dtype float64
    """
    std = np.where(np.asarray(std, np.float64) > 1e-12, std, 1.0)
    return (np.asarray(lab, np.float64) - mean) / std * np.asarray(ref_std, np.float64) + np.asarray(ref_mean)


def reinhard(image: np.ndarray, ref_mean: np.ndarray, ref_std: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer of ``image`` ((H, W, 3) uint8) onto reference Lab moments; (H, W, 3) uint8."""
    lab = to_lab(image)
    flat = lab.reshape(-1, 3).astype(np.float64)
    return from_lab(reinhard_lab(lab, flat.mean(0), flat.std(0), ref_mean, ref_std))


def channel_means(image: np.ndarray) -> np.ndarray:
    """Mean of each RGB channel of ``image`` ((H, W, 3) uint8): ``(3,) float64``."""
    return np.asarray(image, np.float64).reshape(-1, 3).mean(0)


def grey_world(image: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Grey-world white balance: gains ``reference / means`` per channel; (H, W, 3) uint8 in and out.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), dtype uint8
    reference : ndarray of shape (3,), optional
        Target channel means (fitted on training images); ``None``: the image's own mean grey level
        in every channel (the classic grey-world assumption).
    """
    means = np.maximum(channel_means(image), 1e-6)
    target = np.full(3, means.mean()) if reference is None else np.asarray(reference, np.float64)
    out = np.asarray(image, np.float64) * (target / means)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def optical_density(image: np.ndarray, io: float = 240.0) -> np.ndarray:
    """Optical density ``-ln((I + 1) / io)`` per channel, floored at 0: ``(H, W, 3) float64``."""
    return np.maximum(-np.log((np.asarray(image, np.float64) + 1.0) / float(io)), 0.0)


def stained(od: np.ndarray, beta: float) -> np.ndarray:
    """Which pixels of ``od`` ((N, 3) float) are stained: density vector length above ``beta``; (N,) bool.

    The length, not every channel: an eosin-only pixel of an MGG / Wright smear barely absorbs red, so the
    per-channel threshold of H&E implementations would drop most of the eosin stain.
    """
    return np.linalg.norm(np.asarray(od, np.float64).reshape(-1, 3), axis=1) > float(beta)


def macenko_stains(od: np.ndarray, beta: float = 0.15, alpha: float = 1.0) -> np.ndarray:
    """Two stain vectors by Macenko's angle method.

    Parameters
    ----------
    od : ndarray of shape (N, 3), float
        Optical densities of pixels.
    beta : float
        Pixels whose optical density vector is shorter than ``beta`` (background, faint) are left out
        (:func:`stained`).
    alpha : float
        Percentile (and ``100 - alpha``) of the angles taken as the extreme stain directions.

    Returns
    -------
    ndarray of shape (2, 3), float64
        Unit rows with non-negative entries: row 0 the stain absorbing red most (azure / methylene
        blue: nuclei), row 1 the other (eosin).

    Raises
    ------
    NoCellFoundError
        Fewer than :data:`MIN_STAINED_PIXELS` pixels are stained (a blank or overexposed image).
    """
    od = np.asarray(od, np.float64).reshape(-1, 3)
    kept = od[stained(od, beta)]
    if len(kept) < MIN_STAINED_PIXELS:
        raise NoCellFoundError(
            f"No cell found for stain normalisation: {len(kept)} pixels have an optical density above "
            f"beta={beta}, fewer than {MIN_STAINED_PIXELS}. Fix: check the image is a stained "
            "cell, or use preprocess=reinhard or greyworld.")
    _, vecs = np.linalg.eigh(np.cov(kept.T))
    plane = vecs[:, 1:3]
    plane = plane * np.where(plane.sum(0) < 0, -1.0, 1.0)  # each axis pointing into positive density
    t = kept @ plane
    phi = np.arctan2(t[:, 1], t[:, 0])
    lo, hi = np.percentile(phi, [alpha, 100.0 - alpha])
    v = np.stack([plane @ np.array([np.cos(a), np.sin(a)]) for a in (lo, hi)])
    v = np.abs(v) / np.linalg.norm(v, axis=1, keepdims=True)
    order = np.argsort(-(v[:, 0] / v.sum(1)), kind="stable")  # the larger red share first
    return v[order]


def stain_concentrations(od: np.ndarray, stains: np.ndarray) -> np.ndarray:
    """Least-squares concentrations ``C`` with ``od ≈ C @ stains``: ``(N, 2) float64`` for ``(N, 3)`` densities."""
    return np.asarray(od, np.float64).reshape(-1, 3) @ np.linalg.pinv(np.asarray(stains, np.float64))


def macenko(image: np.ndarray, ref_stains: np.ndarray, ref_max: np.ndarray | None, io: float = 240.0,
            beta: float = 0.15, alpha: float = 1.0, percentile: float = 99.0) -> np.ndarray:
    """Macenko stain normalisation of ``image`` ((H, W, 3) uint8) onto a reference; (H, W, 3) uint8.

    The image's own stain vectors (:func:`macenko_stains`), each paired with the nearest reference stain (in a
    crop of few pixels the red-share order can flip), give its concentrations; each stain's is
    scaled so its ``percentile`` matches ``ref_max`` ((2,); ``None``: concentrations kept as they are, only
    the stain colours change), and the image is rebuilt with ``ref_stains`` ((2, 3)):
    ``io * exp(-C @ ref_stains)``. In a single-cell crop the amount of eosin is itself a class signal (an
    eosinophil's granules), which the per-image rescaling flattens.

    Raises
    ------
    NoCellFoundError
        From :func:`macenko_stains`.
    """
    od = optical_density(image, io).reshape(-1, 3)
    own = macenko_stains(od, beta, alpha)
    ref = np.asarray(ref_stains, np.float64)
    if (own * ref).sum() < (own[::-1] * ref).sum():  # pair each stain with its nearest reference stain
        own = own[::-1]
    conc = stain_concentrations(od, own)
    if ref_max is not None:
        peak = np.maximum(np.percentile(conc, percentile, axis=0), 1e-6)
        conc = conc * (np.asarray(ref_max, np.float64) / peak)
    out = float(io) * np.exp(-conc @ np.asarray(ref_stains, np.float64))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(np.shape(image))
