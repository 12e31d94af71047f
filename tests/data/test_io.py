import numpy as np
import pytest
from PIL import Image

from hybridwbc.data.io import read_image
from hybridwbc.errors import HybridWBCError, ImageReadError


def test_rgb_png_round_trip(tmp_path, cell_image):
    p = tmp_path / "a.png"
    Image.fromarray(cell_image).save(p)
    out = read_image(p)
    assert out.dtype == np.uint8 and out.shape == (96, 96, 3)
    np.testing.assert_array_equal(out, cell_image)
    np.testing.assert_array_equal(read_image(p.read_bytes()), cell_image)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    g = np.arange(32 * 40, dtype=np.uint8).reshape(32, 40)
    p = tmp_path / "g.png"
    Image.fromarray(g, mode="L").save(p)
    out = read_image(p)
    assert out.shape == (32, 40, 3)
    np.testing.assert_array_equal(out[..., 0], g)
    np.testing.assert_array_equal(out[..., 2], g)


def test_rgba_is_composited_on_white(tmp_path):
    a = np.zeros((16, 16, 4), np.uint8)
    a[..., 0] = 200
    a[:8, ..., 3] = 255  # top half opaque red, bottom half transparent
    p = tmp_path / "a.png"
    Image.fromarray(a, mode="RGBA").save(p)
    out = read_image(p)
    assert tuple(out[0, 0]) == (200, 0, 0)
    assert tuple(out[15, 15]) == (255, 255, 255)


def test_16_bit_is_scaled_to_8_bit(tmp_path):
    a = np.full((16, 16), 65535, np.uint16)
    a[:, :8] = 256 * 10
    p = tmp_path / "deep.png"
    Image.fromarray(a).save(p)
    out = read_image(p)
    assert out.dtype == np.uint8
    assert out[0, 0, 0] == 10 and out[0, 15, 0] == 255


def test_bmp_and_jpeg(tmp_path, cell_image):
    for suffix in (".bmp", ".jpg"):
        p = tmp_path / f"x{suffix}"
        Image.fromarray(cell_image).save(p)
        assert read_image(p).shape == (96, 96, 3)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "empty"),
        (b"this is text, not a jpeg", "not a decodable"),
    ],
)
def test_bad_bytes_on_disk(tmp_path, content, match):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(ImageReadError, match=match):
        read_image(p)


def test_truncated_bmp(tmp_path, cell_image):
    p = tmp_path / "t.bmp"
    Image.fromarray(cell_image).save(p)
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(ImageReadError, match="not a decodable"):
        read_image(p)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")


def test_tiny_image_is_refused(tmp_path):
    p = tmp_path / "one.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(p)
    with pytest.raises(ImageReadError, match="smaller than"):
        read_image(p)


def test_pixel_bound_refuses_before_decoding(tmp_path):
    p = tmp_path / "big.png"
    Image.fromarray(np.zeros((200, 300, 3), np.uint8)).save(p)
    with pytest.raises(ImageReadError, match="exceeds the limit"):
        read_image(p, max_pixels=10_000)


def test_error_is_both_base_and_builtin(tmp_path):
    with pytest.raises(HybridWBCError, match="no such file"):
        read_image(tmp_path / "x.png")
    with pytest.raises(ValueError, match="no such file"):
        read_image(tmp_path / "x.png")


def test_float_tiff_is_scaled_and_nan_pixels_are_refused(tmp_path):
    a = np.tile(np.linspace(0.0, 1.0, 16, dtype=np.float32), (16, 1))
    Image.fromarray(a).save(tmp_path / "f.tif")
    out = read_image(tmp_path / "f.tif")
    assert out.dtype == np.uint8 and out[0, 0, 0] == 0 and out[0, -1, 0] == 255
    a[3, 3], a[4, 4] = np.nan, np.inf
    Image.fromarray(a).save(tmp_path / "nan.tif")
    with pytest.raises(ImageReadError, match=r"nan.tif': 2 of its float pixels are NaN or infinite"):
        read_image(tmp_path / "nan.tif")
