"""Calibration sets: built-in scenes with prompts, and a user folder of images + prompts.jsonl."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from edgevlm.calibration.datasets import DEFAULT_PROMPT, builtin_samples, calibration_samples
from edgevlm.errors import ConfigError


def _folder(tmp_path, lines: list[str] | None):
    for name, colour in (("a.png", "red"), ("b.jpg", "blue"), ("c.png", "green")):
        Image.new("RGB", (64, 40), colour).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    if lines is not None:
        (tmp_path / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_builtin_samples_are_deterministic_with_prompts():
    first, again = builtin_samples(6, seed=2), builtin_samples(6, seed=2)
    assert [s.image.tobytes() for s in first] == [s.image.tobytes() for s in again]
    assert len({s.prompt for s in first}) > 1 and all(s.prompt.endswith(("?", ".")) for s in first)


def test_folder_pairs_images_with_their_prompts(tmp_path):
    folder = _folder(tmp_path, [json.dumps({"image": "b.jpg", "prompt": "What colour?"}), "",
                                json.dumps({"image": "a.png", "prompt": "Is it red?"}),
                                json.dumps({"image": "b.jpg", "prompt": "Is it blue?"})])
    samples = calibration_samples(str(folder), count=10)
    assert [(s.name, s.prompt) for s in samples] == [("a.png", "Is it red?"), ("b.jpg", "What colour?"),
                                                     ("b.jpg", "Is it blue?"), ("c.png", DEFAULT_PROMPT)]
    assert samples[0].image.getpixel((0, 0)) == (255, 0, 0)
    assert samples[1].image is samples[2].image  # loaded once
    assert len(calibration_samples(str(folder), count=2)) == 2


@pytest.mark.parametrize("lines, message", [
    (['{"image": "a.png", "prompt": "ok"}', '{"image": "a.png", prompt}'], r"prompts.jsonl:2 is not valid JSON"),
    (['{"image": "a.png"}'], r"prompts.jsonl:1 needs string fields `image` and `prompt`"),
    (['{"image": "zebra.png", "prompt": "?"}'], r"prompts.jsonl:1 names image 'zebra.png', which is not in"),
])
def test_bad_prompt_files_name_the_line(tmp_path, lines, message):
    with pytest.raises(ConfigError, match=message):
        calibration_samples(str(_folder(tmp_path, lines)), count=10)


def test_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist.*\n.*builtin"):
        calibration_samples(str(tmp_path / "nope"), count=4)
    with pytest.raises(ConfigError, match="holds no images"):
        calibration_samples(str(tmp_path), count=4)
