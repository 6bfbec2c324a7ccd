"""Synthetic visual question answering: Pillow scenes with a scene description and short answers.

Every sample is a pure function of (split, index): scenes for the held-out split come from a
seed range the training split never uses. A scene is a grid of cells on a canvas of varied size
and aspect ratio (so LLaVA-UHD slicing varies); shapes of distinct colours sit in some cells and
an optional large word or number in another, so questions about colour, shape, count, relative
position and written text all have exactly one short answer (one word or a number).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 70), "blue": (40, 80, 220), "yellow": (235, 200, 40),
           "purple": (140, 60, 180), "orange": (240, 140, 30)}
KINDS = ("circle", "square", "triangle")
WORDS = ("CAT", "DOG", "SUN", "MAP", "RUN", "BOX", "NPU", "EDGE")
TEXT_COLOUR = (20, 20, 20)
# Relative frequency of scenes with 1, 2, 3, 4 shapes (uniform for the shipped oracle; weighting
# toward single shapes did not help it learn faster).
SHAPE_COUNT_WEIGHTS = (1, 1, 1, 1)
SPLIT_SEED_BASE = {"train": 0, "heldout": 1_000_000_000}
QUESTION_KINDS = ("count", "colour", "shape", "position", "word", "number")


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels

    @property
    def centre(self) -> tuple[int, int]:
        return (self.box[0] + self.box[2]) // 2, (self.box[1] + self.box[3]) // 2


@dataclass(frozen=True)
class Scene:
    size: tuple[int, int]  # (width, height)
    background: tuple[int, int, int]
    shapes: tuple[Shape, ...]
    text: str | None = None
    text_box: tuple[int, int, int, int] | None = None  # the cell the text is drawn in
    font_size: int = 0


@dataclass(frozen=True)
class Sample:
    split: str
    index: int
    scene: Scene
    question: str
    answer: str
    kind: str  # one of QUESTION_KINDS
    meta: dict = field(default_factory=dict, compare=False)

    def image(self) -> Image.Image:
        return render(self.scene)


@lru_cache(maxsize=16)
def _font(size: int):
    return ImageFont.load_default(size=size)


def _canvas_size(rng: random.Random, scale: int) -> tuple[int, int]:
    # Areas from under one slice (no grid) to about three slices; aspect ratios 1:3 .. 3:1.
    aspect = 3 ** rng.uniform(-1, 1)
    area = rng.uniform(0.5, 2.6) * scale * scale
    return max(48, int((area * aspect) ** 0.5)), max(48, int((area / aspect) ** 0.5))


def _grid(size: tuple[int, int]) -> tuple[int, int]:
    w, h = size
    if w >= 1.6 * h:
        return 3, 1 if w >= 2.6 * h else 2
    if h >= 1.6 * w:
        return 1 if h >= 2.6 * w else 2, 3
    return 2, 2


def make_scene(seed: int, scale: int = 112) -> Scene:
    rng = random.Random(seed)
    size = _canvas_size(rng, scale)
    cols, rows = _grid(size)
    cell_w, cell_h = size[0] / cols, size[1] / rows
    cells = [(c, r) for r in range(rows) for c in range(cols)]
    rng.shuffle(cells)
    with_text = rng.random() < 0.6
    n_shapes = min(rng.choices((1, 2, 3, 4), SHAPE_COUNT_WEIGHTS)[0], len(cells) - (1 if with_text else 0))
    colours = rng.sample(list(COLOURS), n_shapes)
    shapes = []
    for (c, r), colour in zip(cells[:n_shapes], colours):
        side = min(cell_w, cell_h) * rng.uniform(0.55, 0.85)
        cx = (c + 0.5) * cell_w + rng.uniform(-0.5, 0.5) * (cell_w - side) * 0.8
        cy = (r + 0.5) * cell_h + rng.uniform(-0.5, 0.5) * (cell_h - side) * 0.8
        box = (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
        shapes.append(Shape(rng.choice(KINDS), colour, box))
    background = tuple(rng.randint(225, 255) for _ in range(3))
    if not with_text:
        return Scene(size, background, tuple(shapes))
    c, r = cells[n_shapes]
    text = rng.choice(WORDS) if rng.random() < 0.5 else str(rng.randint(0, 99))
    text_box = (int(c * cell_w), int(r * cell_h), int((c + 1) * cell_w), int((r + 1) * cell_h))
    # The largest font whose text fits 85% of the cell: legible in the source view and the slices.
    font_size = max(8, int(min(cell_h * 0.6, cell_w * 0.85 / max(2, len(text)) * 1.6)))
    while font_size > 8:
        x0, y0, x1, y1 = _font(font_size).getbbox(text)
        if x1 - x0 <= 0.85 * cell_w and y1 - y0 <= 0.85 * cell_h:
            break
        font_size -= 1
    return Scene(size, background, tuple(shapes), text, text_box, font_size)


def render(scene: Scene) -> Image.Image:
    image = Image.new("RGB", scene.size, scene.background)
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        x0, y0, x1, y1 = shape.box
        fill = COLOURS[shape.colour]
        if shape.kind == "circle":
            draw.ellipse(shape.box, fill=fill)
        elif shape.kind == "square":
            draw.rectangle(shape.box, fill=fill)
        else:
            draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)
    if scene.text:
        font = _font(scene.font_size)
        bx0, by0, bx1, by1 = font.getbbox(scene.text)
        x0, y0, x1, y1 = scene.text_box
        x = (x0 + x1 - (bx1 - bx0)) // 2 - bx0
        y = (y0 + y1 - (by1 - by0)) // 2 - by0
        draw.text((x, y), scene.text, fill=TEXT_COLOUR, font=font)
    return image


def questions(scene: Scene) -> list[tuple[str, str, str]]:
    """Every (kind, question, answer) with exactly one correct short answer for this scene."""
    out = [("count", "How many shapes are there?", str(len(scene.shapes)))]
    kinds = [s.kind for s in scene.shapes]
    for shape in scene.shapes:
        out.append(("shape", f"What shape is {shape.colour}?", shape.kind))
        if kinds.count(shape.kind) == 1:
            out.append(("colour", f"What color is the {shape.kind}?", shape.colour))
    for a in scene.shapes:
        for b in scene.shapes:
            # Only pairs clearly apart horizontally, so "left"/"right" is unambiguous.
            if a is not b and abs(a.centre[0] - b.centre[0]) > 0.25 * scene.size[0]:
                side = "left" if a.centre[0] < b.centre[0] else "right"
                out.append(("position", f"Is the {a.colour} shape left or right of the {b.colour} shape?", side))
    if scene.text:
        if scene.text.isdigit():
            out.append(("number", "What number is written?", scene.text))
        else:
            out.append(("word", "What word is written?", scene.text))
    return out


def sample(split: str, index: int, scale: int = 112) -> Sample:
    """The index-th sample of a split: a scene and one question about it, chosen by kind first."""
    if split not in SPLIT_SEED_BASE:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLIT_SEED_BASE)}")
    seed = SPLIT_SEED_BASE[split] + index
    scene = make_scene(seed, scale)
    rng = random.Random(seed * 7 + 3)
    options = questions(scene)
    by_kind: dict[str, list] = {}
    for q in options:
        by_kind.setdefault(q[0], []).append(q)
    kind = rng.choice(sorted(by_kind))
    kind, question, answer = rng.choice(by_kind[kind])
    return Sample(split, index, scene, question, answer, kind)


def dataset(split: str, count: int, start: int = 0, scale: int = 112) -> list[Sample]:
    return [sample(split, i, scale) for i in range(start, start + count)]


def corpus_lines() -> list[str]:
    """Every question template and answer, for training a tokenizer whose answers are compact."""
    lines = ["How many shapes are there?", "What number is written?", "What word is written?"]
    for colour in COLOURS:
        lines.append(f"What shape is {colour}?")
        for other in COLOURS:
            lines.append(f"Is the {colour} shape left or right of the {other} shape?")
    lines += [f"What color is the {kind}?" for kind in KINDS]
    answers = list(COLOURS) + list(KINDS) + ["left", "right"] + list(WORDS) + [str(i) for i in range(100)]
    return lines + answers
