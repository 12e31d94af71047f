"""Segmentation on synthetic cells with known masks, bad inputs, and real data (marked)."""

from __future__ import annotations

import numpy as np
import pytest

from hybridwbc.data.synthetic import PROFILES, draw_cell
from hybridwbc.errors import ConfigError, ImageReadError, NoCellFoundError
from hybridwbc.segment import as_rgb_uint8, dice, kmeans, segment

WBC = ("lymphocyte", "neutrophil", "monocyte", "eosinophil", "basophil", "ig")


def paste_field(rng, names, size=120, canvas=(270, 400)):
    """A smear field: synthetic cells pasted on a light canvas, with their true masks."""
    h, w = canvas
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (232, 222, 214)
    truth = []
    spots = [(5, 5), (5, 140), (5, 275), (145, 70), (145, 210)]
    for (r, c), name in zip(spots, names):
        cell = draw_cell(rng, PROFILES[name], size=size, background="smear")
        m = cell.cell
        img[r:r + size, c:c + size][m] = cell.image[m]
        full = np.zeros((h, w), bool)
        full[r:r + size, c:c + size] = m
        nuc = np.zeros((h, w), bool)
        nuc[r:r + size, c:c + size] = cell.nucleus
        truth.append((nuc, full))
    return img, truth


@pytest.mark.parametrize("name", WBC)
@pytest.mark.parametrize("background", ["smear", "black"])
def test_dice_on_synthetic_cells(name, background):
    rng = np.random.default_rng(7)
    d_nuc, d_cell = [], []
    for _ in range(4):
        c = draw_cell(rng, PROFILES[name], size=128, background=background)
        seg = segment(c.image, "auto")
        assert seg.mode == ("cutout" if background == "black" else "crop")
        p = seg.primary
        d_nuc.append(dice(p.nucleus, c.nucleus))
        d_cell.append(dice(p.cell, c.cell))
    # synthetic basophil granules are darker than chromatin and overlap the nucleus: they
    # join the nucleus colour cluster and must be split off by colour and thickness
    assert np.mean(d_nuc) >= 0.90, d_nuc
    assert np.mean(d_cell) >= 0.90, d_cell


def test_result_layout():
    c = draw_cell(np.random.default_rng(1), PROFILES["monocyte"], size=96)
    seg = segment(c.image, "crop")
    assert seg.labels.shape == (96, 96) and seg.labels.dtype == np.int32
    p = seg.primary
    assert p.nucleus.dtype == bool and p.cytoplasm.dtype == bool
    assert not (p.nucleus & p.cytoplasm).any()
    assert set(np.unique(seg.labels)) == {0, 1}
    np.testing.assert_array_equal(seg.labels == 1, p.cell)
    cls = seg.classes()
    assert (cls[p.nucleus] == 2).all() and (cls[p.cytoplasm] == 1).all()
    r0, c0, r1, c1 = p.bbox
    assert p.cell[r0:r1, c0:c1].sum() == p.cell.sum()


def test_deterministic():
    c = draw_cell(np.random.default_rng(3), PROFILES["neutrophil"], size=96)
    a, b = segment(c.image), segment(c.image.copy())
    np.testing.assert_array_equal(a.labels, b.labels)


def test_field_finds_every_cell():
    rng = np.random.default_rng(11)
    names = ("lymphocyte", "neutrophil", "monocyte", "eosinophil", "basophil")
    img, truth = paste_field(rng, names)
    seg = segment(img, "field")
    assert len(seg.cells) == len(names)
    for _nuc, cell in truth:
        best = max(dice(c.cell, cell) for c in seg.cells)
        assert best >= 0.85
    # crop mode keeps only the cell nearest the centre
    crop = segment(img, "crop")
    assert len(crop.cells) == 1


def test_large_image_is_segmented_at_reduced_scale():
    c = draw_cell(np.random.default_rng(5), PROFILES["lymphocyte"], size=96)
    big = np.kron(c.image, np.ones((8, 8, 1), np.uint8))  # 768 x 768
    seg = segment(big, "crop")
    truth = np.kron(c.cell, np.ones((8, 8), bool))
    assert seg.labels.shape == (768, 768)
    assert dice(seg.primary.cell, truth) >= 0.9


# ---------------------------------------------------------------- bad input
def test_blank_image_has_no_cell():
    with pytest.raises(NoCellFoundError, match="uniform"):
        segment(np.full((64, 64, 3), 220, np.uint8))


def test_background_only_has_no_cell():
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(225, 6, (96, 96, 3)), 0, 255).astype(np.uint8)
    with pytest.raises(NoCellFoundError, match="stained like a nucleus"):
        segment(img, "crop")


