"""The fast paths that replace scikit-image calls give scikit-image's values exactly.

:func:`hull_area` counts the pixels of ``convex_hull_image`` in integer arithmetic, and
:func:`glcm_stack` with the vectorised :func:`glcm_props` equals ``graycomatrix`` /
``graycoprops`` on the masked, quantised image (pixels outside the mask get an extra
level that is dropped). Random masks of blobs, sparse pixels and thin lines, whose hull
scikit-image computes by construction.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.feature import graycomatrix, graycoprops
from skimage.morphology import convex_hull_image

from hybridwbc.features.handcrafted import GLCM_ANGLES, GLCM_PROPS, glcm_features, glcm_masked, glcm_props, glcm_stack
from hybridwbc.features.handcrafted.geometry import hull_area


def random_mask(rng, h, w):
    yy, xx = np.ogrid[:h, :w]
    m = np.zeros((h, w), bool)
    for _ in range(rng.integers(1, 6)):
        r, c, rad = rng.integers(0, h), rng.integers(0, w), rng.integers(0, 9)
        m |= (yy - r) ** 2 + (xx - c) ** 2 <= rad * rad
    if rng.random() < 0.3:
        m &= rng.random((h, w)) < 0.5
    if rng.random() < 0.2:
        m[rng.integers(0, h)] = True  # a full row: horizontal hull edges
    return m


def test_hull_area_equals_convex_hull_image():
    rng = np.random.default_rng(0)
    n = 0
    for _ in range(400):
        m = random_mask(rng, *rng.integers(1, 40, 2))
        if not m.any():
            continue
        assert hull_area(m) == int(convex_hull_image(m).sum()), m.astype(int)
        n += 1
    assert n > 300


@pytest.mark.parametrize("mask", [np.ones((1, 1), bool), np.ones((1, 7), bool), np.eye(6, dtype=bool),
                                  np.zeros((4, 4), bool)])
def test_hull_area_degenerate(mask):
    expected = int(convex_hull_image(mask).sum()) if mask.any() else 0
    assert hull_area(mask) == expected


def test_glcm_stack_equals_graycomatrix_graycoprops():
    rng = np.random.default_rng(1)
    levels, distances = 16, (1, 2, 4)
    for _ in range(30):
        h, w = rng.integers(6, 40, 2)
        q = rng.integers(0, levels, (h, w))
        mask = random_mask(rng, h, w)
        if mask.sum() < 20:
            continue
        ours = glcm_stack(q, mask, levels, distances)
        for di, d in enumerate(distances):
            for ai, a in enumerate(GLCM_ANGLES):
                np.testing.assert_array_equal(ours[di, ai], glcm_masked(q, mask, levels, d, a))
        img = np.where(mask, q + 1, 0).astype(np.uint8)
        sk = graycomatrix(img, list(distances), list(GLCM_ANGLES), levels=levels + 1, symmetric=True)[1:, 1:]
        np.testing.assert_array_equal(ours, sk.transpose(2, 3, 0, 1))
        props = glcm_props(ours)
        for k, name in enumerate(GLCM_PROPS):
            if (sk.sum((0, 1)) > 0).all():
                np.testing.assert_allclose(props[..., k], graycoprops(sk, name), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("levels, distances", [(16, (1, 2, 4)), (8, (1,)), (32, (1, 3)), (33, (1, 2, 4)),
                                               (300, (2, 5)), (16, (1, 2, 50))])
def test_glcm_stack_equals_glcm_masked_every_path(levels, distances):
    """Both counting paths (OpenCV for levels <= 32, bincount above), repeated offsets (45 degrees at
    distances 1 and 2), offsets longer than the mask's box (an odd number left), thin and empty masks,
    a non-bool mask and a mask that is not contiguous: each offset equals :func:`glcm_masked`."""
    rng = np.random.default_rng(levels + sum(distances))
    shapes = [(rng.integers(1, 30), rng.integers(1, 30)) for _ in range(25)] + [(1, 12), (12, 1), (9, 9)]
    for h, w in shapes:
        q = rng.integers(0, levels, (h, w))
        mask = random_mask(rng, h, w) if (h, w) != (9, 9) else np.zeros((9, 9), bool)
        for m in (mask, mask.astype(np.int32), np.asfortranarray(mask)):
            ours = glcm_stack(q, m, levels, distances)
            assert ours.shape == (len(distances), 4, levels, levels) and ours.dtype == np.int64
            for di, d in enumerate(distances):
                for ai, a in enumerate(GLCM_ANGLES):
                    np.testing.assert_array_equal(ours[di, ai], glcm_masked(q, mask, levels, d, a))


def test_glcm_features_is_the_texture_glcm():
    """:func:`glcm_features` quantises as documented and averages the props over the angles."""
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (30, 25)).astype(np.uint8)
    mask = random_mask(rng, 30, 25) | (rng.random((30, 25)) < 0.5)
    q = gray.astype(np.int64) * 16 // 256
    expected = glcm_props(glcm_stack(q, mask, 16, (1, 2))).mean(1).ravel()
    np.testing.assert_array_equal(glcm_features(gray, mask, 16, (1, 2)), expected)
    assert glcm_features(gray, np.zeros_like(mask), 16, (1, 2)).tolist() == [0.0] * 12


def test_glcm_props_stacked_equals_single():
    rng = np.random.default_rng(2)
    counts = rng.integers(0, 5, (3, 8, 8))
    counts[1] = 0  # no pair: all 0
    counts[2] = 0
    counts[2, 3, 3] = 10  # one level only: correlation 1 by convention
    out = glcm_props(counts)
    assert out.shape == (3, 6)
    for k in range(3):
        np.testing.assert_array_equal(out[k], glcm_props(counts[k]))
    np.testing.assert_array_equal(out[1], 0.0)
    assert out[2, 5] == 1.0 and out[2, 0] == 0.0
