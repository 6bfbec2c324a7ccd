"""Quantized token-embedding tables of .pte decoders (int8 / int4 per 32-wide row group): the program
calls ExecuTorch's quantized embedding kernels, runs in its Python runtime close to the fp32 table,
shrinks by the expected bytes, and the manifest says what it holds."""

from __future__ import annotations

import pytest
import torch
import yaml

from edgevlm.device_tests.decoder_profile import program_calls
from edgevlm.errors import ConfigError
from edgevlm.export.decoder.graph import ExportDecoder
from edgevlm.export.decoder.kv_cache import KVCacheSpec
from edgevlm.export.decoder.pte import DecoderPteSpec, export_pte, load_pte_method, quantize_weights
from edgevlm.export.quantized_modules import EMBEDDING_GROUP, Int4Embedding, Int8Embedding, quantized_embedding
from edgevlm.export.recipes import load_recipe

PRESET = "minicpmv-2.6-tiny"
KERNELS = {"int8": "quantized_decomposed::embedding_byte", "int4": "quantized_decomposed::embedding_4bit"}


def _export(loaded, embedding: str, path):
    spec = DecoderPteSpec(max_seq_len=32, weights="fp32", cache=KVCacheSpec("fp32"), embedding=embedding)
    llm = quantize_weights(loaded.model.llm, spec)
    export_pte(loaded, spec, path, llm=llm)
    return llm


@pytest.fixture(scope="module")
def programs(loaded_models, tmp_path_factory):
    """format -> (.pte path, the LLM it was built from) for fp32 / int8 / int4 tables."""
    root = tmp_path_factory.mktemp("embq")
    loaded = loaded_models[PRESET]
    return {fmt: (root / f"{fmt}.pte", _export(loaded, fmt, root / f"{fmt}.pte")) for fmt in ("fp32", "int8", "int4")}


