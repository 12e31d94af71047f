"""Reading image files into RGB ``uint8`` arrays.

One function, :func:`read_image`, is the only way pixels enter hybridwbc. It
accepts a path or the encoded bytes of a file, checks the header before
decoding (so a decompression bomb is refused without allocating it), and
normalises every supported mode to ``(H, W, 3) uint8`` RGB:

* grayscale (``L``, ``1``, ``P``) is replicated to three channels;
* ``RGBA`` / ``LA`` are composited onto white (smear backgrounds are light);
* 16-bit and 32-bit integer images are rescaled by their bit depth to 8 bits.

Anything that cannot be decoded raises :class:`~hybridwbc.errors.ImageReadError`
naming the file, so data loaders can skip and report it.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import Union

import numpy as np

from hybridwbc.errors import ImageReadError

__all__ = ["read_image", "IMAGE_SUFFIXES", "DEFAULT_MAX_PIXELS", "MIN_SIDE"]

#: File suffixes (lower case) that the data layer treats as images.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

#: Upper bound on decoded pixels (width * height): 64 megapixels.
DEFAULT_MAX_PIXELS = 64_000_000

#: Smallest accepted side length in pixels; smaller images hold no cell.
MIN_SIDE = 8

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]


def _name(source: Source) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return os.fsdecode(source)


def read_image(source: Source, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file (or its bytes) into an RGB array.

    Parameters
    ----------
    source : str, os.PathLike or bytes
        Path of a JPEG, PNG, BMP or TIFF file, or the file's encoded bytes.
    max_pixels : int, default 64_000_000
        Largest ``width * height`` decoded; larger images are refused from
        their header alone.

    Returns
    -------
    image : ndarray of shape (H, W, 3), dtype uint8
        RGB pixels, C-contiguous.

    Raises
    ------
    ImageReadError
        If the file is missing, empty, not an image, truncated, too large,
        smaller than ``MIN_SIDE`` pixels on a side, of an unsupported mode, or float with NaN or
        infinite pixels.
    """
    from PIL import Image, UnidentifiedImageError

    name = _name(source)
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        else:
            path = Path(os.fsdecode(source))
            if not path.is_file():
                raise ImageReadError(
                    f"Cannot read image {name!r}: no such file. Check the path or the data root."
                )
            data = path.read_bytes()
        if not data:
            raise ImageReadError(
                f"Cannot read image {name!r}: the file is empty (0 bytes). Remove or replace it."
            )
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            width, height = im.size
            if width * height > max_pixels:
                raise ImageReadError(
                    f"Cannot read image {name!r}: {width}x{height} = {width * height} pixels exceeds "
                    f"the limit of {max_pixels}. Downscale it, or raise max_pixels if it is trusted."
                )
            if min(width, height) < MIN_SIDE:
                raise ImageReadError(
                    f"Cannot read image {name!r}: {width}x{height} is smaller than {MIN_SIDE} pixels "
                    "on a side, too small to hold a cell. Remove it from the data set."
                )
            im.load()
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise ImageReadError(
            f"Cannot read image {name!r}: it is not a decodable JPEG/PNG/BMP/TIFF "
            f"({re.sub(r' at 0x[0-9a-f]+', '', str(exc))}). "
            "Remove or replace the file."
        ) from exc
    return _to_rgb_uint8(im, name)


def _to_rgb_uint8(im, name: str) -> np.ndarray:
    mode = im.mode
    if mode in ("RGB",):
        return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return np.ascontiguousarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    if mode in ("L", "1", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im)
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all():
                raise ImageReadError(
                    f"Cannot read image {name!r}: {int(np.count_nonzero(~np.isfinite(arr)))} of its float pixels "
                    "are NaN or infinite. Fill or crop the undefined pixels and save it again."
                )
            arr = np.clip(arr, 0.0, 1.0) * 255.0 if arr.max(initial=0) <= 1.0 else arr
            out = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        else:
            bits = 16 if mode.startswith("I;16") or arr.max(initial=0) < 65536 else 32
            out = (arr.astype(np.uint64) >> (bits - 8)).astype(np.uint8)
        if out.ndim == 2:
            out = np.repeat(out[..., None], 3, axis=2)
        return np.ascontiguousarray(out[..., :3])
    raise ImageReadError(
        f"Cannot read image {name!r}: unsupported image mode {mode!r}. Convert it to RGB."
    )
