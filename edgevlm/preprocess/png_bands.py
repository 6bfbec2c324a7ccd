"""Reduced decoding of huge PNGs in bounded memory (image_io uses it above `max_pixels`).

Pillow can only decode a PNG whole, and libpng has no reduced-size decode like JPEG's. libvips
(pyvips) decodes a PNG sequentially: we ask it for bands of scanlines top to bottom, and each
band is flattened (palette, alpha) by image_io's `flatten` and box-reduced by Pillow by an integer
factor. Peak memory is one band plus the reduced output, whatever the image height. Bands are a
multiple of the factor tall, so reducing band by band gives exactly the pixels of reducing the
whole image at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from PIL import Image

BAND_BYTES = 16 << 20  # decoded bytes per band
_CHANNELS = {"L": 1, "P": 1, "LA": 2, "RGB": 3, "RGBA": 4}  # 8-bit Pillow rawmodes we can band
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}  # libvips bands -> Pillow mode (palettes come expanded)


def supported(image: Image.Image) -> bool:
    """Non-interlaced, single-frame, 8-bit-per-sample PNG (what almost every large PNG is): libvips
    decodes it row by row (an interlaced one it would decode whole)."""
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


def decode_reduced(fp, mode: str, factor: int, flatten: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """PNG file object (`mode` as Pillow opened it) -> the image box-reduced by `factor`, flattened
    by `flatten` band by band."""
    import pyvips

    pyvips.cache_set_max(0)  # vips' operation cache would keep each band's pixels alive
    try:
        # fail_on="error": a truncated or corrupt file raises instead of decoding to grey rows
        if hasattr(fp, "getvalue"):
            png = pyvips.Image.pngload_buffer(fp.getvalue(), access="sequential", fail_on="error")
        else:
            png = pyvips.Image.pngload(str(Path(fp.name)), access="sequential", fail_on="error")
        if png.format != "uchar" or png.bands not in _MODES:
            raise ValueError(f"banded decoding needs an 8-bit PNG (libvips reads {png.bands} bands of {png.format})")
        if mode in ("L", "RGB") and png.bands == _CHANNELS[mode] + 1:
            png = png.extract_band(0, n=_CHANNELS[mode])  # a tRNS colour key: Pillow (and flatten) keep no alpha
        width, height, mode = png.width, png.height, _MODES[png.bands]
        rows = max(factor, BAND_BYTES // (width * png.bands) // factor * factor)
        out = Image.new("L" if mode == "L" else "RGB", (math.ceil(width / factor), math.ceil(height / factor)))
        region = pyvips.Region.new(png)  # one reader, asked for rows top to bottom
        for top in range(0, height, rows):
            count = min(rows, height - top)
            band = Image.frombytes(mode, (width, count), region.fetch(0, top, width, count))
            out.paste(flatten(band).reduce(factor), (0, top // factor))
        return out
    except pyvips.Error as e:  # image_io turns OSError into "truncated or corrupt"
        raise OSError(str(e).strip().splitlines()[-1]) from None