def test_tiny_image_has_no_cell():
    with pytest.raises(NoCellFoundError, match="smaller than 16"):
        segment(np.zeros((10, 40, 3), np.uint8))


def test_black_cutout_without_object():
    img = np.zeros((64, 64, 3), np.uint8)
    img[0, 0] = 255  # not uniform, but nothing large
    with pytest.raises(NoCellFoundError, match="no non-black object|too small"):
        segment(img, "cutout")


def test_cutout_object_too_small():
    img = np.zeros((200, 200, 3), np.uint8)
    img[100:104, 100:104] = (120, 60, 160)
    with pytest.raises(NoCellFoundError, match="too small"):
        segment(img, "cutout")


def test_cutout_object_without_stain():
    img = np.zeros((96, 96, 3), np.uint8)
    img[20:70, 20:70] = (200, 200, 200)
    img[40:50, 40:50] = (215, 215, 215)
    with pytest.raises(NoCellFoundError, match="no stained nucleus"):
        segment(img, "cutout")


def test_cutout_nucleus_implausible():
    img = np.zeros((120, 120, 3), np.uint8)
    img[10:110, 10:110] = (200, 200, 200)   # large unstained object
    img[50:64, 50:64] = (90, 50, 140)       # stained, but 2% of the object: not a nucleus
    with pytest.raises(NoCellFoundError, match="no plausible nucleus"):
        segment(img, "cutout")


def test_small_stained_speck_is_not_a_cell():
    img = np.full((200, 200, 3), (232, 222, 214), np.uint8)
    img[100:103, 100:103] = (90, 50, 140)
    with pytest.raises(NoCellFoundError, match="large enough"):
        segment(img, "crop")


def test_nucleus_lost_on_resize(monkeypatch):
    import hybridwbc.segment.segmenter as S

    def fake(work, mode, **kw):
        nuc = np.zeros(work.shape[:2], bool)  # nothing survives the resize to full size
        return [(nuc, np.zeros_like(nuc))]

    monkeypatch.setattr(S, "find_cells", fake)
    img = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    with pytest.raises(NoCellFoundError, match="vanished"):
        S.segment(img, "crop", work_side=50)


def test_bad_mode_and_params():
    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ConfigError, match="mode must be one of"):
        segment(img, "tiles")
    with pytest.raises(ConfigError, match="n_clusters >= 2"):
        segment(img, "crop", n_clusters=1)


def test_bad_array_shape():
    with pytest.raises(ImageReadError, match="as an image"):
        as_rgb_uint8(np.zeros((4, 4, 4, 4)))
    with pytest.raises(ImageReadError, match="as an image"):
        as_rgb_uint8(np.zeros((8, 8, 2)))


def test_float_array_with_nan_is_refused():
    holed = np.full((8, 8, 3), 0.5)
    holed[2, 2] = np.nan  # never silently black: that would read as background or stain
    with pytest.raises(ImageReadError, match=r"float image with 3 non-finite values \(NaN or inf\) of 192"):
        as_rgb_uint8(holed)


@pytest.mark.parametrize("kind", ["gray", "rgba", "uint16", "float", "bool", "int32", "gray1"])
def test_input_layouts(kind):
    c = draw_cell(np.random.default_rng(2), PROFILES["lymphocyte"], size=96)
    img = c.image
    if kind == "gray":
        x = img.mean(2).astype(np.uint8)
    elif kind == "gray1":
        x = img[..., :1]
    elif kind == "rgba":
        x = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    elif kind == "uint16":
        x = img.astype(np.uint16) * 257
    elif kind == "float":
        x = img / 255.0
    elif kind == "int32":
        x = img.astype(np.int32) * 1000
    else:
        x = img > 128
    rgb = as_rgb_uint8(x)
    assert rgb.shape == (96, 96, 3) and rgb.dtype == np.uint8
    if kind in ("rgba", "uint16", "float"):
        np.testing.assert_array_equal(rgb, img)
    try:
        seg = segment(x)
        assert seg.primary.nucleus.any()
    except NoCellFoundError:
        assert kind in ("gray", "gray1", "bool")


def test_border_touching_cell():
    c = draw_cell(np.random.default_rng(4), PROFILES["lymphocyte"], size=96)
    img = c.image[:, 30:]  # cut through the cell
    seg = segment(img, "crop")
    assert seg.primary.touches_border
    assert dice(seg.primary.cell, c.cell[:, 30:]) >= 0.85


def test_kmeans_is_deterministic_and_separates():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (200, 3)), rng.normal(20, 1, (100, 3))]).astype(np.float32)
    c1, l1 = kmeans(x, 2)
    c2, l2 = kmeans(x[::-1].copy(), 2)
    assert sorted(np.round(c1[:, 0])) == sorted(np.round(c2[:, 0]))
    assert np.bincount(l1).tolist() in ([200, 100], [100, 200])


