"""Seeded synthetic white-cell images whose right answer is known by construction.

Each image shows one white cell centred on a background, optionally with red
cells around it (a PBC-like crop) or on black (a C-NMC-like cut-out). The cell
is a cytoplasm ellipse holding a nucleus (round, kidney-shaped or lobed) and,
for granulocytes, round granules of a known radius. :func:`draw_cell` returns
the exact nucleus and cytoplasm masks, so segmentation and features can be
tested against ground truth, and :func:`generate_dataset` writes a labelled
data set (with subject ids) to disk for end-to-end runs.

Classes differ in ways handcrafted features can see: nucleus size and shape,
nucleus/cytoplasm colour, and granule size, colour and density.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from hybridwbc.data.atomic import atomic_path

__all__ = ["CellProfile", "SyntheticCell", "PROFILES", "profile_for", "draw_cell", "generate_dataset"]


@dataclass(frozen=True)
class CellProfile:
    """How one class of synthetic cell looks. Lengths are fractions of the image side.

    Attributes
    ----------
    cell_radius : float
        Cytoplasm (whole-cell) radius as a fraction of the image side.
    nucleus_ratio : float
        Nucleus radius / cell radius.
    nucleus_shape : {"round", "kidney", "lobed"}
    lobes : int
        Number of lobes when ``nucleus_shape == "lobed"``.
    nucleus_rgb, cytoplasm_rgb : tuple of 3 int
    granule_radius : int
        Granule radius in pixels (0: no granules).
    granule_density : float
        Fraction of the cytoplasm area covered by granules.
    granule_rgb : tuple of 3 int
    chromatin_noise : float
        Standard deviation of the texture noise inside the nucleus.
    """

    cell_radius: float = 0.30
    nucleus_ratio: float = 0.6
    nucleus_shape: str = "round"
    lobes: int = 1
    nucleus_rgb: tuple = (90, 50, 140)
    cytoplasm_rgb: tuple = (200, 170, 210)
    granule_radius: int = 0
    granule_density: float = 0.0
    granule_rgb: tuple = (0, 0, 0)
    chromatin_noise: float = 6.0


PROFILES: dict[str, CellProfile] = {
    "lymphocyte": CellProfile(0.22, 0.82, "round", 1, (70, 40, 130), (170, 170, 220)),
    "neutrophil": CellProfile(0.30, 0.50, "lobed", 3, (100, 50, 140), (215, 185, 210), 1, 0.10, (190, 140, 180)),
    "monocyte": CellProfile(0.36, 0.62, "kidney", 1, (120, 80, 160), (175, 165, 200)),
    "eosinophil": CellProfile(0.31, 0.48, "lobed", 2, (95, 45, 130), (230, 170, 150), 3, 0.45, (225, 95, 60)),
    "basophil": CellProfile(0.27, 0.55, "round", 1, (80, 40, 120), (180, 150, 200), 2, 0.50, (55, 25, 95)),
    "ig": CellProfile(0.34, 0.66, "kidney", 1, (110, 60, 150), (200, 160, 200), 1, 0.15, (170, 100, 160)),
    "erythroblast": CellProfile(0.18, 0.62, "round", 1, (45, 20, 80), (210, 150, 160)),
    "platelet": CellProfile(0.08, 0.75, "round", 1, (140, 80, 170), (200, 160, 210), 1, 0.2, (110, 50, 140)),
    "all": CellProfile(0.34, 0.86, "round", 1, (125, 85, 170), (175, 160, 215), chromatin_noise=14.0),
    "hem": CellProfile(0.26, 0.74, "round", 1, (75, 40, 125), (170, 160, 210), chromatin_noise=5.0),
}


def profile_for(label: str, index: int) -> CellProfile:
    """The profile of a class by name, or a generic one derived from its index.

    Parameters
    ----------
    label : str
        Class name, matched case-insensitively against :data:`PROFILES`.
    index : int
        Position of the class among the data set's classes; distinct indices
        give visibly distinct generic profiles (size, N/C ratio, granules).
    """
    key = label.lower()
    if key in PROFILES:
        return PROFILES[key]
    return CellProfile(
        cell_radius=0.20 + 0.05 * (index % 4),
        nucleus_ratio=0.45 + 0.12 * ((index * 3) % 4),
        nucleus_shape=("round", "kidney", "lobed")[index % 3],
        lobes=2 + index % 2,
        nucleus_rgb=(60 + 25 * (index % 4), 40, 150 - 15 * (index % 4)),
        granule_radius=(0, 1, 2, 3)[index % 4],
        granule_density=(0.0, 0.15, 0.3, 0.45)[index % 4],
        granule_rgb=(200, 90, 70) if index % 2 else (60, 30, 100),
    )


@dataclass
class SyntheticCell:
    """One synthetic image and its ground truth.

    Attributes
    ----------
    image : ndarray of shape (S, S, 3), dtype uint8
    nucleus : ndarray of shape (S, S), dtype bool
    cytoplasm : ndarray of shape (S, S), dtype bool
        Cell minus nucleus.
    granule_radius : int
    """

    image: np.ndarray
    nucleus: np.ndarray
    cytoplasm: np.ndarray
    granule_radius: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def cell(self) -> np.ndarray:
        """Whole-cell mask, ``nucleus | cytoplasm``; shape (S, S), bool."""
        return self.nucleus | self.cytoplasm


def _disk(yy, xx, cy, cx, r):
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _ellipse(yy, xx, cy, cx, ry, rx, theta):
    c, s = np.cos(theta), np.sin(theta)
    y, x = yy - cy, xx - cx
    u, v = x * c + y * s, -x * s + y * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def draw_cell(
    rng: np.random.Generator,
    profile: CellProfile,
    size: int = 96,
    background: str = "smear",
    jitter: float = 0.08,
    colour_shift: Sequence[float] = (0.0, 0.0, 0.0),
) -> SyntheticCell:
    """Draw one cell with its exact masks.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all randomness; the same seed gives the same image.
    profile : CellProfile
    size : int, default 96
        Side of the square image in pixels.
    background : {"smear", "black"}
        ``"smear"``: light background with red cells (PBC-like);
        ``"black"``: black background (C-NMC-like cut-out).
    jitter : float, default 0.08
        Relative random variation of radii and colours.
    colour_shift : sequence of 3 float
        Added to every pixel (a per-subject stain difference).

    Returns
    -------
    SyntheticCell
    """
    if background not in ("smear", "black"):
        raise ValueError(f"background must be 'smear' or 'black'; received {background!r}.")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    j = lambda v: v * (1.0 + jitter * rng.uniform(-1, 1))  # noqa: E731
    cy = size / 2 + rng.uniform(-1, 1) * size * 0.03
    cx = size / 2 + rng.uniform(-1, 1) * size * 0.03
    rc = max(3.0, j(profile.cell_radius) * size)
    theta = rng.uniform(0, np.pi)

    if background == "black":
        img = np.zeros((size, size, 3), np.float64)
    else:
        img = np.empty((size, size, 3), np.float64)
        img[:] = np.array([232, 222, 214]) + rng.normal(0, 3, 3)
        for _ in range(rng.integers(3, 7)):
            ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(rc + 0.14 * size, 0.75 * size)
            rr = size * rng.uniform(0.10, 0.14)
            m = _disk(yy, xx, cy + dist * np.sin(ang), cx + dist * np.cos(ang), rr)
            img[m] = np.array([225, 160, 160]) + rng.normal(0, 4, 3)

    cell = _ellipse(yy, xx, cy, cx, rc, j(rc * 1.05), theta)
    rn = profile.nucleus_ratio * rc
    if profile.nucleus_shape == "round":
        nucleus = _ellipse(yy, xx, cy, cx, j(rn), j(rn), theta)
    elif profile.nucleus_shape == "kidney":
        nucleus = _ellipse(yy, xx, cy, cx, j(rn), j(rn * 0.9), theta)
        bite = _disk(yy, xx, cy + rn * 0.9 * np.sin(theta), cx + rn * 0.9 * np.cos(theta), rn * 0.5)
        nucleus &= ~bite
    elif profile.nucleus_shape == "lobed":
        nucleus = np.zeros_like(cell)
        lobes = max(1, profile.lobes)
        rl = rn / (1.0 + 0.25 * (lobes - 1))
        for k in range(lobes):
            a = theta + 2 * np.pi * k / lobes
            off = rn * 0.55 if lobes > 1 else 0.0
            nucleus |= _disk(yy, xx, cy + off * np.sin(a), cx + off * np.cos(a), j(rl * 0.8))
        # thin bridges join the lobes, as in segmented neutrophils
        for k in range(lobes - 1):
            a = theta + 2 * np.pi * (k + 0.5) / lobes
            nucleus |= _disk(yy, xx, cy + rn * 0.3 * np.sin(a), cx + rn * 0.3 * np.cos(a), rl * 0.3)
    else:
        raise ValueError(
            f"nucleus_shape must be 'round', 'kidney' or 'lobed'; received {profile.nucleus_shape!r}."
        )
    nucleus &= cell
    cytoplasm = cell & ~nucleus

    def colour(rgb):
        return np.asarray(rgb, np.float64) * (1.0 + 0.5 * jitter * rng.uniform(-1, 1, 3))

    img[cytoplasm] = colour(profile.cytoplasm_rgb)
    img[nucleus] = colour(profile.nucleus_rgb)
    img[nucleus] += rng.normal(0, profile.chromatin_noise, (int(nucleus.sum()), 3))

    granules = np.zeros_like(cell)
    if profile.granule_radius > 0 and profile.granule_density > 0:
        gr = profile.granule_radius
        target = profile.granule_density * cytoplasm.sum()
        ys, xs = np.nonzero(cytoplasm)
        if ys.size:
            n_try = int(4 * target / max(1.0, np.pi * gr * gr)) + 1
            for _ in range(n_try):
                if granules.sum() >= target:
                    break
                i = rng.integers(ys.size)
                g = _disk(yy, xx, ys[i], xs[i], gr) & cell
                granules |= g
        img[granules & cytoplasm] = colour(profile.granule_rgb)
        # granules over the nucleus darken it slightly (basophils hide their nucleus)
        img[granules & nucleus] = 0.5 * img[granules & nucleus] + 0.5 * colour(profile.granule_rgb)

    img += np.asarray(colour_shift, np.float64)
    img += rng.normal(0, 2.0, img.shape)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return SyntheticCell(image=image, nucleus=nucleus, cytoplasm=cytoplasm,
                         granule_radius=profile.granule_radius)


def generate_dataset(
    root: str | os.PathLike,
    classes: Sequence[str],
    n_per_class: int = 20,
    size: int = 96,
    n_subjects: int = 0,
    background: str = "smear",
    seed: int = 0,
) -> Path:
    """Write a labelled synthetic data set to ``root`` and return its manifest path.

    Files are ``root/<class>/<subject or 'img'>_<i>.png``, and ``root/manifest.csv``
    lists ``path`` (relative to ``root``), ``label`` and ``subject``. Writing is
    idempotent: an existing complete data set with the same settings is reused.

    Parameters
    ----------
    root : path-like
    classes : sequence of str
        Class names; known white-cell names use :data:`PROFILES`.
    n_per_class : int, default 20
    size : int, default 96
    n_subjects : int, default 0
        Subjects per class. When > 0, each image belongs to one subject
        (``<class>S<k>``), and each subject has its own stain shift, so a
        subject-level split matters. 0 means no subject ids.
    background : {"smear", "black"}
    seed : int, default 0

    Returns
    -------
    manifest : pathlib.Path
        ``root / "manifest.csv"``.
    """
    root = Path(root)
    manifest = root / "manifest.csv"
    stamp = root / ".settings"
    settings = repr((list(classes), n_per_class, size, n_subjects, background, seed, 2))
    if manifest.is_file() and stamp.is_file() and stamp.read_text() == settings:
        return manifest
    from PIL import Image

    rows = []
    for index, label in enumerate(classes):
        profile = profile_for(label, index)
        rng = np.random.default_rng([seed, index])
        subj_shift = {}
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            subject = f"{label}S{i % n_subjects}" if n_subjects > 0 else ""
            if subject and subject not in subj_shift:
                subj_shift[subject] = rng.normal(0, 4.0, 3)
            cell = draw_cell(rng, profile, size=size, background=background,
                             colour_shift=subj_shift.get(subject, (0.0, 0.0, 0.0)))
            rel = f"{label}/{subject or 'img'}_{i:04d}.png"
            with atomic_path(root / rel) as tmp:
                Image.fromarray(cell.image).save(tmp)
            rows.append({"path": rel, "label": label, "subject": subject})
    with atomic_path(manifest) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "subject"])
        writer.writeheader()
        writer.writerows(rows)
    stamp.write_text(settings)
    return manifest
