"""Fixtures of the serving tests: a folder of every awkward kind of input file."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hybridwbc.data.synthetic import PROFILES, draw_cell


def bomb_png(width: int = 9_000, height: int = 9_000) -> bytes:
    """A valid-looking PNG whose header claims ``width x height`` pixels, a few hundred bytes long."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _make_bad_files(folder: Path, loops: bool = True, weird_name: bool = True) -> dict[str, Path]:
    """Write one file of each awkward kind into ``folder``; returns name -> path.

    Also creates a good cell under a non-UTF-8 name (``caf\\xe9.png``) and, with ``loops``, ``loop.png``
    (a symlink to itself) and ``loopdir`` (a folder symlink to its parent); these are not in the returned dict.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cell = draw_cell(np.random.default_rng(3), PROFILES["lymphocyte"], size=64).image
    jpeg = io.BytesIO()
    Image.fromarray(cell).save(jpeg, format="JPEG", quality=90)
    bmp = io.BytesIO()
    Image.fromarray(cell).save(bmp, format="BMP")
    out = {
        "corrupt.jpg": jpeg.getvalue()[:600] + b"\xff\xd9",      # header intact, scan data cut short
        "truncated.bmp": bmp.getvalue()[: len(bmp.getvalue()) // 2],
        "zero.jpg": b"",
        "text.jpg": b"this is a text file, not a JPEG\n",
        "bomb.png": bomb_png(),
    }
    for name, data in out.items():
        (folder / name).write_bytes(data)
    gray = np.asarray(Image.fromarray(cell).convert("L"))
    Image.fromarray(gray, mode="L").save(folder / "gray.png")
    Image.fromarray(np.dstack([cell, np.full(cell.shape[:2], 255, np.uint8)]), mode="RGBA").save(folder / "rgba.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(folder / "sixteen.png")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "one.png")
    names = dict.fromkeys(list(out) + ["gray.png", "rgba.png", "sixteen.png", "one.png"])
    if loops:
        if not (folder / "loop.png").is_symlink():
            os.symlink("loop.png", folder / "loop.png")
        if not (folder / "loopdir").is_symlink():
            os.symlink(".", folder / "loopdir")
    if weird_name:
        with open(os.path.join(os.fsencode(folder), b"caf\xe9.png"), "wb") as fh:
            buf = io.BytesIO()
            Image.fromarray(cell).save(buf, format="PNG")
            fh.write(buf.getvalue())
    return {n: folder / n for n in names}


@pytest.fixture(scope="session")
def make_bad_files():
    """``make_bad_files(folder, loops=True, weird_name=True) -> {name: path}``: one file of each awkward kind."""
    return _make_bad_files
