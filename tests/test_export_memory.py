"""Exports in bounded memory: a real-width proxy of MiniCPM-V 4.0 exported under a memory cap, and a
recipe that cannot work for a model refused before any weight is read."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
import yaml

from edgevlm.device_tests.memory_cap import run_capped
from edgevlm.errors import ConfigError

GIB = 1 << 30
# MiniCPM4-3B's LLM at real width (2560 hidden, 10240 MLP, 32 heads of 80, 73448 vocab) with 2 of
# its 32 layers, under the tiny vision tower: 0.56B parameters, 1.1 GB of bf16 on disk. The export
# used to load it in fp32 (2.3 GB), deep-copy it for AWQ (2.3 GB more) and build a [512, 73448, 80]
# fp32 clip tensor plus its square for the lm_head (2 x 12 GB). Streamed, it peaks at 1.8 GB RSS
# (2.1-2.3 GB charged to the cgroup with page cache) and must fit in CAP.
CAP = 3 * GIB


@pytest.fixture(scope="module")
def real_width_proxy(tmp_path_factory):
    from edgevlm.checkpoint.writer import write_checkpoint
    from edgevlm.presets import SIGLIP_TINY, get_preset

    config = get_preset("minicpmv-4.0").build_config()
    config = dataclasses.replace(config, vision_config=SIGLIP_TINY,
                                 llm=dataclasses.replace(config.llm, num_hidden_layers=2))
    return write_checkpoint(config, tmp_path_factory.mktemp("proxy") / "minicpmv-4.0-2l", seed=0, dtype="bfloat16",
                            show_progress=False)


def _recipe(tmp_path, backend: str, weights: str) -> str:
    vision = {"backend": "ort", "precision": "fp32"}
    decoder = {"backend": backend, "weights": weights, "weight_calibration": "awq-fast", "embedding": "int8",
               "kv_cache": "int4", "max_seq_len": 512}
    path = tmp_path / f"proxy-{backend}.yaml"
    path.write_text(yaml.safe_dump({"name": f"proxy-{backend}", "vision": [vision], "decoder": [decoder],
                                    "calibration": {"source": "builtin", "images": 2}}))
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("backend,weights", [("executorch", "8da4w"), ("ort", "int4")])
def test_real_width_proxy_exports_under_a_memory_cap(real_width_proxy, tmp_path, backend, weights):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "edgevlm.cli.main", "export", "--model", str(real_width_proxy), "--recipe",
           _recipe(tmp_path, backend, weights), "--out", str(out)]
    run = run_capped(cmd, CAP, timeout=1500)
    assert run.returncode == 0 and not run.killed_for_memory, run.stderr[-3000:]
    resources = json.loads((out / "manifest.json").read_text())["export"]["resources"]
    names = [s["name"] for s in resources["stages"]]
    assert names[:3] == ["validate", "load vision tower", "verification set"]
    assert any(n.startswith("decoder build") for n in names) and any(n.startswith("decoder export") for n in names)
    assert all(s["seconds"] >= 0 and 0 < s["peak_rss_bytes"] <= CAP for s in resources["stages"])
    assert run.peak_bytes <= CAP
    # the decoder holds 4-bit weights and an int8 embedding: far below the 1.1 GB bf16 checkpoint
    manifest = json.loads((out / "manifest.json").read_text())
    decoder = next(a for a in manifest["artifacts"] if a["part"] == "decoder")
    total = decoder["bytes"] + sum(e["bytes"] for e in decoder["extra_files"])
    assert total < 0.55 * sum(p.stat().st_size for p in real_width_proxy.glob("*.safetensors"))
    verify = run_capped([sys.executable, "-m", "edgevlm.cli.main", "verify", str(out)], CAP, timeout=900)
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-2000:]


def test_a_recipe_that_cannot_work_is_refused_before_any_weight_is_read(tmp_path, tiny_checkpoints):
    """MiniCPM4's 80-wide heads take no KV groups of 32: the export says so from config.json alone
    (the shards are deleted here, so reading any weight would fail differently)."""
    import shutil

    from edgevlm.export.driver import export_model
    from edgevlm.export.recipes import load_recipe

    model = tmp_path / "no-weights"
    shutil.copytree(tiny_checkpoints["minicpmv-4.0-tiny"], model)
    for shard in model.glob("*.safetensors"):
        shard.unlink()
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "vision": [], "decoder": [
        {"backend": "executorch", "kv_cache": "int4", "kv_group_size": 32}]}))
    with pytest.raises(ConfigError, match=r"decoder\[0\]: KV group size 32 does not split head_dim 80.*\n.*auto "
                                          r"\(16 for this model\) or one of 2, 4, 8, 10, 16, 20, 40, 80"):
        export_model(model, load_recipe(str(path)), tmp_path / "out")
    for field, value, message in [("group_size", 48, "weight group_size 48 does not divide the model's hidden_size 320"),
                                  ("max_seq_len", 10 ** 6, "max_seq_len 1000000 is outside 2..4096")]:
        path.write_text(yaml.safe_dump({"name": "bad", "vision": [],
                                        "decoder": [{"backend": "ort", "weights": "int4", field: value}]}))
        with pytest.raises(ConfigError, match=message):
            export_model(model, load_recipe(str(path)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_bench_export_runs_a_decoder_only_export_on_text(tiny_checkpoints, tmp_path):
    """`bench-export --part decoder`: export, verify and run each in the capped cgroup; the run
    step has no vision artifact to feed an image to, so it generates from text alone."""
    from edgevlm.device_tests.export_bench import bench_export

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "r", "description": "text decoder", "decoder": [
        {"backend": "executorch", "weights": "8da4w", "weight_calibration": "rtn", "embedding": "int8",
         "kv_cache": "int4", "max_seq_len": 256}]}))
    report = bench_export(tiny_checkpoints["minicpmv-4.0-tiny"], str(recipe), tmp_path / "out", part="decoder",
                          cap_gb=3, overrides=("decoder.max_seq_len=128",))
    assert [(s["step"], s["returncode"]) for s in report["steps"]] == [("export", 0), ("verify", 0), ("run", 0)]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [a["kv_cache"]["max_seq_len"] for a in manifest["artifacts"]] == [128]  # the --set reached the export
    assert report["overrides"] == ["decoder.max_seq_len=128"]
    assert all(s["peak_bytes"] <= 3 * GIB for s in report["steps"])
    assert report["verify"]["statuses"] == ["pass"] and report["verify"]["numerics"]
    assert report["run"]["speed"].startswith("[vision 0 ms") and "decode" in report["run"]["speed"]
    stages = [s["name"] for s in report["export"]["resources"]["stages"]]
    assert "verification set" not in stages and any(s.startswith("decoder export") for s in stages)
