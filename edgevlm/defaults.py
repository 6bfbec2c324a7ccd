"""The embedded default model and demo input used when `edgevlm` runs with no command."""

from __future__ import annotations

import os
from pathlib import Path

# The embedded default is edgevlm-tiny, the quality oracle trained on synthetic VQA and shipped in
# the package. The generated random-weight tiny model stays available (tests, and a fallback).
DEFAULT_PRESET = "minicpmv-2.6-tiny"  # the generated model's preset
DEFAULT_SEED = 0
DEFAULT_MODEL_NOTE = ("the default model is edgevlm-tiny (MiniCPM-V 2.6 modules, 4.2M parameters) trained on "
                      "synthetic shapes/colours/counts/text questions; `edgevlm oracle-eval` prints its held-out "
                      "accuracy. Point `edgevlm generate --model DIR` at a real MiniCPM-V checkpoint for real images")
GENERATED_MODEL_NOTE = ("the default model is a generated tiny MiniCPM-V 2.6 with random weights (the trained "
                        "edgevlm-tiny is missing from this install), so its answer is noise")
DEMO_SCENE_SEED = 2_000_000_000  # a synthetic-VQA scene outside the train and held-out seed ranges


def oracle_model_dir() -> Path:
    """The trained edgevlm-tiny checkpoint shipped inside the package."""
    return Path(__file__).resolve().parent / "assets" / "edgevlm-tiny"


def home() -> Path:
    """Where edgevlm keeps generated models: $EDGEVLM_HOME, else ~/.cache/edgevlm."""
    return Path(os.environ.get("EDGEVLM_HOME") or Path.home() / ".cache" / "edgevlm")


def ensure_default_model() -> Path:
    """The shipped edgevlm-tiny; the generated tiny model if the package lacks it."""
    shipped = oracle_model_dir()
    return shipped if (shipped / "config.json").is_file() else ensure_generated_model()


def ensure_generated_model() -> Path:
    """Write the generated random-weight tiny checkpoint once; later runs reuse it (the write is atomic)."""
    from edgevlm.checkpoint.writer import write_checkpoint
    from edgevlm.presets import get_preset

    path = home() / "models" / f"{DEFAULT_PRESET}-seed{DEFAULT_SEED}"
    if not (path / "config.json").is_file():
        preset = get_preset(DEFAULT_PRESET)
        write_checkpoint(preset.build_config(), path, seed=DEFAULT_SEED, dtype=preset.dtype,
                         shard_bytes=4 * 1024 ** 2, overwrite=True)
    return path


def demo_questions():
    """The default job's input: a synthetic-VQA scene (image) and (question, correct answer) pairs."""
    from edgevlm.calibration import vqa

    scene = vqa.make_scene(DEMO_SCENE_SEED)
    wanted = ("count", "colour", "shape", "position", "word", "small_word")
    by_kind = {}
    for kind, question, answer in vqa.questions(scene):
        by_kind.setdefault(kind, (question, answer))
    return vqa.render(scene), [by_kind[k] for k in wanted if k in by_kind]


def demo_image():
    """A small synthetic scene (shapes and a word), wide enough to be sliced into a grid."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (896, 560), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((80, 120, 300, 340), fill=(220, 30, 30))
    draw.rectangle((380, 140, 560, 320), fill=(30, 60, 220))
    draw.polygon([(700, 120), (820, 340), (580, 340)], fill=(40, 170, 60))
    draw.text((380, 420), "EDGE VLM", fill="black")
    return image
