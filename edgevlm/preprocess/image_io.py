"""Image loading: any file Pillow reads -> one upright RGB image, in bounded memory.

What `load_image` does, in order:
- opens the file; a file that is missing, empty, not an image, truncated or corrupt raises
  ImageLoadError naming the file and the fix;
- takes the first frame of animations (GIF, APNG, WebP);
- bounds memory for huge images (more than `max_pixels` pixels): JPEGs are decoded at 1/2, 1/4
  or 1/8 scale by libjpeg (`Image.draft`), non-interlaced 8-bit PNGs are decoded band by band
  by libvips and box-reduced (png_bands.py); any other format is decoded whole only up to
  `max_decode_pixels` and refused beyond. Pillow's DecompressionBombError is caught and the file
  re-read under a scoped pixel limit, since one of those bounded paths then applies. The result
  has at most `max_pixels` pixels (default 4096^2: 9 slices of 448^2 need ~1.8M);
- converts every mode to RGB: alpha is composited on white, 16-bit / 32-bit / float grayscale
  is rescaled to 8 bits (not clipped), CMYK / palette / YCbCr go through Pillow;
- applies the EXIF orientation (the transposes `ImageOps.exif_transpose` uses; read before
  any reduction because TIFF orientation tags do not survive a resize).

A reduced image remembers the original (upright) size; `original_size(image)` returns it and the
slicer plans the grid from it, so grids, sizes and prompt placeholders equal what the official
processor computes from the full image. Only pixel values differ (resampled twice).
"""

from __future__ import annotations

import io
import math
import struct
import threading
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgevlm.errors import ImageLoadError
from edgevlm.preprocess import png_bands

MAX_PIXELS = 4096 * 4096
MAX_DECODE_PIXELS = 1 << 28  # whole-image decodes beyond this (~1 GiB as RGBA) are refused
ORIGINAL_SIZE_KEY = "edgevlm.original_size"  # info[key] = ((orig_w, orig_h), (w, h) it applies to)

_FORMATS = "JPEG, PNG, WebP, GIF, BMP or TIFF"
_CORRUPT_FIX = "the file is truncated or corrupt: copy or download it again, or re-export it from an image editor"
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError)
# EXIF orientation -> transpose that makes the image upright (as ImageOps.exif_transpose).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}
_limit_lock = threading.Lock()


def load_image(source, *, max_pixels: int = MAX_PIXELS, max_decode_pixels: int = MAX_DECODE_PIXELS,
               max_source_pixels: int | None = None) -> Image.Image:
    """A path, bytes or PIL image -> an upright RGB PIL image of at most `max_pixels` pixels.

    PIL images are already decoded (or the caller owns their file), so they are converted and
    oriented but never reduced, and their current frame is used. A file whose header declares
    more than `max_source_pixels` (default: limits.MAX_IMAGE_PIXELS, $EDGEVLM_MAX_IMAGE_PIXELS)
    is refused before any pixel is decoded: even a bounded-memory reduction costs CPU time in
    proportion to the source (a 100000x100000 PNG: minutes).
    """
    if isinstance(source, Image.Image):
        try:
            return _finish(source, _orientation(source), source.size, reduced=False)
        except _DECODE_ERRORS as e:  # a lazily opened image whose file is broken
            raise ImageLoadError(f"the PIL image cannot be decoded ({type(e).__name__}: {e})", _CORRUPT_FIX) from None
    fp, name = _open_source(source)
    with fp:
        try:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # memory is bounded below
                    image = Image.open(fp)
                _check_budget(image, name, max_source_pixels)
                return _decode(image, fp, name, max_pixels, max_decode_pixels)
            except Image.DecompressionBombError:
                fp.seek(0)
                with _pixel_limit(None):  # our own bounds replace Pillow's, for this file only
                    image = Image.open(fp)
                    _check_budget(image, name, max_source_pixels)
                    return _decode(image, fp, name, max_pixels, max_decode_pixels)
        except ImageLoadError:
            raise
        except UnidentifiedImageError:
            raise ImageLoadError(f"{name} is not an image Pillow can read{_sniff(fp)}",
                                 f"pass a {_FORMATS} file (check that the extension matches the content)") from None
        except MemoryError:
            raise ImageLoadError(f"{name} is too large to decode in the available memory",
                                 "downscale the image or convert it to JPEG (decoded at reduced size)") from None
        except _DECODE_ERRORS as e:
            raise ImageLoadError(f"{name} cannot be decoded ({type(e).__name__}: {e})", _CORRUPT_FIX) from None


