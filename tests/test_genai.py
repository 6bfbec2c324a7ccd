"""ONNX Runtime GenAI reads edgevlm's float-cache ONNX decoder export (genai_config.json + its graph)
and decodes the same greedy tokens as edgevlm; an INT4-cache export gets no config, with the reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from edgevlm.export.decoder.session import EagerDecoderSession, OrtDecoderSession
from edgevlm.export.driver import export_model
from edgevlm.export.integrity import check_files
from edgevlm.export.manifest import read_manifest
from edgevlm.export.recipes import load_recipe

og = pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is in the `test` extra")

PRESET = "minicpmv-2.6-tiny"
PROMPT = "Describe the picture in one short sentence."
NEW_TOKENS = 12


def _export(tiny_checkpoints, root, decoder: dict, preset: str = PRESET):
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "genai-test", "decoder": [decoder]}))
    return export_model(tiny_checkpoints[preset], load_recipe(str(path)), root / "out", part="decoder")


def _decoder_entry(folder):
    manifest = read_manifest(folder)
    return manifest, next(a for a in manifest["artifacts"] if a["part"] == "decoder")


def _greedy(session, prompt_ids: list[int], new_tokens: int, stop: set[int]) -> list[int]:
    """edgevlm's own greedy loop over a decoder session (prefill, then one token a step)."""
    session.reset()
    logits = session.step(session.embed(prompt_ids), 0)
    tokens, pos = [], len(prompt_ids)
    while len(tokens) < new_tokens:
        token = int(torch.argmax(logits))
        tokens.append(token)
        if token in stop:
            break
        logits = session.step(session.embed([token]), pos)
        pos += 1
    return tokens


def _genai_greedy(folder, prompt_ids: list[int], new_tokens: int) -> list[int]:
    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt_ids) + new_tokens, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(np.asarray([prompt_ids], dtype=np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    return [int(t) for t in generator.get_sequence(0)[len(prompt_ids):]]


@pytest.fixture(scope="module")
def float_cache_export(tiny_checkpoints, tmp_path_factory):
    return _export(tiny_checkpoints, tmp_path_factory.mktemp("genai-fp32"),
                   {"backend": "ort", "weights": "fp32", "kv_cache": "fp32", "max_seq_len": 64})


def test_genai_decodes_the_same_tokens_as_edgevlm(float_cache_export, loaded_models):
    loaded = loaded_models[PRESET]
    manifest, entry = _decoder_entry(float_cache_export)
    genai = entry["genai"]
    assert genai["written"] and genai["config"] == "genai_config.json"
    listed = {e["file"] for e in entry["extra_files"]}
    assert {genai["graph"], "genai_config.json", "tokenizer.json", "tokenizer_config.json"} <= listed
    check_files(float_cache_export, manifest, [entry])  # every GenAI file is hashed in the manifest
    config = json.loads((float_cache_export / "genai_config.json").read_text())
    assert config["model"]["decoder"]["filename"] == genai["graph"]
    assert config["search"]["max_length"] == entry["kv_cache"]["max_seq_len"] == 64

    prompt = loaded.tokenizer.encode(PROMPT)
    stop = set(loaded.tokenizer.stop_token_ids())
    eager = _greedy(EagerDecoderSession(loaded.model.llm.float().eval()), prompt, NEW_TOKENS, stop)
    artifact = _greedy(OrtDecoderSession(float_cache_export, entry), prompt, NEW_TOKENS, stop)
    genai = _genai_greedy(float_cache_export, prompt, NEW_TOKENS)
    assert len(eager) == NEW_TOKENS and len(set(eager)) > 1  # a real sequence, not one repeated token
    assert genai == artifact == eager


def test_genai_runs_an_fp16_cache_with_int4_weights(tiny_checkpoints, loaded_models, tmp_path):
    """MiniCPM4 (head_dim 80, scale_emb in the embedding graph), MatMulNBits weights, fp16 cache: GenAI
    allocates the cache in the graph's fp16 and decodes the ONNX session's own greedy tokens."""
    preset = "minicpmv-4.0-tiny"
    out = _export(tiny_checkpoints, tmp_path, {"backend": "ort", "weights": "int4", "weight_calibration": "rtn",
                                                "kv_cache": "fp16", "max_seq_len": 64}, preset)
    _, entry = _decoder_entry(out)
    assert entry["genai"]["written"] and entry["kv_cache"]["head_dim"] == 80
    tokenizer = loaded_models[preset].tokenizer
    prompt = tokenizer.encode(PROMPT)
    artifact = _greedy(OrtDecoderSession(out, entry), prompt, NEW_TOKENS, set(tokenizer.stop_token_ids()))
    genai = _genai_greedy(out, prompt, NEW_TOKENS)
    assert len(set(artifact)) > 1
    assert genai == artifact


def test_genai_tokenizer_matches_edgevlm(float_cache_export, loaded_models):
    tokenizer = loaded_models[PRESET].tokenizer
    genai_tokenizer = og.Tokenizer(og.Model(str(float_cache_export)))
    assert list(genai_tokenizer.encode(PROMPT)) == tokenizer.encode(PROMPT)


def test_int4_cache_export_says_why_genai_cannot_load_it(tiny_checkpoints, loaded_models, tmp_path):
    from edgevlm.export.decoder.onnx_graph import DecoderOnnxSpec
    from edgevlm.export.genai import build_genai_graph, genai_config

    out = _export(tiny_checkpoints, tmp_path, {"backend": "ort", "weights": "fp32", "kv_cache": "int4",
                                                "max_seq_len": 64})
    _, entry = _decoder_entry(out)
    assert not (out / "genai_config.json").exists()
    assert entry["genai"]["written"] is False
    assert "one key and one value tensor per layer" in entry["genai"]["reason"]
    # The claim itself: pointed at the INT4 codes, GenAI binds only past_key_names / past_value_names,
    # so the scale and zero-point inputs stay unbound and it cannot run the graph.
    build_genai_graph(out / entry["file"], out / entry["graphs"]["token_embedding"]["file"], out / "int4.genai.onnx")
    config = genai_config(loaded_models[PRESET], DecoderOnnxSpec(max_seq_len=64), "int4.genai.onnx")
    names = config["model"]["decoder"]
    names["inputs"] |= {"past_key_names": "past.%d.k_codes", "past_value_names": "past.%d.v_codes"}
    names["outputs"] |= {"present_key_names": "present.%d.k_codes", "present_value_names": "present.%d.v_codes"}
    (out / "genai_config.json").write_text(json.dumps(config))
    with pytest.raises(RuntimeError, match=r"Missing Input: past\.\d+\.[kv]_(scale|zero)"):
        _genai_greedy(out, loaded_models[PRESET].tokenizer.encode(PROMPT), 2)
