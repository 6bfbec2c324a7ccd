"""Synthetic visual question answering: Pillow scenes, one short answer per question, answers
that cannot be guessed from the question.

Every sample is a pure function of (split, index); the held-out split uses a seed range the
training split never does. A sample is drawn *answer first*: the question kind, then the answer
(uniform over the kind's answer set), then a scene built so that answer is the only right one.
So the best blind guess is chance for every kind (calibration/ORACLE_DIAGNOSIS.md: the earlier
scene-first sampling let training settle on the answer prior and ignore the pixels).

Kinds: `count` (1-4 shapes), `colour` of a named shape among distractors of other shapes,
`shape` of a named colour among distractors of other colours, `position` (left/right between two
named shapes), `word` (a large word, >= 2.5 patches tall in the overview), and `small_word` (a
small word on a large canvas: about one patch tall in the overview, about two in the LLaVA-UHD
slices, so only the high-resolution slices make it legible).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 70), "blue": (40, 80, 220), "yellow": (235, 200, 40),
           "purple": (140, 60, 180), "orange": (240, 140, 30)}
KINDS = ("circle", "square", "triangle")
WORDS = ("CAT", "DOG", "SUN", "MAP", "BOX", "NPU", "FOX", "CUP", "HAT", "PEN", "KEY", "JAM")
TEXT_COLOUR = (20, 20, 20)
SPLIT_SEED_BASE = {"train": 0, "heldout": 1_000_000_000}
QUESTION_KINDS = ("count", "colour", "shape", "position", "word", "small_word")
ANSWERS = {"count": ("1", "2", "3", "4"), "colour": tuple(COLOURS), "shape": KINDS, "position": ("left", "right"),
           "word": WORDS, "small_word": WORDS}
SCALE = 112  # the oracle's scale_resolution: canvas areas are chosen relative to one slice
PATCH = 14


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
    text_box: tuple[int, int, int, int] | None = None  # the region the text is centred in
    font_size: int = 0
    small_text: bool = False  # a `small_word` scene: legible in the slices only


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


@lru_cache(maxsize=1024)  # every size a scene uses: load_default decodes the embedded font each call
def _font(size: int):
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=None)  # (word, size) pairs: 12 words x a few hundred sizes
def _text_extent(text: str, size: int) -> tuple[int, int]:
    x0, y0, x1, y1 = _font(size).getbbox(text)
    return x1 - x0, y1 - y0


def _canvas(rng: random.Random, aspect_range: tuple[float, float], area_range: tuple[float, float]) -> tuple[int, int]:
    """A canvas with log-uniform aspect (width/height) and an area in slices (SCALE^2 units)."""
    lo, hi = aspect_range
    aspect = lo * (hi / lo) ** rng.random()
    area = rng.uniform(*area_range) * SCALE * SCALE
    return max(48, int((area * aspect) ** 0.5)), max(48, int((area / aspect) ** 0.5))


def _grid(size: tuple[int, int], cells: int) -> tuple[int, int]:
    """(columns, rows): the fewest cells, at least `cells` of them, closest to square: each shape gets
    as much of the canvas as the scene allows (a shape only ~2 patches wide in the overview is hard
    for a 3-layer tower to tell apart from another; ORACLE_DIAGNOSIS.md §7)."""
    w, h = size
    options = [(c, r) for c in range(1, 7) for r in range(1, 7) if cells <= c * r <= 2 * max(cells, 2)]
    # Cost: how far a cell is from square (log aspect), plus a little for every cell left empty.
    return min(options, key=lambda g: abs(math.log((w / g[0]) / (h / g[1]))) + 0.35 * (g[0] * g[1] - cells))


def _cells(size, grid, region=None) -> list[tuple[float, float, float, float]]:
    """Cell rectangles (x0, y0, x1, y1) of `grid` over `region` (default: the whole canvas)."""
    x0, y0, x1, y1 = region or (0, 0, size[0], size[1])
    cols, rows = grid
    cw, ch = (x1 - x0) / cols, (y1 - y0) / rows
    return [(x0 + c * cw, y0 + r * ch, x0 + (c + 1) * cw, y0 + (r + 1) * ch) for r in range(rows) for c in range(cols)]


def _shape_in(cell, kind: str, colour: str, rng: random.Random) -> Shape:
    cx0, cy0, cx1, cy1 = cell
    cw, ch = cx1 - cx0, cy1 - cy0
    side = min(cw, ch) * rng.uniform(0.7, 0.9)
    cx = (cx0 + cx1) / 2 + rng.uniform(-0.5, 0.5) * (cw - side) * 0.8
    cy = (cy0 + cy1) / 2 + rng.uniform(-0.5, 0.5) * (ch - side) * 0.8
    return Shape(kind, colour, (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2)))


def _background(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randint(225, 255) for _ in range(3))


def _fit_font(text: str, box, fill: float) -> int:
    """The largest font size whose text fits `fill` of the box both ways."""
    width, height = box[2] - box[0], box[3] - box[1]
    size = max(8, int(height * 1.2))
    while size > 6:
        text_width, text_height = _text_extent(text, size)
        if text_width <= fill * width and text_height <= fill * height:
            break
        size -= 1
    return size


def _shapes_scene(rng, size, specs: list[tuple[str, str]], text_cell: bool = False) -> Scene:
    """(kind, colour) specs placed in distinct random cells; optionally a distractor word in a free cell."""
    cells = _cells(size, _grid(size, len(specs) + int(text_cell)))
    rng.shuffle(cells)
    shapes = tuple(_shape_in(cell, kind, colour, rng) for cell, (kind, colour) in zip(cells, specs))
    if text_cell:  # the grid has a cell for the text (sized above)
        box = tuple(int(v) for v in cells[len(specs)])
        text = rng.choice(WORDS)
        return Scene(size, _background(rng), shapes, text, box, _fit_font(text, box, 0.85))
    return Scene(size, _background(rng), shapes)


def _distinct_colours(rng, n: int, exclude=()) -> list[str]:
    return rng.sample([c for c in COLOURS if c not in exclude], n)


def _count(rng, answer: str):
    n = int(answer)
    size = _canvas(rng, (1 / 2, 2), (0.5, 2.6))
    specs = [(rng.choice(KINDS), c) for c in _distinct_colours(rng, n)]
    return _shapes_scene(rng, size, specs, text_cell=rng.random() < 0.3), "How many shapes are there?"


def _colour(rng, answer: str):
    target = rng.choice(KINDS)
    others = [k for k in KINDS if k != target]
    n_distractors = rng.randint(0, 3)
    specs = [(target, answer)] + [(rng.choice(others), c) for c in _distinct_colours(rng, n_distractors, (answer,))]
    size = _canvas(rng, (1 / 2, 2), (0.5, 2.6))
    return _shapes_scene(rng, size, specs, text_cell=rng.random() < 0.3), f"What color is the {target}?"


def _shape(rng, answer: str):
    colours = _distinct_colours(rng, 1 + rng.randint(0, 3))
    specs = [(answer, colours[0])] + [(rng.choice(KINDS), c) for c in colours[1:]]
    size = _canvas(rng, (1 / 2, 2), (0.5, 2.6))
    return _shapes_scene(rng, size, specs, text_cell=rng.random() < 0.3), f"What shape is the {colours[0]} one?"


def _position(rng, answer: str):
    # Wide enough that two shapes can sit clearly apart; only pairs > 25% of the width apart are asked.
    while True:
        size = _canvas(rng, (0.8, 3), (0.5, 2.6))
        specs = [(rng.choice(KINDS), c) for c in _distinct_colours(rng, rng.randint(2, 4))]
        scene = _shapes_scene(rng, size, specs)
        pairs = [(a, b) for a in scene.shapes for b in scene.shapes
                 if a is not b and abs(a.centre[0] - b.centre[0]) > 0.25 * size[0]
                 and (a.centre[0] < b.centre[0]) == (answer == "left")]
        if pairs:
            a, b = rng.choice(pairs)
            return scene, f"Is the {a.colour} shape left or right of the {b.colour} shape?"


def _word(rng, answer: str):
    # Landscape canvas; the word fills a band of half the height, so its glyphs are >= 2.5 patches
    # tall in the overview; shapes in the other half are distractors.
    size = _canvas(rng, (1.0, 2.0), (0.5, 2.0))
    w, h = size
    top = rng.random() < 0.5
    band = (0, 0, w, h // 2) if top else (0, h - h // 2, w, h)
    other = (0, h // 2, w, h) if top else (0, 0, w, h - h // 2)
    cells = _cells(size, (3, 1), other)
    rng.shuffle(cells)
    n = rng.randint(0, 2)
    shapes = tuple(_shape_in(cell, rng.choice(KINDS), c, rng) for cell, c in zip(cells, _distinct_colours(rng, n)))
    return Scene(size, _background(rng), shapes, answer, band, _fit_font(answer, band, 0.9)), "What word is written?"


def _small_word(rng, answer: str):
    # A canvas of ~3.5-4 slices (a 2x2 grid: slices at twice the overview's resolution); the word's
    # capitals are ~1 patch tall in the overview and ~2 in the slices.
    size = _canvas(rng, (0.7, 1.5), (3.5, 4.0))
    w, h = size
    overview_scale = SCALE / (w * h) ** 0.5
    font_size = max(8, int(1.1 * PATCH / overview_scale / 0.75))
    n = rng.randint(1, 3)
    cells = _cells(size, _grid(size, n + 1))
    rng.shuffle(cells)
    box = tuple(int(v) for v in cells[0])
    shapes = tuple(_shape_in(cell, rng.choice(KINDS), c, rng) for cell, c in zip(cells[1:], _distinct_colours(rng, n)))
    return (Scene(size, _background(rng), shapes, answer, box, min(font_size, _fit_font(answer, box, 0.9)), True),
            "What is the small word?")


BUILDERS = {"count": _count, "colour": _colour, "shape": _shape, "position": _position, "word": _word,
            "small_word": _small_word}


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
        out.append(("shape", f"What shape is the {shape.colour} one?", shape.kind))
        if kinds.count(shape.kind) == 1:
            out.append(("colour", f"What color is the {shape.kind}?", shape.colour))
    for a in scene.shapes:
        for b in scene.shapes:
            if a is not b and abs(a.centre[0] - b.centre[0]) > 0.25 * scene.size[0]:
                side = "left" if a.centre[0] < b.centre[0] else "right"
                out.append(("position", f"Is the {a.colour} shape left or right of the {b.colour} shape?", side))
    if scene.text and scene.small_text:
        out.append(("small_word", "What is the small word?", scene.text))
    elif scene.text:
        out.append(("word", "What word is written?", scene.text))
    return out


def sample(split: str, index: int, scale: int = SCALE, kinds: tuple[str, ...] = QUESTION_KINDS,
           weights: tuple[float, ...] | None = None) -> Sample:
    """The index-th sample of a split: kind (uniform over `kinds`, or drawn with `weights`: training
    only, the held-out set stays uniform), then answer (uniform), then a scene with that answer."""
    if split not in SPLIT_SEED_BASE:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLIT_SEED_BASE)}")
    if scale != SCALE:
        raise ValueError(f"the task is drawn for scale_resolution {SCALE}, not {scale}")
    seed = SPLIT_SEED_BASE[split] + index
    rng = random.Random(seed * 7 + 3)
    kind = rng.choices(kinds, weights)[0] if weights else rng.choice(kinds)
    answer = rng.choice(ANSWERS[kind])
    scene, question = BUILDERS[kind](rng, answer)
    return Sample(split, index, scene, question, answer, kind)


def make_scene(seed: int, scale: int = SCALE) -> Scene:
    """A scene of the task's distribution (the scene of sample `seed` of the training stream)."""
    return sample("train", seed, scale).scene


def dataset(split: str, count: int, start: int = 0, scale: int = SCALE) -> list[Sample]:
    return [sample(split, i, scale) for i in range(start, start + count)]


def corpus_lines() -> list[str]:
    """Every question template and answer, for training a tokenizer whose answers are compact."""
    lines = ["How many shapes are there?", "What word is written?", "What is the small word?"]
    for colour in COLOURS:
        lines.append(f"What shape is the {colour} one?")
        for other in COLOURS:
            lines.append(f"Is the {colour} shape left or right of the {other} shape?")
    lines += [f"What color is the {kind}?" for kind in KINDS]
    answers = sorted({a for values in ANSWERS.values() for a in values})
    return lines + answers