# ---------------------------------------------------------------- real data
@pytest.mark.realdata
def test_real_pbc_crops_segment(real_data):
    from hybridwbc.data.io import read_image

    root = real_data / "pbc"
    if not root.is_dir():
        pytest.skip("real PBC data not available")
    found = 0
    for label in ("eosinophil", "basophil", "neutrophil", "lymphocyte", "monocyte"):
        for path in sorted((root / label).glob("*.jpg"))[:4]:
            img = read_image(path)
            seg = segment(img, "crop")
            p = seg.primary
            h, w = p.nucleus.shape
            cy, cx = np.argwhere(p.nucleus).mean(0)
            assert abs(cy - h / 2) < h / 4 and abs(cx - w / 2) < w / 4
            assert 0.01 < p.cell.mean() < 0.5
            found += 1
    assert found == 20


@pytest.mark.realdata
def test_real_cnmc_cutouts_segment(real_data):
    from hybridwbc.data.io import read_image

    root = real_data / "cnmc"
    if not root.is_dir():
        pytest.skip("real C-NMC data not available")
    for path in sorted(root.glob("*/*.bmp"))[:6]:
        seg = segment(read_image(path), "auto")
        assert seg.mode == "cutout"
        assert seg.primary.nucleus.sum() > 0.3 * seg.primary.cell.sum()


def test_dark_granules_are_split_from_the_nucleus_but_dark_lobes_are_not():
    # basophil: granules darker than chromatin leave the nucleus mask
    rng = np.random.default_rng(21)
    c = draw_cell(rng, PROFILES["basophil"], size=128, background="black")
    p = segment(c.image, "auto").primary
    assert dice(p.nucleus, c.nucleus) >= 0.9
    assert p.nucleus.sum() < 1.2 * c.nucleus.sum()
    # a nucleus of two thick lobes, one much darker than the other, keeps both lobes
    img = np.zeros((128, 128, 3), np.uint8)
    yy, xx = np.mgrid[0:128, 0:128]
    cell = (yy - 64) ** 2 + (xx - 64) ** 2 <= 40 ** 2
    left = (yy - 64) ** 2 + (xx - 50) ** 2 <= 13 ** 2
    right = (yy - 64) ** 2 + (xx - 78) ** 2 <= 13 ** 2
    bridge = (abs(yy - 64) <= 3) & (xx >= 50) & (xx <= 78)
    img[cell] = (180, 160, 210)
    img[left | bridge] = (95, 55, 140)
    img[right] = (55, 25, 95)
    img = np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)
    p = segment(img, "cutout").primary
    assert dice(p.nucleus, left | right | bridge) >= 0.9


@pytest.mark.parametrize("shape", ["rim", "crescent"])
def test_dark_chromatin_rim_or_crescent_is_not_taken_for_granules(shape):
    # a lymphoid nucleus whose chromatin is darker at the edge (all round, or on one side)
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:128, 0:128]
    cell = (yy - 64) ** 2 + (xx - 64) ** 2 <= 44 ** 2
    nucleus = (yy - 64) ** 2 + (xx - 64) ** 2 <= 30 ** 2
    inner = (yy - 64) ** 2 + (xx - (64 if shape == "rim" else 70)) ** 2 <= 24 ** 2
    img = np.zeros((128, 128, 3), np.float64)
    img[cell] = (180, 165, 215)
    img[nucleus] = (55, 25, 95)
    img[nucleus & inner] = (95, 60, 145)
    for background in ("black", "smear"):
        if background == "smear":
            img[~cell] = (232, 222, 214)
        im = np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)
        p = segment(im, "auto").primary
        assert dice(p.nucleus, nucleus) >= 0.9, (shape, background)


def test_segmenter_holds_the_settings_once():
    from hybridwbc.segment import VERSION, Segmenter

    c = draw_cell(np.random.default_rng(4), PROFILES["monocyte"], size=96)
    s = Segmenter(mode="crop", min_contrast=35.0)
    np.testing.assert_array_equal(s.segment(c.image).labels, segment(c.image, "crop", min_contrast=35.0).labels)
    assert s.settings() == {"mode": "crop", "n_clusters": 4, "sample": 2048, "min_contrast": 35.0,
                            "min_nucleus_frac": 0.002, "max_cell_ratio": 2.6, "work_side": 160,
                            "cytoplasm_method": "colour", "version": VERSION}
    with pytest.raises(ConfigError, match="mode must be one of"):
        Segmenter(mode="tiles")
    with pytest.raises(ConfigError, match="cytoplasm_method must be one of"):
        Segmenter(cytoplasm_method="snake")
    with pytest.raises(ConfigError, match="work_side >= 16"):
        Segmenter(work_side=8)
