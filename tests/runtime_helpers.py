"""What the native-runtime tests share: the host build, tiny export folders (ONNX fp32 vision +
a decoder .pte carrying vision_encoder), test images as PNG + PPM, and `edgevlm run`'s result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from edgevlm.export.driver import export_model
from edgevlm.export.recipes import load_recipe
from edgevlm.export.run import ArtifactRunner

VISION = {"backend": "ort", "precision": "fp32", "max_patches": 1120}
FP32_DECODER = {"backend": "executorch", "weights": "fp32", "kv_cache": "int4", "max_seq_len": 1536,
                "vision_in_pte": True}
CROSS_TOOLS = ("aarch64-linux-gnu-g++", "qemu-aarch64")


@pytest.fixture(scope="module")
def build(runtime_home) -> Path:
    from edgevlm.runtime.build import build_runtime

    return build_runtime(home=runtime_home)


@pytest.fixture(scope="module")
def folders(tiny_checkpoints, tmp_path_factory):
    """folders(preset, decoder=FP32_DECODER, vision=[VISION]) -> export folder, made once per module."""
    cache = {}

    def get(preset: str, decoder: dict = FP32_DECODER, vision: list | None = None) -> Path:
        vision = [VISION] if vision is None else vision
        key = (preset, json.dumps(decoder, sort_keys=True), json.dumps(vision, sort_keys=True))
        if key not in cache:
            root = tmp_path_factory.mktemp(preset)
            recipe = root / "recipe.yaml"
            document = {"name": "native", "vision": vision, "decoder": [decoder]}
            if not vision:
                del document["vision"]
            if decoder.get("weight_calibration") == "awq":
                document["calibration"] = {"source": "builtin", "images": 4}
            recipe.write_text(yaml.safe_dump(document))
            cache[key] = export_model(tiny_checkpoints[preset], load_recipe(str(recipe)), root / "out")
        return cache[key]
    return get


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """name -> (png for Python, the same pixels as a binary PPM for the runner)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    out = {}
    for w, h in ((448, 448), (1000, 600), (17, 23)):
        y, x = np.mgrid[0:h, 0:w]
        pixels = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1).astype(np.int64)
        pixels = np.clip(pixels + rng.integers(-20, 21, pixels.shape), 0, 255).astype(np.uint8)
        name = f"{w}x{h}"
        Image.fromarray(pixels).save(root / f"{name}.png")
        Image.fromarray(pixels).save(root / f"{name}.ppm")
        out[name] = (root / f"{name}.png", root / f"{name}.ppm")
    return out


def python_run(folder: Path, pngs: list[Path], question: str, vision: str = "auto", max_new_tokens: int = 12):
    """`edgevlm run` (export/run.py ArtifactRunner) on the same folder, images and question."""
    from edgevlm.preprocess import load_image

    runner = ArtifactRunner(folder, vision=vision)
    return runner.generate([load_image(p) for p in pngs], question, max_new_tokens=max_new_tokens)
