"""Calibration sets: the built-in synthetic scenes, or a user folder of images with a JSONL of prompts.

A user folder holds images (.jpg/.jpeg/.png/.webp) and optionally `prompts.jsonl`, one JSON object per
line: {"image": "street.jpg", "prompt": "How many cars are there?"}. Lines may repeat an image with
several prompts. Images the JSONL does not mention are used with the default prompt. Vision
calibration uses the images; decoder calibration (activation-aware INT4, KV-cache statistics) uses
the image + prompt pairs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from edgevlm.errors import ConfigError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
PROMPTS_FILE = "prompts.jsonl"
DEFAULT_PROMPT = "Describe the image."
# Questions paired with the built-in scenes (shapes, colours, a word), so decoder calibration sees
# prompts of the kind the synthetic images can answer.
BUILTIN_PROMPTS = ("What shapes are in the picture?", "What colour is the largest shape?",
                   "What word is written in the image?", "How many shapes are there?", DEFAULT_PROMPT)


@dataclass(frozen=True)
class CalibrationSample:
    name: str  # file name, or builtin-<i>
    image: Image.Image
    prompt: str


def builtin_samples(count: int, seed: int = 0) -> list[CalibrationSample]:
    from edgevlm.calibration.synthetic import calibration_images

    return [CalibrationSample(f"builtin-{i}", image, BUILTIN_PROMPTS[i % len(BUILTIN_PROMPTS)])
            for i, image in enumerate(calibration_images(count, seed=seed))]


def folder_samples(folder: Path, limit: int | None = None) -> list[CalibrationSample]:
    """Images of a folder paired with the prompts of its prompts.jsonl (sorted, deterministic)."""
    from edgevlm.preprocess import load_image

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"calibration folder {folder} does not exist",
                          "point `calibration.source` at a folder of images, or use `builtin`")
    images = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ConfigError(f"calibration folder {folder} holds no images",
                          f"add {'/'.join(IMAGE_SUFFIXES)} files (and optionally {PROMPTS_FILE})")
    pairs = read_prompts(folder / PROMPTS_FILE, set(images)) if (folder / PROMPTS_FILE).is_file() else []
    mentioned = {name for name, _ in pairs}
    pairs += [(name, DEFAULT_PROMPT) for name in images if name not in mentioned]
    pairs.sort(key=lambda pair: images.index(pair[0]))
    if limit is not None:
        pairs = pairs[:limit]
    loaded = {name: load_image(folder / name) for name in {name for name, _ in pairs}}
    return [CalibrationSample(name, loaded[name], prompt) for name, prompt in pairs]


def read_prompts(path: Path, images: set[str]) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where} is not valid JSON ({e.msg})",
                              'write one object per line: {"image": "a.jpg", "prompt": "..."}') from None
        if not isinstance(row, dict) or not isinstance(row.get("image"), str) or not isinstance(row.get("prompt"), str):
            raise ConfigError(f"{where} needs string fields `image` and `prompt`",
                              'write one object per line: {"image": "a.jpg", "prompt": "..."}')
        if row["image"] not in images:
            raise ConfigError(f"{where} names image {row['image']!r}, which is not in {path.parent}",
                              "fix the name or add the image to the folder")
        pairs.append((row["image"], row["prompt"]))
    return pairs


def calibration_samples(source: str, count: int, seed: int = 0) -> list[CalibrationSample]:
    """The recipe's calibration block -> samples: `builtin` scenes, or a folder (at most `count`)."""
    if source == "builtin":
        return builtin_samples(count, seed)
    return folder_samples(Path(source).expanduser(), limit=count)
