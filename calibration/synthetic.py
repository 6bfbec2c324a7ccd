"""Built-in synthetic images for calibration and verification: shapes, colours and text drawn
with Pillow on canvases of varied sizes and aspect ratios (so slicing produces varied grids)."""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 70), "blue": (40, 80, 220), "yellow": (235, 200, 40),
           "black": (20, 20, 20), "orange": (240, 140, 30), "purple": (140, 60, 180), "gray": (128, 128, 128)}
WORDS = ("EDGE", "NPU", "CAT", "SEVEN", "42", "ZERO", "MAP", "RUN")

# (width, height) table for verification: square, landscape, portrait, a 3x3 grid, extreme strips.
VERIFICATION_SIZES = ((448, 448), (1000, 600), (600, 1000), (1344, 1344), (3000, 200), (17, 23))


def scene(width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    background = tuple(rng.randint(200, 255) for _ in range(3))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 6)):
        colour = COLOURS[rng.choice(list(COLOURS))]
        w = max(2, int(width * rng.uniform(0.1, 0.35)))
        h = max(2, int(height * rng.uniform(0.1, 0.35)))
        x, y = rng.randint(0, max(0, width - w)), rng.randint(0, max(0, height - h))
        kind = rng.choice(("ellipse", "rectangle", "triangle"))
        if kind == "ellipse":
            draw.ellipse((x, y, x + w, y + h), fill=colour)
        elif kind == "rectangle":
            draw.rectangle((x, y, x + w, y + h), fill=colour)
        else:
            draw.polygon([(x + w // 2, y), (x + w, y + h), (x, y + h)], fill=colour)
    draw.text((rng.randint(0, max(0, width - 40)), rng.randint(0, max(0, height - 12))), rng.choice(WORDS),
              fill=(0, 0, 0))
    return image


def calibration_images(count: int, seed: int = 0) -> list[Image.Image]:
    """`count` scenes with aspect ratios from 1:3 to 3:1 and areas around one to four slices."""
    rng = random.Random(seed)
    images = []
    for i in range(count):
        aspect = 3 ** rng.uniform(-1, 1)
        area = rng.uniform(0.5, 4.0) * 448 * 448
        width, height = max(16, int((area * aspect) ** 0.5)), max(16, int((area / aspect) ** 0.5))
        images.append(scene(width, height, seed * 10_000 + i))
    return images


def verification_images(seed: int = 1) -> list[tuple[str, Image.Image]]:
    return [(f"{w}x{h}", scene(w, h, seed * 10_000 + i)) for i, (w, h) in enumerate(VERIFICATION_SIZES)]