def _check_budget(image: Image.Image, name: str, budget: int | None) -> None:
    """Refuse, from the header's size alone, an image above the pixel budget."""
    from edgevlm.limits import MAX_IMAGE_PIXELS

    budget = MAX_IMAGE_PIXELS if budget is None else budget
    width, height = image.size
    if width * height > budget:
        raise ImageLoadError(
            f"{name} is {width}x{height} pixels ({width * height / 1e6:,.0f} megapixels), above the "
            f"{budget / 1e6:,.0f}-megapixel budget for an input image; it was not decoded",
            f"downscale it first (every image is reduced to {MAX_PIXELS / 1e6:.1f} megapixels anyway), or raise "
            "the budget with EDGEVLM_MAX_IMAGE_PIXELS")


def original_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) the slicer should plan for: the pre-reduction size of a reduced image."""
    record = image.info.get(ORIGINAL_SIZE_KEY)
    if record and tuple(record[1]) == image.size:  # stale after a crop/resize by the caller
        return tuple(record[0])
    return image.size


def _open_source(source):
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageLoadError("the image bytes are empty (0 bytes)", "pass the full contents of an image file")
        return io.BytesIO(data), f"<image bytes ({len(data)} bytes)>"
    path = Path(source)
    if not path.exists():
        raise ImageLoadError(f"image {path} does not exist", "check the image path")
    if path.is_dir():
        raise ImageLoadError(f"image {path} is a directory", "pass an image file inside it")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"image {path} is empty (0 bytes)",
                             "the file was not written completely: copy or download it again")
    return open(path, "rb"), str(path)


def _decode(image, fp, name: str, max_pixels: int, max_decode_pixels: int) -> Image.Image:
    image = _first_frame(image)
    orientation = _orientation(image)
    size = image.size
    width, height = size
    if width * height > max_pixels:
        if image.format == "JPEG":
            image.draft(None, _fit(width, height, max_pixels))  # DCT-domain downscale, before decoding
        elif png_bands.supported(image):
            factor = png_bands.reduce_factor(size, max_pixels)
            return _finish(png_bands.decode_reduced(fp, image.mode, factor, flatten), orientation, size, reduced=True)
    if image.width * image.height > max_decode_pixels:
        raise ImageLoadError(
            f"{name} is {width}x{height} pixels; decoding it whole would need "
            f"~{image.width * image.height * 4 >> 20} MiB and {image.format} cannot be decoded at reduced size",
            "downscale it first, or convert it to JPEG or non-interlaced 8-bit PNG (both are read in bounded memory)")
    image.load()
    flat = flatten(image)
    if flat.width * flat.height > max_pixels:
        flat = flat.resize(_fit(*flat.size, max_pixels), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return _finish(flat, orientation, size, reduced=flat.size != size)


def _finish(image: Image.Image, orientation: int, size: tuple[int, int], reduced: bool) -> Image.Image:
    """Flattened image -> upright RGB, detached from its file, remembering its original size."""
    image = flatten(image).convert("RGB")  # convert() copies, so the result never shares the file
    if orientation in _UPRIGHT:
        image = image.transpose(_UPRIGHT[orientation])
        size = (size[1], size[0]) if orientation >= 5 else size
    for key in ("exif", "xmp", "XML:com.adobe.xmp", ORIGINAL_SIZE_KEY):
        image.info.pop(key, None)  # the orientation is applied: never apply it twice
    if reduced:
        image.info[ORIGINAL_SIZE_KEY] = (tuple(size), image.size)
    return image


def _first_frame(image: Image.Image) -> Image.Image:
    if getattr(image, "n_frames", 1) > 1 and image.tell() != 0:
        image.seek(0)
    return image


def _orientation(image: Image.Image) -> int:
    if image.format == "PNG" and "exif" not in image.info:
        # Pillow's PNG getexif() decodes the whole image looking for a late eXIf chunk; the PNG
        # spec puts eXIf before IDAT, where Pillow has already read it into info["exif"].
        return 1
    try:
        value = int(image.getexif().get(0x0112, 1))
    except Exception:  # malformed EXIF: ignore the orientation, keep the pixels
        return 1
    return value if value in _UPRIGHT else 1


def _fit(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """Largest size with the same aspect ratio and at most max_pixels pixels."""
    scale = math.sqrt(max_pixels / (width * height))
    w, h = max(1, min(width, int(width * scale))), max(1, min(height, int(height * scale)))
    if w * h > max_pixels:  # only when one side was clamped up to 1
        w, h = (w, max(1, max_pixels // w)) if w == 1 else (max(1, max_pixels // h), h)
    return w, h


def flatten(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit "L" or "RGB" without alpha (composited on white) or palette.

    Grayscale stays "L" so a following resize touches one channel; the caller converts to RGB.
    """
    mode = image.mode
    if mode in ("RGB", "L"):
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image)), "L")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")  # P/L/RGB with a tRNS colour become RGBA too
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return image.convert("L" if mode == "1" else "RGB")
    except ValueError:
        raise ImageLoadError(f"images of Pillow mode {mode} cannot be converted to RGB",
                             "convert the image to sRGB (e.g. export it as PNG or JPEG) first") from None


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """16-bit, 32-bit and float grayscale -> uint8 by scaling the value range, never clipping.

    uint16 (I;16*) maps 0..65535 to 0..255 (65535 -> 255). Wider ints are read as 8-bit data if
    they fit 0..255, as 16-bit if they fit 0..65535, else min-max scaled. Floats in [0, 1] are
    scaled by 255, floats in [0, 255] kept, any other range min-max scaled; NaN/inf become 0.
    """
    kind, bits = values.dtype.kind, values.dtype.itemsize * 8
    finite = np.isfinite(values) if kind == "f" else None
    data = values if finite is None else np.where(finite, values, 0)
    low, high = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if kind == "u" and bits == 16:
        low, top = 0.0, 65535.0
    elif kind == "f" and low >= 0.0 and high <= 1.0:
        low, top = 0.0, 1.0
    elif low >= 0.0 and high <= 255.0:
        low, top = 0.0, 255.0
    elif kind != "f" and low >= 0.0 and high <= 65535.0:
        low, top = 0.0, 65535.0
    else:
        top = high
    scale = 255.0 / ((top - low) or 1.0)
    out = np.empty(data.shape, np.uint8)
    flat_in, flat_out = data.reshape(-1), out.reshape(-1)
    for start in range(0, flat_in.size, 1 << 22):  # blocks: float temporaries stay small
        block = flat_in[start:start + (1 << 22)].astype(np.float64)
        flat_out[start:start + block.size] = np.rint((block - low) * scale).clip(0, 255)
    return out


@contextmanager
def _pixel_limit(limit):
    """Pillow's decompression-bomb limit is a module global: change it under a lock, restore it."""
    with _limit_lock:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = limit
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _sniff(fp) -> str:
    """A hint about what a non-image file is (text is the usual mistake)."""
    try:
        fp.seek(0)
        head = fp.read(64)
    except (OSError, ValueError):
        return ""
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return f" (it starts with text: {head[:24].decode('ascii')!r})"
    return f" (it starts with bytes {head[:8].hex(' ')})"
