"""Checkpoint writing and loading: round-trip, official names, sharding, and every error path."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

from edgevlm.checkpoint.layout import INDEX_FILE, expected_parameters
from edgevlm.checkpoint.loader import load_model
from edgevlm.checkpoint.writer import init_tensor, write_checkpoint
from edgevlm.errors import CheckpointError, ConfigError, EdgeVLMError, TokenizerError
from edgevlm.presets import PRESETS, get_preset
from tests.conftest import TINY_PRESETS


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _index(path):
    return json.loads((path / INDEX_FILE).read_text())


@pytest.mark.parametrize("name", TINY_PRESETS)
def test_round_trip_gives_identical_tensors(name, tiny_checkpoints, loaded_models):
    path = tiny_checkpoints[name]
    index = _index(path)
    stored = {}
    for shard in sorted(set(index["weight_map"].values())):
        stored.update(load_file(str(path / shard)))
    assert len(set(index["weight_map"].values())) > 1, "tiny checkpoints must exercise sharding"
    assert set(stored) == set(index["weight_map"])
    state = loaded_models[name].model.state_dict()
    for key, tensor in stored.items():
        assert torch.equal(state[key], tensor), key
        # and the stored values are exactly the seeded generator's, so the writer is reproducible
        assert torch.equal(tensor, init_tensor(key, tuple(tensor.shape), seed=0).to(tensor.dtype)), key
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in stored.values())


def test_official_key_names_and_shapes():
    """Names and shapes that official MiniCPM-V checkpoints use, per generation."""
    cases = {
        "minicpmv-2.6": {
            "vpm.embeddings.patch_embedding.weight": (1152, 3, 14, 14),
            "vpm.embeddings.position_embedding.weight": (4900, 1152),
            "vpm.encoder.layers.26.self_attn.q_proj.weight": (1152, 1152),
            "vpm.encoder.layers.0.mlp.fc1.weight": (4304, 1152),
            "vpm.post_layernorm.bias": (1152,),
            "resampler.query": (64, 3584),
            "resampler.kv_proj.weight": (3584, 1152),
            "resampler.attn.in_proj_weight": (3 * 3584, 3584),
            "resampler.attn.out_proj.bias": (3584,),
            "resampler.proj": (3584, 3584),
            "resampler.ln_kv.weight": (3584,),
            "llm.model.embed_tokens.weight": (151666, 3584),
            "llm.model.layers.27.self_attn.q_proj.bias": (3584,),
            "llm.model.layers.0.self_attn.k_proj.weight": (512, 3584),
            "llm.model.layers.0.mlp.gate_proj.weight": (18944, 3584),
            "llm.model.norm.weight": (3584,),
            "llm.lm_head.weight": (151666, 3584),
        },
        "minicpmv-4.5": {"llm.model.layers.35.self_attn.q_norm.weight": (128,),
                         "llm.model.layers.0.self_attn.k_proj.weight": (1024, 4096),
                         "resampler.query": (64, 4096)},
        "minicpmv-2.5": {"resampler.query": (96, 4096), "llm.model.embed_tokens.weight": (128256, 4096)},
        "minicpmv-4.0": {"llm.model.layers.31.mlp.down_proj.weight": (2560, 10240)},
    }
    for preset, keys in cases.items():
        params = expected_parameters(get_preset(preset).build_config())
        for key, shape in keys.items():
            assert params[key][0] == shape, (preset, key)
    qwen2 = expected_parameters(get_preset("minicpmv-2.6").build_config())
    assert not any("q_norm" in k for k in qwen2) and "vpm.encoder.layers.27.layer_norm1.weight" not in qwen2


@pytest.mark.parametrize("name, low, high", [("minicpmv-2.5", 8.4e9, 8.6e9), ("minicpmv-2.6", 8.0e9, 8.2e9),
                                             ("minicpmv-4.5", 8.6e9, 8.8e9), ("minicpmv-4.0", 3.5e9, 4.5e9)])
def test_full_size_parameter_counts(name, low, high):
    total = sum(torch.Size(s).numel() for s, _ in expected_parameters(get_preset(name).build_config()).values())
    assert low < total < high


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    config = get_preset("minicpmv-4.5-tiny").build_config
    a = write_checkpoint(config(), tmp_path / "a", seed=3, show_progress=False)
    b = write_checkpoint(config(), tmp_path / "b", seed=3, show_progress=False)
    c = write_checkpoint(config(), tmp_path / "c", seed=4, show_progress=False)
    for f in sorted(p.name for p in a.iterdir()):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    shard = "model.safetensors.index.json"
    key = next(iter(_index(a)["weight_map"]))
    assert (a / shard).read_bytes() == (c / shard).read_bytes()
    first = _index(a)["weight_map"][key]
    assert not torch.equal(load_file(str(a / first))[key], load_file(str(c / first))[key])


def test_existing_output_is_refused_and_kept(tmp_path):
    out = tmp_path / "ck"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(EdgeVLMError, match="already exists"):
        write_checkpoint(get_preset("minicpmv-2.6-tiny").build_config(), out, show_progress=False)
    assert (out / "mine.txt").read_text() == "keep me"


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import edgevlm.checkpoint.writer as writer

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer, "write_tokenizer", boom)
    with pytest.raises(RuntimeError):
        write_checkpoint(get_preset("minicpmv-2.6-tiny").build_config(), tmp_path / "ck", show_progress=False)
    assert list(tmp_path.iterdir()) == []


# ---- errors ---------------------------------------------------------------------------------------


def test_missing_directory_and_config(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no config.json"):
        load_model(tmp_path)


def test_unknown_version(tiny_checkpoints, tmp_path):
    path = _copy(tiny_checkpoints["minicpmv-2.6-tiny"], tmp_path / "ck")
    cfg = json.loads((path / "config.json").read_text())
    cfg["version"] = 3.1
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"version 3\.1 is not supported.*\n.*2\.5, 2\.6, 4\.0, 4\.5"):
        load_model(path)


def _rewrite_first_shard(path, edit):
    index = _index(path)
    shard = sorted(set(index["weight_map"].values()))[0]
    tensors = load_file(str(path / shard))
    edit(tensors, index, shard)
    save_file(tensors, str(path / shard), metadata={"format": "pt"})
    (path / INDEX_FILE).write_text(json.dumps(index))
    return shard


def test_missing_unexpected_and_misshaped_keys_are_all_listed(tiny_checkpoints, tmp_path):
    path = _copy(tiny_checkpoints["minicpmv-2.6-tiny"], tmp_path / "ck")

    def edit(tensors, index, shard):
        dropped = "vpm.embeddings.patch_embedding.weight"
        tensors.pop(dropped)
        index["weight_map"].pop(dropped)
        tensors["vpm.head.probe"] = torch.zeros(3)
        index["weight_map"]["vpm.head.probe"] = shard
        tensors["vpm.embeddings.position_embedding.weight"] = torch.zeros(10, 64)

    _rewrite_first_shard(path, edit)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    text = str(info.value)
    assert "1 missing key(s): vpm.embeddings.patch_embedding.weight" in text
    assert "1 unexpected key(s): vpm.head.probe" in text
    assert "vpm.embeddings.position_embedding.weight: file [10, 64] vs model [4900, 64]" in text
    assert "fix:" in text


def test_truncated_and_corrupt_shards(tiny_checkpoints, tmp_path):
    path = _copy(tiny_checkpoints["minicpmv-2.6-tiny"], tmp_path / "ck")
    shard = sorted(set(_index(path)["weight_map"].values()))[-1]
    data = (path / shard).read_bytes()
    (path / shard).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{shard} is not a readable safetensors file.*\n.*truncated"):
        load_model(path)
    (path / shard).write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(path)
    (path / shard).unlink()
    with pytest.raises(CheckpointError, match=f"missing: {shard}"):
        load_model(path)


def test_no_weights_at_all(tiny_checkpoints, tmp_path):
    path = tmp_path / "ck"
    path.mkdir()
    shutil.copy(tiny_checkpoints["minicpmv-2.6-tiny"] / "config.json", path)
    (path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no safetensors weights.*\n.*pytorch_model.bin"):
        load_model(path)


def test_tokenizer_larger_than_embedding(tiny_checkpoints, tmp_path):
    path = _copy(tiny_checkpoints["minicpmv-2.6-tiny"], tmp_path / "ck")
    tok = json.loads((path / "tokenizer.json").read_text())
    tok["model"]["vocab"]["far_away_token"] = 5000
    (path / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(TokenizerError, match="ids up to 5000.*only 1024 rows"):
        load_model(path)
    (path / "tokenizer.json").unlink()
    with pytest.raises(TokenizerError, match="no tokenizer.json"):
        load_model(path)


def test_unknown_preset_lists_known():
    with pytest.raises(ConfigError, match="unknown preset 'minicpmv-9'.*\n.*minicpmv-2.6-tiny"):
        get_preset("minicpmv-9")
    assert set(TINY_PRESETS) < set(PRESETS)


def test_load_peak_memory_is_about_one_copy(tmp_path):
    """A checkpoint loads with about its own size of new memory, not twice (meta init + assign)."""
    from edgevlm.presets import get_preset

    config = get_preset("minicpmv-2.6-tiny").build_config()
    config.llm.hidden_size, config.llm.intermediate_size, config.llm.num_hidden_layers = 1024, 4096, 6
    path = write_checkpoint(config, tmp_path / "mid", shard_bytes=64 * 1024 ** 2, show_progress=False)
    size = sum(p.stat().st_size for p in path.glob("*.safetensors"))
    script = textwrap.dedent(f"""
        import re, torch, transformers
        from edgevlm.checkpoint.loader import load_model
        def kib(field):
            return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))
        open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
        base = kib("VmRSS")
        m = load_model({str(path)!r})
        print((kib("VmHWM") - base) * 1024)
    """)
    peak = int(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                              text=True).stdout.split()[-1])
    assert size > 100 * 1024 ** 2
    assert peak < 1.35 * size, f"loading {size / 2**20:.0f} MiB took {peak / 2**20:.0f} MiB"
