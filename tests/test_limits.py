"""Limits before work: configs, recipes, manifests, tokenizer configs and images are checked against
typed schemas and size caps before anything is built, and refused with one message (exit 2)."""

from __future__ import annotations

import json
import shutil
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest
import yaml

from edgevlm.cli.main import main
from edgevlm.errors import ConfigError, EdgeVLMError


def _bad(capsys, argv, code=2) -> str:
    assert main([str(a) for a in argv]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("edgevlm: error:"), err
    return err


# ---- model configs ---------------------------------------------------------------------------------

@pytest.fixture
def model_copy(tiny_checkpoints, tmp_path):
    return Path(shutil.copytree(tiny_checkpoints["minicpmv-2.6-tiny"], tmp_path / "model"))


def _set_config(model: Path, **fields) -> None:
    path = model / "config.json"
    config = json.loads(path.read_text())
    for key, value in fields.items():
        section, _, name = key.rpartition("__")
        (config[section] if section else config)[name] = value
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("fields, message", [
    ({"hidden_size": "256"}, "hidden_size is '256' (str); expected an integer"),
    ({"hidden_size": 256.5}, "hidden_size is 256.5 (float); expected an integer"),
    ({"hidden_size": -256}, "hidden_size is -256; expected from 1 to 65536"),
    ({"hidden_size": 1e9}, "hidden_size is 1000000000.0 (float); expected an integer"),
    ({"num_attention_heads": 0}, "num_attention_heads is 0; expected from 1 to 1024"),
    ({"vision_config__num_attention_heads": 0}, "vision_config.num_attention_heads is 0"),
    ({"vision_config": "siglip"}, "vision_config is a str; expected a mapping"),
    ({"tie_word_embeddings": "yes"}, "tie_word_embeddings is 'yes' (str); expected true/false"),
    ({"num_attention_heads": 3}, "hidden_size 256 is not a multiple of num_attention_heads 3"),
    ({"eos_token_id": 99999}, "eos_token_id 99999 is outside the vocabulary"),
])
def test_malformed_config_fields_are_refused_with_the_field_named(fields, message, model_copy, capsys):
    _set_config(model_copy, **fields)
    assert message in _bad(capsys, ["inspect", model_copy])


def test_a_million_layers_is_refused_before_anything_is_allocated(model_copy, capsys):
    from edgevlm.checkpoint.loader import load_config

    _set_config(model_copy, num_hidden_layers=256, hidden_size=65536, intermediate_size=262144)
    with pytest.raises(EdgeVLMError, match=r"GiB as float32, above the 128 GiB limit"):
        load_config(model_copy)  # in range field by field, but 25 TB of parameters
    _set_config(model_copy, num_hidden_layers=10 ** 6, hidden_size=256, intermediate_size=512)
    tracemalloc.start()
    started = time.monotonic()
    err = _bad(capsys, ["generate", "--model", model_copy, "--prompt", "hi"])
    elapsed, (_, peak) = time.monotonic() - started, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "num_hidden_layers is 1000000; expected from 1 to 512" in err
    assert elapsed < 2 and peak < 20 * 2 ** 20


def test_a_checkpoint_index_whose_weight_map_is_a_list_is_refused(model_copy, capsys):
    index = model_copy / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"] = sorted(data["weight_map"].values())
    index.write_text(json.dumps(data))
    assert "weight_map is a list, not a mapping" in _bad(capsys, ["inspect", model_copy])


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ('["a list"]', "holds a JSON list, not an object"),
    ('{"chat_template": 42}', "chat_template is a int, not a string"),
    ('{"eos_token": ["<|im_end|>"]}', "eos_token is ['<|im_end|>'], not a token string"),
    ('{"edgevlm_stop_tokens": "<|im_end|>"}', "edgevlm_stop_tokens is '<|im_end|>', not a list"),
])
def test_a_malformed_tokenizer_config_is_refused(content, message, model_copy, capsys):
    (model_copy / "tokenizer_config.json").write_text(content)
    assert message in _bad(capsys, ["inspect", model_copy])


# ---- recipes ---------------------------------------------------------------------------------------

def _recipe(tmp_path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("body, message", [
    ("vision:\n  - {backend: ort, precision: fp32, max_patches: abc}", "vision[0].max_patches is 'abc' (str)"),
    ("vision:\n  - {backend: ort, precision: fp32, max_patches: 1e9}", "vision[0].max_patches is '1e9' (str)"),
    ("vision:\n  - {backend: ort, precision: fp32, max_patches: 1000000000}",
     "vision[0].max_patches is 1000000000; expected from 1 to 4096"),
    ("vision:\n  - {backend: ort, precision: fp32, options: fast}", "vision[0].options is 'fast' (str); expected a mapping"),
    ("vision:\n  - ort", "recipe.vision is ['ort'] (list); expected a list of mappings"),
    ("decoder:\n  - {backend: executorch, max_seq_len: -5}", "decoder[0].max_seq_len is -5; expected from 1"),
    ("decoder:\n  - {backend: executorch, group_size: 0}", "decoder[0].group_size is 0; expected from 1"),
    ("decoder:\n  - {backend: executorch, kv_rotate_keys: maybe}", "decoder[0].kv_rotate_keys is 'maybe' (str)"),
    ("calibration: {images: many}", "calibration.images is 'many' (str)"),
    ("visoin:\n  - {backend: ort, precision: fp32}", "unknown top-level key 'visoin' (did you mean 'vision'?)"),
    ("vision: ort", "recipe.vision is 'ort' (str); expected a list"),
    ("vision:\n  - {backend: ort, precision: fp32}\nvision: []", "duplicate key 'vision'"),
    ("description: " + "[" * 40 + "]" * 40, "nesting deeper than 32 levels"),
])
def test_malformed_recipes_are_refused_before_the_model_loads(body, message, tiny_checkpoints, tmp_path, capsys):
    recipe = _recipe(tmp_path, "name: bad\n" + body + "\n")
    err = _bad(capsys, ["export", "--model", tiny_checkpoints["minicpmv-2.6-tiny"], "--recipe", recipe,
                        "--out", tmp_path / "out"])
    assert message in err
    assert not (tmp_path / "out").exists()


BOMB = "name: bomb\n" + "".join(
    f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 9) if i else ', '.join(['lol'] * 9)}]\n"
    for i in range(9)) + "description: *i\n"


