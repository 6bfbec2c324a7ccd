"""Export decoder: parity with the reference LLM for every family, static cache formats, INT4 packing."""

from __future__ import annotations

import pytest
import torch

from edgevlm.errors import ConfigError
from edgevlm.export.decoder.graph import ExportDecoder
from edgevlm.export.decoder.kv_cache import KVCacheSpec, LayerCache, dequantize, hadamard, quantize

FAMILIES = ["minicpmv-2.5-tiny", "minicpmv-2.6-tiny", "minicpmv-4.0-tiny", "minicpmv-4.5-tiny"]


def _prefill_then_decode(decoder, embeds, split):
    outs = [decoder(embeds[:, :split], torch.tensor([0]))]
    for i in range(split, embeds.shape[1]):
        outs.append(decoder(embeds[:, i:i + 1], torch.tensor([i])))
    return torch.cat(outs)


@pytest.mark.parametrize("name", FAMILIES)
def test_decoder_matches_reference_for_prefill_and_decode(name, loaded_models):
    llm = loaded_models[name].model.llm
    ids = torch.randint(0, llm.config.vocab_size, (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        embeds = llm.get_input_embeddings()(ids)  # MiniCPM4's scale_emb included
        ref = llm(inputs_embeds=embeds).logits[0, 11:]
        decoder = ExportDecoder(llm, max_seq_len=64, cache=KVCacheSpec("fp32")).eval()
        got = _prefill_then_decode(decoder, embeds, 12)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
        # the cache resets between conversations: the same turn again gives the same logits
        decoder.reset()
        torch.testing.assert_close(_prefill_then_decode(decoder, embeds, 12), got, atol=0, rtol=0)
        # quantized caches stay close; INT4 further than int8 further than fp16
        errors = {}
        for fmt in ("fp16", "int8", "int4"):
            quantized = ExportDecoder(llm, max_seq_len=64, cache=KVCacheSpec(fmt, group_size=16)).eval()
            errors[fmt] = (_prefill_then_decode(quantized, embeds, 12) - ref).abs().max().item()
    scale = ref.abs().max().item()
    assert errors["fp16"] < errors["int8"] < errors["int4"] < 0.3 * scale, errors


def test_int4_packing_round_trip_and_error_bound():
    x = torch.randn(2, 3, 5, 64) * torch.linspace(0.1, 4, 64)
    codes, scale, zero = quantize(x, 4, 32)
    assert codes.dtype == torch.uint8 and codes.shape == (2, 3, 5, 32)  # two values per byte
    assert scale.shape == zero.shape == (2, 3, 5, 2) and scale.dtype == torch.float16
    back = dequantize(codes, scale, zero, 4, 32)
    step = scale.float().repeat_interleave(32, dim=-1)
    assert ((back - x).abs() <= step / 2 + 1e-3).all()  # round-to-nearest: half a step at most
    # the nibble order is documented: element 2i low, 2i+1 high
    unpacked = torch.stack([codes & 0xF, codes >> 4], -1).flatten(-2)
    assert torch.equal(((x[..., 0] - zero[..., 0].float()) / scale[..., 0].float()).round().clamp(0, 15).to(torch.uint8),
                       unpacked[..., 0])
    codes8, s8, z8 = quantize(x, 8, 32)
    assert (dequantize(codes8, s8, z8, 8, 32) - x).abs().max() < (back - x).abs().max()


def test_cache_bytes_per_token_matches_the_buffers():
    for fmt, group in [("fp32", 32), ("fp16", 32), ("int8", 32), ("int4", 32), ("int4", 64)]:
        spec = KVCacheSpec(fmt, group)
        cache = LayerCache(spec, batch=1, kv_heads=2, max_seq_len=16, head_dim=64)
        stored = sum(b.numel() * b.element_size() for b in cache.buffers())
        assert stored / 16 == spec.bytes_per_token(layers=1, kv_heads=2, head_dim=64)
    assert KVCacheSpec("int4", 32).bytes_per_token(1, 1, 128) / KVCacheSpec("fp16").bytes_per_token(1, 1, 128) < 0.32


def test_hadamard_rotation_helps_keys_with_outlier_channels():
    """Per-token INT4 groups on keys with a few huge channels (as real LLM keys have) lose the small
    channels; rotating queries and keys by an orthonormal Hadamard first spreads the outliers."""
    h = hadamard(64)
    torch.testing.assert_close(h @ h.T, torch.eye(64), atol=1e-6, rtol=0)
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 4, 64, generator=gen), torch.randn(1, 1, 256, 64, generator=gen)
    k[..., [3, 17]] *= 10  # outlier channels
    exact = q @ k.transpose(-1, -2)

    def score_error(rotate):
        qq, kk = (q @ h, k @ h) if rotate else (q, k)
        codes, s, z = quantize(kk, 4, 32)
        approx = qq @ dequantize(codes, s, z, 4, 32).transpose(-1, -2)
        return ((approx - exact).norm() / exact.norm()).item()

    # measured: 0.118 relative score error without rotation, 0.072 with it
    assert score_error(rotate=True) < 0.75 * score_error(rotate=False)


def test_bad_cache_specs_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown KV-cache format 'int3'"):
        KVCacheSpec("int3").validate(64)
    with pytest.raises(ConfigError, match="group size 48 does not split head_dim 64 into even groups\n.*auto \\(32 "
                                          "for this model\\) or one of 2, 4, 8, 16, 32, 64"):
        KVCacheSpec("int4", 48).validate(64)
    with pytest.raises(ConfigError, match="group size 32 does not split head_dim 80 into even groups\n.*auto \\(16 for this model\\) or one of 2, 4, 8, 10, 16, 20, 40, 80"):
        KVCacheSpec("int4", 32).validate(80)
    KVCacheSpec("int4", 16, rotate_keys=True).validate(80)  # MiniCPM4: block Hadamard, groups of 16


def test_block_hadamard_is_orthonormal_and_block_diagonal():
    from edgevlm.export.decoder.kv_cache import auto_group_size, rotation_block

    assert [rotation_block(d) for d in (64, 80, 96, 128)] == [64, 16, 32, 128]
    assert [auto_group_size(d) for d in (64, 80, 96, 128)] == [32, 16, 32, 32]
    h = hadamard(80).double()
    assert torch.allclose(h @ h.T, torch.eye(80, dtype=torch.float64), atol=1e-12)
    assert torch.count_nonzero(h) == 5 * 16 * 16 and torch.equal(h, h.T)  # 5 Sylvester blocks of 16
    assert torch.equal(hadamard(64), hadamard(64).T) and torch.count_nonzero(hadamard(64)) == 64 * 64
