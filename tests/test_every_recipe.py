"""Every shipped recipe exports every family's tiny preset, vision and decoder, and verifies: heads of
128 (Llama-3, Qwen2, Qwen3) and MiniCPM4's 80, as the real models have them."""

from __future__ import annotations

import pytest

from edgevlm.export.driver import export_model
from edgevlm.export.manifest import read_manifest
from edgevlm.export.recipes import load_recipe
from edgevlm.export.verify import FAIL, NOT_RUN, verify_artifacts

FAMILIES = {"minicpmv-2.5-tiny": 128, "minicpmv-2.6-tiny": 128, "minicpmv-4.0-tiny": 80, "minicpmv-4.5-tiny": 128}
RECIPES = ("ios-m4", "android-sd8g3", "android-sd8g3-w4a16", "ort")


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("preset", list(FAMILIES))
def test_recipe_exports_and_verifies(preset, recipe, tiny_checkpoints, tmp_path):
    out = export_model(tiny_checkpoints[preset], load_recipe(recipe), tmp_path / "out")
    manifest = read_manifest(out)
    decoders = [a for a in manifest["artifacts"] if a["part"] == "decoder"]
    assert len(decoders) == len(load_recipe(recipe).decoder)
    for decoder in decoders:
        cache = decoder["kv_cache"]
        assert cache["head_dim"] == FAMILIES[preset]
        assert cache["group_size"] == (16 if FAMILIES[preset] == 80 else 32)  # kv_group_size: auto
        assert cache["rotation_block"] == (16 if FAMILIES[preset] == 80 else 128)
        assert decoder["weights"]["embedding"] == ("int4" if decoder["target"] == "executorch" else "int8")
    results = verify_artifacts(out)
    if recipe == "android-sd8g3-w4a16":
        results = _w4a16_vision_checked(results)
    assert not [r for r in results if r.status == FAIL], [r for r in results if r.status == FAIL]
    numerics = {r.artifact: r.status for r in results if r.check == "numerics"}
    # everything runs here: the Core ML interpreter, the HTP emulator, ORT, ExecuTorch
    assert all(status == "pass" for status in numerics.values()) and NOT_RUN not in numerics.values()
    assert len(numerics) == len(manifest["artifacts"]) - (recipe == "android-sd8g3-w4a16")
    stages = [s["name"] for s in manifest["export"]["resources"]["stages"]]
    assert stages[:2] == ["validate", "load vision tower"] and len(stages) >= 4


def _w4a16_vision_checked(results):
    """4-bit weights of a random width-64 SigLIP lose 10-12 dB, under the 25 dB gate for quantized
    encoders (trained weights are what the gate is for). Check the verdict is honest and the signal
    carried, then leave the vision numerics out of the all-pass assertion."""
    vision = [r for r in results if r.check == "numerics" and ".vision." in r.artifact]
    assert len(vision) == 1
    sqnr = vision[0].metrics["overall"]["sqnr_db"]
    assert sqnr > 8, vision[0].detail
    assert vision[0].status == (FAIL if sqnr < 25 else "pass"), vision[0].detail
    return [r for r in results if r is not vision[0]]
