"""The embedded default model and demo input used when `edgevlm` runs with no command."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PRESET = "minicpmv-2.6-tiny"
DEFAULT_SEED = 0
DEFAULT_MODEL_NOTE = ("the default model is a generated tiny MiniCPM-V 2.6 with random weights, so its answer is "
                      "noise; a trained quality-oracle model replaces it once it ships")


def home() -> Path:
    """Where edgevlm keeps generated models: $EDGEVLM_HOME, else ~/.cache/edgevlm."""
    return Path(os.environ.get("EDGEVLM_HOME") or Path.home() / ".cache" / "edgevlm")


def ensure_default_model() -> Path:
    """Write the default checkpoint once; later runs reuse it (the write is atomic)."""
    from edgevlm.checkpoint.writer import write_checkpoint
    from edgevlm.presets import get_preset

    path = home() / "models" / f"{DEFAULT_PRESET}-seed{DEFAULT_SEED}"
    if not (path / "config.json").is_file():
        preset = get_preset(DEFAULT_PRESET)
        write_checkpoint(preset.build_config(), path, seed=DEFAULT_SEED, dtype=preset.dtype,
                         shard_bytes=4 * 1024 ** 2, overwrite=True)
    return path


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
