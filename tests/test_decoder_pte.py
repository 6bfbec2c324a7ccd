"""ExecuTorch .pte decoders: runner-convention methods and metadata, run by ExecuTorch's Python runtime."""

from __future__ import annotations

import pytest
import torch

from edgevlm.export.decoder.graph import ExportDecoder
from edgevlm.export.decoder.pte import DecoderPteSpec, KV_FORMAT_CODES, export_pte, load_pte_method, quantize_weights
from edgevlm.export.decoder.kv_cache import KVCacheSpec
from edgevlm.export.vision import INPUT_NAMES, StaticVisionEncoder, vision_inputs


def _metadata(path, names):
    return {name: load_pte_method(path, name).execute([])[0] for name in names}


def test_multimodal_pte_methods_match_eager(loaded_models, tmp_path):
    loaded = loaded_models["minicpmv-2.6-tiny"]
    llm = loaded.model.llm
    encoder = StaticVisionEncoder(loaded.model.vpm, loaded.model.resampler).eval()
    slices = [torch.rand(3, 14, 12 * 16 * 14, generator=torch.Generator().manual_seed(0))]
    example = vision_inputs(slices, torch.tensor([[12, 16]]), 256, loaded.model.resampler, 70).arrays
    spec = DecoderPteSpec(max_seq_len=96, weights="fp32", cache=KVCacheSpec("int4", 32))
    path = tmp_path / "mm.pte"
    metadata = export_pte(loaded, spec, path, vision=(encoder, example))
    assert not list(tmp_path.glob(".*partial"))

    tokens = torch.randint(0, llm.config.vocab_size, (1, 7), generator=torch.Generator().manual_seed(1))
    embeds = load_pte_method(path, "token_embedding").execute([tokens])[0]
    torch.testing.assert_close(embeds, llm.get_input_embeddings()(tokens).detach())

    vision = load_pte_method(path, "vision_encoder").execute([torch.from_numpy(example[n]) for n in INPUT_NAMES])[0]
    with torch.no_grad():
        torch.testing.assert_close(vision, loaded.model.encode_images(slices, torch.tensor([[12, 16]])),
                                   atol=1e-4, rtol=1e-4)

    # prefill, then decode one token, through the program's own mutable INT4 cache
    decoder = load_pte_method(path, "text_decoder")
    eager = ExportDecoder(llm, 96, spec.cache).eval()
    with torch.no_grad():
        ref_prefill = eager(embeds, torch.tensor([0]))
        ref_step = eager(embeds[:, :1], torch.tensor([7]))
    torch.testing.assert_close(decoder.execute([embeds, torch.tensor([0])])[0], ref_prefill, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(decoder.execute([embeds[:, :1], torch.tensor([7])])[0], ref_step, atol=1e-4, rtol=1e-4)

    got = _metadata(path, ["get_max_seq_len", "get_vocab_size", "use_kv_cache", "enable_dynamic_shape",
                           "get_kv_cache_format", "get_kv_cache_bits", "get_kv_cache_group_size"])
    assert got == {"get_max_seq_len": 96, "get_vocab_size": llm.config.vocab_size, "use_kv_cache": True,
                   "enable_dynamic_shape": True, "get_kv_cache_format": KV_FORMAT_CODES["int4"],
                   "get_kv_cache_bits": 4, "get_kv_cache_group_size": 32}
    assert metadata["get_eos_ids"] == sorted(loaded.tokenizer.stop_token_ids())


@pytest.mark.slow
def test_standalone_8da4w_pte_runs_the_text_runner_convention(loaded_models, tmp_path):
    loaded = loaded_models["minicpmv-4.5-tiny"]
    spec = DecoderPteSpec(max_seq_len=64, weights="8da4w", group_size=32, cache=KVCacheSpec("int4", 32))
    path = tmp_path / "text.pte"
    export_pte(loaded, spec, path, runner="text")
    quantized = quantize_weights(loaded.model.llm, spec)
    assert loaded.model.llm.lm_head.weight.dtype == torch.float32  # the oracle is left untouched
    tokens = torch.randint(0, 1000, (1, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = ExportDecoder(quantized, 64, spec.cache).eval()(quantized.get_input_embeddings()(tokens),
                                                              torch.tensor([0]))
        fp32 = ExportDecoder(loaded.model.llm, 64, KVCacheSpec("fp32")).eval()(
            loaded.model.llm.get_input_embeddings()(tokens), torch.tensor([0]))
    out = load_pte_method(path, "forward").execute([tokens, torch.tensor([0])])[0]
    scale = fp32.abs().max()
    # XNNPACK's int8 dynamic activation rounding differs slightly from torchao's eager simulation
    assert (out - ref).abs().max() < 0.1 * scale
    assert (out - fp32).abs().max() < 0.3 * scale and torch.isfinite(out).all()
    assert _metadata(path, ["get_max_seq_len"])["get_max_seq_len"] == 64


@pytest.fixture(scope="module")
def custom_int4_pte(loaded_models, tmp_path_factory):
    """A text-runner .pte of the Qwen3-style 4.5-tiny: 8da4w weights, INT4 cache, custom attention."""
    loaded = loaded_models["minicpmv-4.5-tiny"]  # per-head q/k norms: inside the partition too
    spec = DecoderPteSpec(max_seq_len=48, weights="8da4w", group_size=32, cache=KVCacheSpec("int4", 32, True),
                          attention="custom")
    path = tmp_path_factory.mktemp("custom") / "custom.pte"
    export_pte(loaded, spec, path, runner="text")
    return loaded, spec, path


def test_custom_attention_pte_is_one_xnnpack_partition_per_layer(custom_int4_pte):
    """Between the cache ops each layer is one XNNPACK partition (reshapes with one inferred dim,
    RMSNorms without pooling reshapes; RoPE and the key/query rotation one edgevlm::rope kernel per
    tensor beside the cache ops): on the 0.5B model an earlier form made 74 delegate calls and 96
    portable slices per decode step instead of 26."""
    from edgevlm.device_tests.decoder_profile import program_calls

    loaded, spec, path = custom_int4_pte
    calls = program_calls(path, "forward")
    kernels, layers = calls["kernels"], loaded.config.llm.num_hidden_layers
    # one partition before the first attention, one between each two layers' attention ops, one after
    # the last (up to x[:, -1], a portable select), then the final norm + lm_head
    assert calls["delegate_calls"] == layers + 2, calls
    assert kernels["edgevlm::int4_update_cache"] == 2 * layers and kernels["edgevlm::int4_sdpa"] == layers
    assert kernels["edgevlm::rope"] == 2 * layers
    # the rotary tables are indexed inside edgevlm::rope: no per-step index or arange left for them
    assert not set(kernels) & {"aten::index", "aten::arange"}, kernels
    assert not set(kernels) & {"aten::slice_copy", "aten::view_copy", "aten::cat", "aten::mul"}, kernels

    quantized = quantize_weights(loaded.model.llm, spec)
    tokens = torch.randint(0, 1000, (1, 9), generator=torch.Generator().manual_seed(4))
    eager = ExportDecoder(quantized, 48, spec.cache, attention="custom").eval()
    method = load_pte_method(path, "forward")
    with torch.no_grad():
        for chunk, pos in [(tokens, 0), (tokens[:, :1], 9)]:
            ref = eager(quantized.get_input_embeddings()(chunk), torch.tensor([pos]))
            out = method.execute([chunk, torch.tensor([pos])])[0]
            assert (out - ref).abs().max() < 0.1 * ref.abs().max()  # XNNPACK's int8 activation rounding


def test_profile_decoder_groups_a_decode_step(custom_int4_pte, tmp_path):
    """`edgevlm profile-decoder` on a real INT4 .pte: ETDump events grouped, static call counts beside."""
    from edgevlm.cli.main import main
    from edgevlm.device_tests.decoder_profile import profile_decode, program_calls

    loaded, _, path = custom_int4_pte
    report = profile_decode(path, context=20, steps=3)
    static = program_calls(path, "forward")
    assert report["method"] == "forward" and report["delegate_calls"] == static["delegate_calls"] > 0
    assert report["kernel_calls"] == static["kernel_calls"] == sum(static["kernels"].values())
    parts = ("xnnpack_gemm_ms", "xnnpack_other_ms", "executorch_kernels_ms")
    assert all(report[k] > 0 for k in parts) and sum(report[k] for k in parts) <= report["step_ms"] * 1.01
    names = {e["name"]: e for e in report["top_events"]}
    # once per layer per step
    assert names["edgevlm::int4_sdpa.out"]["occurrences"] == loaded.config.llm.num_hidden_layers
    assert main(["profile-decoder", "--artifact", str(path), "--context", "8", "--steps", "2",
                 "--json", str(tmp_path / "p.json")]) == 0
    assert (tmp_path / "p.json").exists()
    with pytest.raises(ValueError, match="no method 'text_decoder'"):
        program_calls(path, "text_decoder")
    with pytest.raises(ValueError, match="past the program's cache of 48 positions"):
        profile_decode(path, context=49, steps=1)
