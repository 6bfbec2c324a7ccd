"""What `generate` and `run` check before a model loads, and the notes they print about its output."""

from __future__ import annotations

import sys
from pathlib import Path


def load_inputs(image_paths: list[Path], prompt: str) -> list:
    """The decoded images, read before any model loads (seconds to minutes), so a wrong path or an
    empty prompt is reported at once."""
    from edgevlm.errors import PromptError
    from edgevlm.preprocess import load_image

    if not prompt.strip():
        raise PromptError("the prompt is empty", "pass a question, e.g. --prompt 'What is in the picture?'")
    return [load_image(path) for path in image_paths]


def random_weights_note(config_fields: dict, model: str) -> str | None:
    """A one-line note when the model's config says its weights are seeded random (`edgevlm checkpoint`)."""
    from edgevlm.checkpoint.writer import RANDOM_WEIGHTS_KEY

    marker = config_fields.get(RANDOM_WEIGHTS_KEY)
    if not marker:
        return None
    seed = marker.get("seed") if isinstance(marker, dict) else None
    return (f"note: {model} has random weights (`edgevlm checkpoint`, seed {seed}): the text is meaningless, "
            "the pipeline and timings are real; `edgevlm` alone runs the trained edgevlm-tiny")


def print_note(note: str | None) -> None:
    if note:
        print(note, file=sys.stderr)


VISION_RUNTIME_LABELS = {"coreml": "Core ML interpreter on this host", "qnn": "QNN HTP emulator on x86"}


def vision_timing_label(backend) -> str | None:
    """How a vision time was measured when it is not device latency (an emulator, an interpreter)."""
    if not backend.emulated:
        return None
    name = VISION_RUNTIME_LABELS.get(backend.name, "an emulated runtime")
    return f"{name}: emulated, not device latency"
