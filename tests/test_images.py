"""graphc.images: the PNG files decode (with a decoder written here from the PNG specification,
zlib and struct only) to the pixels that went in; grids place each image where it belongs; bad
input is a typed error and leaves no file."""
import os
import struct
import zlib

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphcError, ImageError


def decode_png(data):
    """(pixels (H, W) uint8, chunk types) of an 8-bit greyscale, non-interlaced PNG; checks
    the signature, every CRC and the IHDR fields, and undoes all five row filters."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, idat = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append(kind)
        if kind == b"IHDR":
            w, h, depth, colour, compression, filt, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, colour, compression, filt, interlace) == (8, 0, 0, 0, 0)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and pos == len(data)
    raw = zlib.decompress(idat)
    assert len(raw) == h * (w + 1)
    out = np.zeros((h, w), np.int64)
    prev = np.zeros(w, np.int64)
    for r in range(h):
        ftype, row = raw[r * (w + 1)], np.frombuffer(raw, np.uint8, w, r * (w + 1) + 1).astype(np.int64)
        cur = np.zeros(w, np.int64)
        for c in range(w):
            left = cur[c - 1] if c else 0
            upleft = prev[c - 1] if c else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = left
            elif ftype == 2:
                pred = prev[c]
            elif ftype == 3:
                pred = (left + prev[c]) // 2
            else:
                assert ftype == 4
                p = left + prev[c] - upleft
                pa, pb, pc = abs(p - left), abs(p - prev[c]), abs(p - upleft)
                pred = left if pa <= pb and pa <= pc else (prev[c] if pb <= pc else upleft)
            cur[c] = (row[c] + pred) % 256
        out[r], prev = cur, cur
    return out.astype(np.uint8), chunks


def test_save_png_round_trips_floats_and_uint8(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.2, 1.2, size=(7, 13))          # odd sizes, values outside [0, 1] are clipped
    p = tmp_path / "a.png"
    assert gc.images.save_png(p, x) == p
    pixels, chunks = decode_png(p.read_bytes())
    assert chunks == [b"IHDR", b"IDAT", b"IEND"]
    np.testing.assert_array_equal(pixels, np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8))
    u = rng.integers(0, 256, size=(1, 5), dtype=np.uint8)
    gc.images.save_png(tmp_path / "u.png", u)
    np.testing.assert_array_equal(decode_png((tmp_path / "u.png").read_bytes())[0], u)
    gc.images.save_png(tmp_path / "b.png", np.eye(3, dtype=bool))
    np.testing.assert_array_equal(decode_png((tmp_path / "b.png").read_bytes())[0], np.eye(3, dtype=np.uint8) * 255)


def test_save_grid_places_every_image(tmp_path):
    rng = np.random.default_rng(1)
    n, h, w, nrow, scale, pad = 7, 3, 5, 3, 2, 1
    imgs = rng.integers(0, 256, size=(n, 1, h, w), dtype=np.uint8)
    gc.images.save_grid(tmp_path / "g.png", imgs, nrow=nrow, scale=scale, padding=pad, pad_value=1.0)
    pixels, _ = decode_png((tmp_path / "g.png").read_bytes())
    rows = -(-n // nrow)
    assert pixels.shape == (rows * (h * scale + pad) + pad, nrow * (w * scale + pad) + pad)
    mask = np.ones(pixels.shape, bool)
    for i in range(n):
        r, c = divmod(i, nrow)
        top, left = pad + r * (h * scale + pad), pad + c * (w * scale + pad)
        cell = pixels[top:top + h * scale, left:left + w * scale]
        np.testing.assert_array_equal(cell[::scale, ::scale], imgs[i, 0])      # nearest-neighbour enlargement
        np.testing.assert_array_equal(cell, np.kron(imgs[i, 0], np.ones((scale, scale), np.uint8)))
        mask[top:top + h * scale, left:left + w * scale] = False
    assert (pixels[mask] == 255).all()                 # padding and the two empty cells of the last row


def test_save_grid_defaults_on_the_digits(tmp_path):
    (x, _), _ = gc.datasets.load_digits(images=True)
    gc.images.save_grid(tmp_path / "d.png", x[:10, 0])          # (N, H, W) works too; 4 per row by default
    pixels, _ = decode_png((tmp_path / "d.png").read_bytes())
    assert pixels.shape == (3 * 33 + 1, 4 * 33 + 1)
    np.testing.assert_array_equal(pixels[1:33:4, 1:33:4], np.rint(x[0, 0] * 255).astype(np.uint8))
    assert pixels[0, 0] == 128                                  # pad_value 0.5


@pytest.mark.parametrize("images, kwargs", [
    (np.zeros((2, 3, 8, 8)), {}),                 # three channels
    (np.zeros((8, 8)), {}),                       # one image, no batch axis
    (np.zeros((0, 8, 8)), {}),                    # no image
    (np.zeros((2, 8, 0)), {}),                    # zero width
    (np.zeros((2, 8, 8)), {"nrow": 0}),
    (np.zeros((2, 8, 8)), {"nrow": 1.5}),
    (np.zeros((2, 8, 8)), {"scale": 0}),
    (np.zeros((2, 8, 8)), {"scale": True}),
    (np.zeros((2, 8, 8)), {"padding": -1}),
    (np.zeros((2, 8, 8)), {"pad_value": 2.0}),
    (np.zeros((2, 8, 8)), {"scale": 5000}),       # a picture over the side cap
    (np.full((2, 8, 8), np.nan), {}),
    (np.zeros((2, 8, 8), complex), {}),
    (np.array([["a"]]), {}),
])
def test_bad_grid_input_is_a_typed_error_and_writes_nothing(tmp_path, images, kwargs):
    p = tmp_path / "bad.png"
    with pytest.raises(ImageError) as e:
        gc.images.save_grid(p, images, **kwargs)
    assert isinstance(e.value, GraphcError) and isinstance(e.value, ValueError)
    assert "save_grid" in str(e.value)
    assert not p.exists() and os.listdir(tmp_path) == []


@pytest.mark.parametrize("array", [np.zeros(5), np.zeros((2, 2, 2)), np.zeros((0, 3)), np.array([[np.nan]]),
                                   np.zeros((2, 2), dtype=object)])
def test_bad_png_input_is_a_typed_error(tmp_path, array):
    with pytest.raises(ImageError, match="encode_png"):
        gc.images.save_png(tmp_path / "bad.png", array)
    assert os.listdir(tmp_path) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    p = tmp_path / "keep.png"
    gc.images.save_png(p, np.zeros((2, 2)))
    before = p.read_bytes()
    with pytest.raises(ImageError):
        gc.images.save_png(p, np.zeros(3))
    assert p.read_bytes() == before