def test_the_yaml_alias_bomb_is_refused_in_under_a_second_and_200_mb(tmp_path):
    from edgevlm.export.recipes import load_recipe

    assert len(BOMB) < 500  # 9^9 = 387M strings once expanded
    path = _recipe(tmp_path, BOMB)
    tracemalloc.start()
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"anchor &a is not allowed"):
        load_recipe(str(path))
    elapsed, (_, peak) = time.monotonic() - started, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 1 and peak < 200 * 2 ** 20


# ---- manifests -------------------------------------------------------------------------------------

@pytest.fixture
def export_copy(int4_kv_export, tmp_path):
    return Path(shutil.copytree(int4_kv_export, tmp_path / "art"))


def _manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(schema_version="1"), "$.schema_version: '1' is not of type 'integer'"),
    (lambda m: m.update(artifacts=None), "$.artifacts: None is not of type 'array'"),
    (lambda m: m["artifacts"][0].pop("sha256"), "'sha256' is a required property"),
    (lambda m: m["artifacts"][0].update(max_patches="1120"), "$.artifacts[0].max_patches: '1120' is not of type"),
    (lambda m: m["preprocessing"].update(norm_std=[0, 1, 1]), "$.preprocessing.norm_std[0]"),
    (lambda m: m["artifacts"][0].update(batch=2), "artifacts[0].inputs pixel_values shape [1, 3, 14, 15680] does "
                                                  "not fit batch 2"),
    (lambda m: m["preprocessing"]["slice_config"].update(scale_resolution=100),
     "preprocessing.slice_config.scale_resolution 100 != 448 from the manifest's model config"),
    (lambda m: m["artifacts"][0]["inputs"][0].update(shape=[10 ** 12, 3, 14]),
     "declares tensors above the 64 GiB limit: artifacts[0].pixel_values shape [1000000000000, 3, 14]"),
])
def test_malformed_manifests_are_refused_by_verify(change, message, export_copy, capsys):
    _manifest(export_copy, change)
    assert message in _bad(capsys, ["verify", export_copy])


def test_a_manifest_nested_200000_deep_is_refused(export_copy, capsys):
    (export_copy / "manifest.json").write_text('{"schema_version": ' + "[" * 200_000 + "]" * 200_000 + "}")
    assert "nested too deeply" in _bad(capsys, ["verify", export_copy])
    (export_copy / "manifest.json").write_text('{"a": ' + "[" * 100 + "]" * 100 + "}")
    assert "nests 101 levels deep; the limit is 64" in _bad(capsys, ["verify", export_copy])


def test_a_99_mb_manifest_is_refused_without_being_parsed(export_copy, capsys):
    with open(export_copy / "manifest.json", "w") as f:
        f.write('{"padding": "' + "x" * (99 << 20) + '"}')
    tracemalloc.start()
    err = _bad(capsys, ["verify", export_copy])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "is 99.0 MiB, above the 32 MiB limit" in err and peak < 10 * 2 ** 20


# ---- images and --max-patches ----------------------------------------------------------------------

def test_an_image_above_the_pixel_budget_is_refused_from_its_header(tmp_path):
    from edgevlm.preprocess import load_image

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)  # 8-bit RGB, non-interlaced
    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 301))
                     + chunk(b"IEND", b""))
    started = time.monotonic()
    with pytest.raises(EdgeVLMError, match=r"100000x100000 pixels \(10,000 megapixels\), above the 268-megapixel "
                                           r"budget .* it was not decoded"):
        load_image(path)
    assert time.monotonic() - started < 1
    with pytest.raises(EdgeVLMError, match="above the 0-megapixel budget"):
        load_image(path, max_source_pixels=10_000)


@pytest.mark.parametrize("value, message", [
    (512, "max_patches 512 is too small for this model: its preprocessing (scale_resolution 448, patch_size 14) "
          "cuts the export's verification images into slices of up to 1036 patches"),
    (0, "--max-patches 0 is out of range"),
])
def test_max_patches_is_checked_before_the_model_loads(value, message, tiny_checkpoints, tmp_path, capsys):
    recipe = _recipe(tmp_path, "name: small\nvision:\n  - {backend: ort, precision: fp32}\n")
    started = time.monotonic()
    err = _bad(capsys, ["export", "--model", tiny_checkpoints["minicpmv-2.6-tiny"], "--recipe", recipe,
                        "--out", tmp_path / "out", "--max-patches", value])
    assert message in err and "aspect ratio" not in err.split("fix:")[0]
    assert time.monotonic() - started < 15 and not (tmp_path / "out").exists()