def test_int4_codes_round_trip_against_the_table():
    table = torch.randn(300, 64, generator=torch.Generator().manual_seed(0))
    module = quantized_embedding(table, "int4")
    assert isinstance(module, Int4Embedding)
    assert module.packed.dtype == torch.uint8 and module.packed.shape == (300, 32)
    assert module.scales.dtype == torch.float16 and module.scales.shape == (300, 64 // EMBEDDING_GROUP)
    ids = torch.arange(300)
    rows = module(ids)
    # round to nearest: at most half a step (scale = group amax / 7) from the fp32 value
    step = module.scales.float().repeat_interleave(EMBEDDING_GROUP, dim=1)
    assert ((rows - table).abs() <= step / 2 + 1e-6).all()
    # the same codes as ExecuTorch's own definition of the op reads them (its Python composite
    # multiplies in the scales' dtype, fp16; the kernel in the .pte in fp32, as this module does)
    from edgevlm.export.quantized_modules import executorch_embedding

    torch.testing.assert_close(executorch_embedding(module)(ids), rows, rtol=1e-3, atol=1e-6)
    assert not module.executorch_op  # the module passed in is unchanged


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_program_calls_the_quantized_embedding_kernel(programs, fmt):
    path, _ = programs[fmt]
    kernels = program_calls(path, "token_embedding")["kernels"]
    assert KERNELS[fmt] in kernels and "aten::embedding" not in kernels, kernels
    # the decoder method is unchanged: the table is gathered only in token_embedding
    assert not any(k.startswith("quantized_decomposed::embedding") for k in program_calls(path, "text_decoder")["kernels"])
    assert "aten::embedding" in program_calls(programs["fp32"][0], "token_embedding")["kernels"]


@pytest.mark.parametrize("fmt,rel_error,cosine", [("int8", 0.01, 0.9999), ("int4", 0.15, 0.99)])
def test_quantized_table_runs_in_executorch_close_to_fp32(programs, loaded_models, fmt, rel_error, cosine):
    loaded = loaded_models[PRESET]
    path, llm = programs[fmt]
    tokens = torch.randint(0, loaded.config.llm.vocab_size, (1, 9), generator=torch.Generator().manual_seed(3))
    embeds = load_pte_method(path, "token_embedding").execute([tokens])[0]
    with torch.no_grad():
        # exactly what the eager quantized module computes ...
        torch.testing.assert_close(embeds, llm.get_input_embeddings()(tokens), rtol=0, atol=1e-6)
        # ... and close to the fp32 table
        ref = loaded.model.llm.get_input_embeddings()(tokens)
    assert ((embeds - ref).norm() / ref.norm()).item() < rel_error
    # logits of the .pte from these embeddings against the fp32-table .pte's
    fp32_path, _ = programs["fp32"]
    fp32_embeds = load_pte_method(fp32_path, "token_embedding").execute([tokens])[0]
    torch.testing.assert_close(fp32_embeds, ref, rtol=0, atol=1e-6)
    logits = load_pte_method(path, "text_decoder").execute([embeds, torch.tensor([0])])[0]
    fp32_logits = load_pte_method(fp32_path, "text_decoder").execute([fp32_embeds, torch.tensor([0])])[0]
    assert torch.nn.functional.cosine_similarity(logits, fp32_logits, dim=-1).item() > cosine
    with torch.no_grad():
        eager = ExportDecoder(llm, 32, KVCacheSpec("fp32")).eval()(embeds, torch.tensor([0]))
    torch.testing.assert_close(logits, eager, atol=1e-4, rtol=1e-4)


def test_size_shrinks_by_the_table_bytes(programs, loaded_models):
    llm = loaded_models[PRESET].config.llm
    rows, width, groups = llm.vocab_size, llm.hidden_size, llm.hidden_size // EMBEDDING_GROUP
    fp32 = programs["fp32"][0].stat().st_size
    saved = {fmt: fp32 - programs[fmt][0].stat().st_size for fmt in ("int8", "int4")}
    expected = {"int8": rows * width * 4 - (rows * width + rows * groups * 4),
                "int4": rows * width * 4 - (rows * width // 2 + rows * groups * 2)}
    for fmt in saved:  # constant segments are 16-byte aligned; the op's instructions differ by a few hundred bytes
        assert abs(saved[fmt] - expected[fmt]) < 2048, (fmt, saved[fmt], expected[fmt])
    assert isinstance(programs["int8"][1].get_input_embeddings(), Int8Embedding)


def _recipe(tmp_path, embedding, backend="executorch"):
    data = {"name": f"emb-{embedding}", "vision": [{"backend": "ort", "precision": "fp32"}],
            "decoder": [{"backend": backend, "weights": "fp32" if backend == "executorch" else "int4",
                         "kv_cache": "fp32", "max_seq_len": 64, "embedding": embedding}]}
    path = tmp_path / f"{embedding}-{backend}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_recipe(str(path))


def test_unknown_embedding_fails_with_the_valid_names(tmp_path):
    with pytest.raises(ConfigError) as err:
        _recipe(tmp_path, "int3")
    text = f"{err.value.problem} {err.value.fix}"
    assert "int3" in text and all(name in text for name in ("fp32", "bf16", "int8", "int4")), text
    with pytest.raises(ConfigError) as err:  # int4 is the .pte's: the ONNX token_embedding graph has no such form
        _recipe(tmp_path, "int4", backend="ort")
    text = f"{err.value.problem} {err.value.fix}"
    assert "int4" in text and "int8" in text, text
    # --set decoder.embedding=... (export/recipe_overrides.py) goes through the same check
    _recipe(tmp_path, "int8")
    with pytest.raises(ConfigError, match="int3"):
        load_recipe(str(tmp_path / "int8-executorch.yaml"), overrides=["decoder.embedding=int3"])

def test_builtin_recipes_ship_the_smallest_table_their_backend_takes():
    # .pte decoders: int4 (the oracle answers as with int8, DESIGN.md); ONNX has no int4 Gather form
    for name in ("ios-m4", "android-sd8g3"):
        assert [t.embedding for t in load_recipe(name).decoder] == ["int4"], name
    assert [t.embedding for t in load_recipe("ort").decoder] == ["int8"]
    assert [t.embedding for t in load_recipe("ios-m4", overrides=["decoder.embedding=int8"]).decoder] == ["int8"]


def test_manifest_records_the_table(tiny_checkpoints, tmp_path):
    from edgevlm.export.driver import export_model
    from edgevlm.export.manifest import read_manifest

    out = export_model(tiny_checkpoints[PRESET], _recipe(tmp_path, "int4"), tmp_path / "out", part="decoder")
    decoder = next(a for a in read_manifest(out)["artifacts"] if a["part"] == "decoder")
    table = decoder["weights"]["embedding_table"]
    from edgevlm.checkpoint.loader import load_config

    cfg = load_config(tiny_checkpoints[PRESET]).llm
    assert decoder["weights"]["embedding"] == "int4"
    assert table == {"format": "int4", "bits": 4, "group_size": 32, "symmetric": True, "scale_dtype": "float16",
                     "kernel": "quantized_decomposed::embedding_4bit.dtype_out",
                     "bytes": cfg.vocab_size * cfg.hidden_size // 2 + cfg.vocab_size * cfg.hidden_size // 32 * 2,
                     "tied_lm_head": "separate copy" if cfg.tie_word_embeddings else "untied"}
    # the kernel is named among the ones the app must link, and it is what the program calls
    assert table["kernel"] in decoder["custom_ops"]
    calls = program_calls(out / decoder["file"], "token_embedding")["kernels"]
    assert KERNELS["int4"] in calls

