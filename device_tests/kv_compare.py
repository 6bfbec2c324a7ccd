"""KV-cache formats compared on real activations: attention-output error against an fp32 cache, and bytes
per token, for our formats and ExecuTorch's own caches, in one run.

Activations: the reference model prefills a few real prompts (text + the demo image through edgevlm's
preprocessing); per layer the post-RoPE queries, keys and values are captured. Each format then
stores the keys/values and the layer's causal attention is recomputed from what it gives back;
the error is ||out - out_fp32|| / ||out_fp32|| (mean over layers and prompts) and the worst layer's.

ExecuTorch's caches are exercised through their own modules: the int8 QuantizedKVCache of its llama
example (per-token asymmetric int8, fp32 scale + int8 zero point per head vector) and, where the
installed release ships it, TurboQuantKVCache (TQ4: random rotation, Lloyd-Max 4-bit codebook,
one bf16 norm per head vector), both on CPU through their quantize/dequantize code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.nn import functional as F

from edgevlm.export.decoder.graph import rotate_half
from edgevlm.export.decoder.kv_cache import KVCacheSpec, allowed_group_sizes, auto_group_size, dequantize, hadamard, quantize

PROMPTS = ("What shapes are in the picture?", "Describe the colours and positions of the objects in detail.",
           "Is there any text in the image? Read it out.")


@dataclass
class Captured:
    q: torch.Tensor  # [H, T, Dh] post-RoPE
    k: torch.Tensor  # [Hkv, T, Dh]
    v: torch.Tensor
    scaling: float


def capture(loaded, prompts=PROMPTS, image=None) -> list[list[Captured]]:
    """Per prompt, per layer: queries, keys, values of a full prefill of the reference LLM."""
    from edgevlm import defaults
    from edgevlm.preprocess import preprocess

    model, llm = loaded.model, loaded.model.llm
    image = image if image is not None else defaults.demo_image()
    runs = []
    for prompt in prompts:
        inputs = preprocess([image], prompt, loaded.tokenizer, loaded.config, processor_config=loaded.processor_config)
        with torch.no_grad():
            vision = model.resampler(model.vision_features(inputs.pixel_values, inputs.tgt_sizes), inputs.tgt_sizes,
                                     inputs.temporal_ids)
            embeds = model.embed_inputs(inputs.input_ids, vision, inputs.image_bounds)[None].float()
            normed = []
            hooks = [layer.input_layernorm.register_forward_hook(lambda m, a, out: normed.append(out))
                     for layer in llm.model.layers]
            try:
                llm(inputs_embeds=embeds, use_cache=False)
            finally:
                for h in hooks:
                    h.remove()
            t = embeds.shape[1]
            cos, sin = llm.model.rotary_emb(embeds, torch.arange(t)[None])
            runs.append([_project(layer.self_attn, x, cos[0], sin[0]) for layer, x in zip(llm.model.layers, normed)])
    return runs


def _project(attn, x, cos, sin) -> Captured:
    head_dim = attn.head_dim
    t = x.shape[1]
    q = attn.q_proj(x).view(t, -1, head_dim)
    k = attn.k_proj(x).view(t, -1, head_dim)
    v = attn.v_proj(x).view(t, -1, head_dim)
    if hasattr(attn, "q_norm"):
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    return Captured(q.float(), k.float(), v.float(), float(attn.scaling))


def attention(q, k, v, scaling) -> torch.Tensor:
    groups = q.shape[0] // k.shape[0]
    k, v = k.repeat_interleave(groups, 0), v.repeat_interleave(groups, 0)
    return F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True, scale=scaling)[0]


# ---- formats: each maps (q, k, v) -> (q', k', v') as attention would see them after the cache ------------


def ours(spec: KVCacheSpec) -> Callable:
    def apply(q, k, v):
        if spec.format in ("fp32", "fp16"):
            dtype = torch.float16 if spec.format == "fp16" else torch.float32
            return q, k.to(dtype).float(), v.to(dtype).float()
        if spec.rotate_keys:
            h = hadamard(k.shape[-1])  # block-diagonal for heads that are not a power of two
            q, k = q @ h, k @ h
        return q, _roundtrip(k, spec), _roundtrip(v, spec)
    return apply


def _roundtrip(x, spec: KVCacheSpec):
    codes, scale, zero = quantize(x, spec.bits, spec.group_size)
    return dequantize(codes, scale, zero, spec.bits, spec.group_size)


def int4_channel_keys(token_group: int = 32, group: int = 32) -> Callable:
    """KIVI-style: keys quantized per channel over groups of `token_group` tokens, values per token."""
    def apply(q, k, v):
        hkv, t, d = k.shape
        pad = (-t) % token_group
        kt = F.pad(k.transpose(1, 2), (0, pad))  # [Hkv, Dh, T+pad]: groups run along the sequence
        kq = _roundtrip(kt, KVCacheSpec("int4", token_group))[..., :t].transpose(1, 2)
        return q, kq, _roundtrip(v, KVCacheSpec("int4", group))
    return apply


def executorch_int8() -> Callable:
    from torch.ao.quantization.fx._decomposed import quantized_decomposed_lib  # noqa: F401

    from executorch.examples.models.llama.source_transformation.custom_kv_cache import (QuantizedCacheType,
                                                                                         QuantizedKVCache)

    def apply(q, k, v):
        hkv, t, d = k.shape
        cache = QuantizedKVCache(1, t, hkv, d, QuantizedCacheType.AffineAsymmetric)
        out = []
        for x in (k, v):
            seq_major = x.transpose(0, 1)[None].contiguous()  # [1, T, Hkv, Dh]: its cache layout
            codes, scales, zeros = cache._quantize(seq_major)
            # The cache stores zero points as int8; the decomposed reference op subtracts in the zero
            # point's dtype, so it is given them widened (same values) to avoid int8 wrap-around.
            back = torch.ops.quantized_decomposed.dequantize_per_token(codes, scales.float(), zeros.long(),
                                                                       -128, 127, torch.int8, torch.float32)
            out.append(back[0].transpose(0, 1))
        return q, out[0], out[1]
    return apply


def executorch_turboquant() -> Callable | str:
    """TurboQuant TQ4 from the installed ExecuTorch, or the reason it is not there."""
    try:
        TurboQuantKVCache = _turboquant_class()
    except ImportError as exc:
        return f"not in the installed executorch ({exc})"

    def apply(q, k, v):
        hkv, t, d = k.shape
        cache = TurboQuantKVCache(hkv, d, t)
        return q, *(cache._decompress(*cache._compress(x[None]))[0].float() for x in (k, v))
    return apply


def _turboquant_class():
    """executorch.extension.llm.modules' __init__ imports torchtune (for its other modules), which this
    environment does not have; the turboquant subpackage needs only torch, so its parent package is
    registered by path without running that __init__."""
    import importlib
    import sys
    import types

    import executorch.extension.llm as llm_pkg

    name = "executorch.extension.llm.modules"
    if name not in sys.modules:
        parent = types.ModuleType(name)
        parent.__path__ = [str(Path(list(llm_pkg.__path__)[0]) / "modules")]
        if not Path(parent.__path__[0], "turboquant").is_dir():
            raise ImportError("executorch.extension.llm.modules.turboquant is absent")
        sys.modules[name] = parent
    return importlib.import_module(f"{name}.turboquant").TurboQuantKVCache


def formats(layers: int, kv_heads: int, head_dim: int) -> list[tuple[str, Callable | str, float]]:
    """(name, apply or reason it cannot run, cache bytes per token over all layers)."""
    out = []
    group = auto_group_size(head_dim)
    for spec in [KVCacheSpec("fp16"), KVCacheSpec("int8", group, False), KVCacheSpec("int8", group, True)]:
        out.append((_name(spec), ours(spec), spec.bytes_per_token(layers, kv_heads, head_dim)))
    # every even group from 16 up that divides the head: 16/32/64/128 for 128; 16/20/40/80 for MiniCPM4's 80
    for group in [g for g in allowed_group_sizes(head_dim) if g >= 16]:
        for rotate in (False, True):
            spec = KVCacheSpec("int4", group, rotate)
            out.append((_name(spec), ours(spec), spec.bytes_per_token(layers, kv_heads, head_dim)))
    # per-channel keys: 4 bits + (scale, zero) fp16 per channel per 32 tokens; values int4 g32
    per_channel = 2 * layers * kv_heads * (head_dim / 2 + 2 * 2 * head_dim / group)
    out.append((f"edgevlm int4 keys per-channel (32-token groups), values g{group}", int4_channel_keys(group=group),
                per_channel))
    per_head_int8 = 2 * layers * kv_heads * (head_dim + 4 + 1)  # int8 codes + fp32 scale + int8 zero point
    out.append(("executorch int8 QuantizedKVCache (per-token asym)", executorch_int8(), per_head_int8))
    tq = executorch_turboquant()
    out.append(("executorch TurboQuant TQ4 (4-bit codebook + bf16 norm)", tq,
                2 * layers * kv_heads * (head_dim / 2 + 2)))
    return out


def _name(spec: KVCacheSpec) -> str:
    if not spec.quantized:
        return f"edgevlm {spec.format}"
    return f"edgevlm {spec.format} per-token g{spec.group_size}" + (" + Hadamard keys" if spec.rotate_keys else "")


def compare_caches(loaded, prompts=PROMPTS) -> dict:
    runs = capture(loaded, prompts)
    cfg = loaded.config.llm
    head_dim = cfg.resolved_head_dim
    fp32_bytes = KVCacheSpec("fp32").bytes_per_token(cfg.num_hidden_layers, cfg.num_key_value_heads, head_dim)
    rows = []
    for name, apply, nbytes in formats(cfg.num_hidden_layers, cfg.num_key_value_heads, head_dim):
        row = {"format": name, "bytes_per_token": nbytes, "compression_vs_fp32": fp32_bytes / nbytes}
        if isinstance(apply, str):
            rows.append(row | {"status": "not run", "reason": apply})
            continue
        errors = []
        for layers in runs:
            for c in layers:
                ref = attention(c.q, c.k, c.v, c.scaling)
                got = attention(*apply(c.q, c.k, c.v), c.scaling)
                errors.append(float((got - ref).norm() / ref.norm().clamp_min(1e-12)))
        rows.append(row | {"status": "ok", "rel_error_mean": sum(errors) / len(errors), "rel_error_max": max(errors),
                           "samples": len(errors)})
    tokens = [layers[0].k.shape[1] for layers in runs]
    return {"model": {"version": loaded.config.version, "source": str(loaded.path), "layers": cfg.num_hidden_layers,
                      "kv_heads": cfg.num_key_value_heads, "head_dim": head_dim},
            "prompts": list(prompts), "prompt_tokens": tokens, "fp32_bytes_per_token": fp32_bytes, "formats": rows,
            "metric": "||attn_out(format) - attn_out(fp32)|| / ||attn_out(fp32)|| per layer and prompt; "
                      "mean and max over them"}
