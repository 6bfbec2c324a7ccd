"""The export-friendly text decoder: the reference LLM's own weights over a static, preallocated cache.

forward(inputs_embeds [1, T, D] float32, start_pos int64 [1]) -> logits [1, V] of the last position.
Prefill (T tokens) and decode (T = 1) are the same graph over the same cache; positions
start_pos .. start_pos+T-1 are written, every earlier position is attended to. `reset()` clears
the cache between conversations. The embeddings come in already made (token embeddings, with
MiniCPM's scale_emb applied, and vision embeddings placed at the image bounds), which is the
multimodal runner convention: the decoder never sees token ids.

Everything family-specific is read off the reference modules rather than re-implemented:
the RMSNorms, MLPs, projections (Qwen2's q/k/v biases), Qwen3's per-head q/k norms, MiniCPM4's
residual scale and muP lm_head divisor, and the rotary tables (including Llama-3 and LongRoPE
scaling) precomputed from the model's own rotary embedding for every cache position.
"""

from __future__ import annotations

import torch
from torch import nn

from edgevlm.export.kv_cache import KVCacheSpec, LayerCache, hadamard


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class ExportDecoder(nn.Module):
    def __init__(self, llm: nn.Module, max_seq_len: int, cache: KVCacheSpec = KVCacheSpec(), batch: int = 1,
                 attention: str = "static"):
        """attention: "static" (portable: any exporter) or "custom" (ExecuTorch's LLM custom ops,
        export/decoder_fast.py: cost grows with the context instead of max_seq_len)."""
        super().__init__()
        from edgevlm.export import decoder_fast

        if attention not in decoder_fast.ATTENTION_MODES:
            raise ValueError(f"attention must be one of {decoder_fast.ATTENTION_MODES}, not {attention!r}")
        self.attention = attention
        inner = llm.model
        attn0 = inner.layers[0].self_attn
        cfg = llm.config
        self.head_dim = attn0.head_dim
        self.hidden_size, self.vocab_size = cfg.hidden_size, cfg.vocab_size
        self.num_heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.max_seq_len = max_seq_len
        cache.validate(self.head_dim)
        self.cache_spec = cache
        self.layers = inner.layers
        self.norm = inner.norm
        self.lm_head = llm.lm_head
        if attention == "custom":
            decoder_fast.load_custom_ops()
            self.custom_norms = nn.ModuleList(decoder_fast.layer_norms(layer) for layer in self.layers)
            self.final_norm = decoder_fast.LinearRMSNorm(self.norm)
            self.register_buffer("rope_rotation", decoder_fast.rotate_half_weight(self.head_dim), persistent=False)
        cache_cls = decoder_fast.SeqMajorLayerCache if attention == "custom" else LayerCache
        self.caches = nn.ModuleList(cache_cls(cache, batch, self.kv_heads, max_seq_len, self.head_dim)
                                    for _ in self.layers)
        positions = torch.arange(max_seq_len)[None]
        probe = torch.zeros(1, dtype=torch.float32)
        with torch.no_grad():
            cos, sin = inner.rotary_emb(probe, positions)
        self.register_buffer("rope_cos", cos[0].float(), persistent=False)  # [S, Dh]
        self.register_buffer("rope_sin", sin[0].float(), persistent=False)
        self.rotate = cache.quantized and cache.rotate_keys
        if self.rotate:
            self.register_buffer("hadamard", hadamard(self.head_dim), persistent=False)

    def reset(self) -> None:
        for cache in self.caches:
            cache.reset()

    def forward(self, inputs_embeds: torch.Tensor, start_pos: torch.Tensor) -> torch.Tensor:
        t = inputs_embeds.shape[1]
        positions = start_pos + torch.arange(t, dtype=torch.long)
        cos, sin = self.rope_cos[positions], self.rope_sin[positions]  # [T, Dh]
        if self.attention == "custom":
            return self._forward_custom(inputs_embeds, start_pos, cos, sin)
        # Causal mask over the whole static cache: query i sees cache positions <= its own position.
        keys_pos = torch.arange(self.max_seq_len, dtype=torch.long)
        mask = torch.where(keys_pos[None, :] <= positions[:, None], 0.0, float("-inf"))  # [T, S]
        x = inputs_embeds
        for layer, cache in zip(self.layers, self.caches):
            h = self._attention(layer.self_attn, layer.input_layernorm(x), cache, positions, cos, sin, mask)
            scale = getattr(layer, "residual_scale", None)  # MiniCPM4 muP depth scaling
            x = x + (h * scale if scale is not None else h)
            m = layer.mlp(layer.post_attention_layernorm(x))
            x = x + (m * scale if scale is not None else m)
        return self.lm_head(self.norm(x[:, -1]))

    def _forward_custom(self, x, start_pos, cos, sin):
        from edgevlm.export.decoder_fast import custom_attention, start_position

        start = start_position(start_pos, x.shape[1], self.max_seq_len)
        cos, sin = cos[:, None], sin[:, None]  # [T, 1, Dh]: broadcast over heads, once for all layers
        for layer, cache, norms in zip(self.layers, self.caches, self.custom_norms):
            h = custom_attention(self, layer.self_attn, norms["input"](x), cache, start, cos, sin, norms)
            scale = getattr(layer, "residual_scale", None)
            x = x + (h * scale if scale is not None else h)
            m = layer.mlp(norms["post"](x))
            x = x + (m * scale if scale is not None else m)
        return self.lm_head(self.final_norm(x[:, -1]))

    def _attention(self, attn, x, cache: LayerCache, positions, cos, sin, mask):
        b, t, _ = x.shape
        q = attn.q_proj(x).view(b, t, -1, self.head_dim)
        k = attn.k_proj(x).view(b, t, -1, self.head_dim)
        v = attn.v_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
        if hasattr(attn, "q_norm"):  # Qwen3: RMSNorm per head before RoPE
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # [B, H, T, Dh]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.rotate:  # (qH)(kH)^T = q k^T: rotating both spreads key outliers before quantization
            q, k = q @ self.hadamard, k @ self.hadamard
        cache.write("k", positions, k)
        cache.write("v", positions, v)
        keys, values = cache.read("k", q.dtype), cache.read("v", q.dtype)  # [B, Hkv, S, Dh]
        groups = self.num_heads // self.kv_heads
        keys = keys.repeat_interleave(groups, dim=1)
        values = values.repeat_interleave(groups, dim=1)
        out = torch.nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=mask.to(q.dtype),
                                                               scale=attn.scaling)
        return attn.o_proj(out.transpose(1, 2).reshape(b, t, -1))
