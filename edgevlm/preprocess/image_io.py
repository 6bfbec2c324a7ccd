"""Image loading with Pillow: EXIF orientation, any mode to RGB, first frame of animations,
bounded memory for huge images, and clear errors for files that are not images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgevlm.errors import ImageLoadError

# Enough for 9 slices of 448x448 with a wide margin; larger images are reduced while decoding.
MAX_PIXELS = 4096 * 4096


def load_image(source, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Path, bytes or PIL image -> RGB PIL image."""
    if isinstance(source, Image.Image):
        return _to_rgb(source)
    name = str(source) if not isinstance(source, (bytes, bytearray)) else "<bytes>"
    if not isinstance(source, (bytes, bytearray)):
        path = Path(source)
        if not path.is_file():
            raise ImageLoadError(f"image {path} does not exist", "check the --image path")
        if path.stat().st_size == 0:
            raise ImageLoadError(f"image {path} is empty (0 bytes)", "the file was not written completely; copy it again")
        source = path.read_bytes()
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # we bound memory ourselves with draft()/reduce() below
    try:
        image = Image.open(io.BytesIO(source))
        if image.width * image.height > max_pixels and image.format == "JPEG":
            scale = (max_pixels / (image.width * image.height)) ** 0.5
            image.draft("RGB", (int(image.width * scale), int(image.height * scale)))  # DCT-domain downscale
        image.seek(0)  # animated images: first frame
        image.load()
        if image.width * image.height > max_pixels:
            factor = int(np.ceil((image.width * image.height / max_pixels) ** 0.5))
            image = image.reduce(factor)
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name} is not an image Pillow can read", "pass a JPEG, PNG, WebP, GIF, BMP or TIFF file") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"{name} cannot be decoded ({e})", "the file is truncated or corrupt; copy it again") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
