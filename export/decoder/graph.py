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

The layer loop (norm, attention, residual with MiniCPM4's residual_scale, MLP) is written once,
in `run_layers`; how a layer attends and which cache it uses is the attention strategy
(ATTENTION_STRATEGIES). The attribute names below (layers, norm, lm_head, caches, rope_cos, ...)
and their registration order are part of the exported programs: changing them changes the bytes.
"""

from __future__ import annotations

import torch
from torch import nn

from edgevlm.export.decoder.kv_cache import KVCacheSpec, hadamard
from edgevlm.export.decoder.static_attention import StaticAttention, rotate_half  # noqa: F401  (rotate_half: re-export)


def _custom_ops_attention():
    from edgevlm.export.decoder.custom_ops_attention import CustomOpsAttention  # executorch import: lazy

    return CustomOpsAttention()


# attention strategy name -> factory. static: portable (any exporter); custom: ExecuTorch's LLM
# custom ops (custom_ops_attention.py), cost grows with the context instead of max_seq_len.
ATTENTION_STRATEGIES = {"static": StaticAttention, "custom": _custom_ops_attention}


def attention_strategy(name: str):
    try:
        return ATTENTION_STRATEGIES[name]()
    except KeyError:
        raise ValueError(f"attention must be one of {tuple(ATTENTION_STRATEGIES)}, not {name!r}") from None


class ExportDecoder(nn.Module):
    def __init__(self, llm: nn.Module, max_seq_len: int, cache: KVCacheSpec = KVCacheSpec(), batch: int = 1,
                 attention: str = StaticAttention.name):
        super().__init__()
        strategy = attention_strategy(attention)
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
        self.strategy = strategy
        strategy.install(self)  # before the caches: the registration order is the program's
        self.caches = nn.ModuleList(strategy.cache_class(cache, batch, self.kv_heads, max_seq_len, self.head_dim)
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

    def rope_rows(self, x: torch.Tensor, start_pos: torch.Tensor):
        """(positions [T], cos [T, Dh], sin [T, Dh]) of this step's tokens."""
        positions = start_pos + torch.arange(x.shape[1], dtype=torch.long)
        return positions, self.rope_cos[positions], self.rope_sin[positions]

    def run_layers(self, x: torch.Tensor, start_pos: torch.Tensor, caches) -> torch.Tensor:
        """The hidden states after every layer, each layer attending through its cache in `caches`."""
        strategy = self.strategy
        step = strategy.prepare(self, x, start_pos)
        for index, (layer, cache) in enumerate(zip(self.layers, caches)):
            input_norm, post_norm = strategy.norms(self, index, layer)
            h = strategy.attend(self, index, layer.self_attn, input_norm(x), cache, step)
            scale = getattr(layer, "residual_scale", None)  # MiniCPM4 muP depth scaling
            x = x + (h * scale if scale is not None else h)
            m = layer.mlp(post_norm(x))
            x = x + (m * scale if scale is not None else m)
        return x

    def forward(self, inputs_embeds: torch.Tensor, start_pos: torch.Tensor) -> torch.Tensor:
        x = self.run_layers(inputs_embeds, start_pos, self.caches)
        return self.lm_head(self.strategy.final_norm(self)(x[:, -1]))
