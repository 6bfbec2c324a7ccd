"""Reduced decoding of huge PNGs in bounded memory (image_io uses it above `max_pixels`).

Pillow can only decode a PNG whole, and libpng has no reduced-size decode like JPEG's. For
non-interlaced 8-bit PNGs we inflate the IDAT stream ourselves, cut it into bands of scanlines,
and let Pillow unfilter each band as a small PNG of its own; each band is flattened (palette,
alpha) and box-reduced by an integer factor. Peak memory is one band plus the reduced output,
whatever the image height.

PNG filters (Up, Average, Paeth) read the previous scanline, so each band PNG starts with the
previous band's last *reconstructed* scanline stored unfiltered (filter type 0); that row is
dropped after decoding. Bands are a multiple of the factor tall, so reducing band by band gives
exactly the pixels of reducing the whole image at once.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Callable, Iterator

from PIL import Image

BAND_BYTES = 16 << 20  # filtered scanline bytes per band
_CHANNELS = {"L": 1, "P": 1, "LA": 2, "RGB": 3, "RGBA": 4}  # 8-bit Pillow rawmodes we can band
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_KEEP = (b"PLTE", b"tRNS")  # chunks a band needs to decode to the same pixels


def supported(image: Image.Image) -> bool:
    """Non-interlaced, single-frame, 8-bit-per-sample PNG (what almost every large PNG is)."""
    if image.format != "PNG" or image.info.get("interlace") or getattr(image, "n_frames", 1) != 1:
        return False
    return len(image.tile) == 1 and image.tile[0][0] == "zip" and image.tile[0][3] in _CHANNELS


def reduce_factor(size: tuple[int, int], max_pixels: int) -> int:
    """Smallest integer factor whose (rounded up) reduced size has at most max_pixels pixels."""
    width, height = size
    factor = max(2, math.ceil(math.sqrt(width * height / max_pixels)))
    while math.ceil(width / factor) * math.ceil(height / factor) > max_pixels:
        factor += 1
    return factor


def decode_reduced(fp, factor: int, flatten: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """PNG file object -> the image box-reduced by `factor`, flattened by `flatten` band by band."""
    header, kept, idat = _chunks(fp)
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color)
    if depth != 8 or interlace or channels is None:
        raise ValueError("banded decoding needs a non-interlaced 8-bit PNG")
    stride = 1 + width * channels
    rows = max(factor, BAND_BYTES // stride // factor * factor)
    stream = _Inflater(idat)
    out, previous = None, b""
    for top in range(0, height, rows):
        count = min(rows, height - top)
        raw = stream.read(count * stride)
        if previous:  # the previous band's last row, unfiltered, so this band's filters see it
            raw = b"\x00" + previous + raw
        band = _band(header, kept, 1 if previous else 0, count, raw)
        previous = band.crop((0, band.height - 1, width, band.height)).tobytes()  # reconstructed last row
        if band.height != count:
            band = band.crop((0, 1, width, band.height))
        small = flatten(band).reduce(factor)
        if out is None:
            out = Image.new(small.mode, (math.ceil(width / factor), math.ceil(height / factor)))
        out.paste(small, (0, top // factor))
    return out


def _band(header: bytes, kept: list[tuple[bytes, bytes]], extra_rows: int, rows: int, raw: bytes) -> Image.Image:
    """A standalone PNG of `extra_rows + rows` scanlines, decoded by Pillow."""
    band_header = header[:4] + struct.pack(">I", extra_rows + rows) + header[8:]
    parts = [_SIGNATURE, _chunk(b"IHDR", band_header)]
    parts += [_chunk(kind, data) for kind, data in kept]
    parts += [_chunk(b"IDAT", zlib.compress(raw, 0)), _chunk(b"IEND", b"")]  # stored: cheap to write and read
    image = Image.open(io.BytesIO(b"".join(parts)))
    image.load()
    return image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _chunks(fp) -> tuple[bytes, list, Iterator[bytes]]:
    """(IHDR payload, chunks to keep, iterator over IDAT payloads read lazily from fp)."""
    fp.seek(0)
    if fp.read(8) != _SIGNATURE:
        raise SyntaxError("not a PNG file")
    header, kept = None, []
    while True:
        length, kind = _chunk_head(fp)
        if kind == b"IDAT":
            break
        if kind == b"IEND":
            raise SyntaxError("PNG file has no image data (IDAT)")
        data = fp.read(length)
        fp.read(4)  # CRC: Pillow already checked the header chunks when it opened the file
        if kind == b"IHDR":
            header = data
        elif kind in _KEEP:
            kept.append((kind, data))
    if header is None or len(header) != 13:
        raise SyntaxError("PNG file has no valid IHDR chunk")

    def idat(length: int = length) -> Iterator[bytes]:
        kind = b"IDAT"
        while kind == b"IDAT":
            data = fp.read(length)
            if len(data) != length:
                raise EOFError("PNG image data is truncated")
            fp.read(4)
            yield data
            length, kind = _chunk_head(fp, allow_eof=True)

    return header, kept, idat()


def _chunk_head(fp, allow_eof: bool = False) -> tuple[int, bytes]:
    head = fp.read(8)
    if len(head) != 8:
        if allow_eof:
            return 0, b""
        raise EOFError("PNG file is truncated")
    return struct.unpack(">I", head[:4])[0], head[4:]


class _Inflater:
    """Exact-size reads from the zlib stream spread over IDAT chunks, without inflating ahead."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._zlib = zlib.decompressobj()
        self._buffer = bytearray()
        self._pending = b""

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not self._pending:
                self._pending = next(self._chunks, b"")
                if not self._pending:
                    self._buffer += self._zlib.flush()
                    if len(self._buffer) < size:
                        raise EOFError("PNG image data ends early (the file is truncated)")
                    break
            self._buffer += self._zlib.decompress(self._pending, max(size - len(self._buffer), 1 << 16))
            self._pending = self._zlib.unconsumed_tail
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out
