"""Reference LLM backbones (`llm.*`), built from transformers' own classes.

Llama-3 (2.5), Qwen2 (2.6) and Qwen3 (4.5) are transformers' classes unchanged, so the oracle
is independent of our export code. MiniCPM4 (4.0) has no transformers class; it is the Llama
stack plus MiniCPM's muP scaling and LongRoPE, written as small subclasses so the key names
(`model.layers.N.self_attn.q_proj`, ...) stay the official ones.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgevlm.config import LLMConfig
from edgevlm.errors import ConfigError


def hf_config(cfg: LLMConfig):
    """The transformers config object for a backbone family."""
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    common = dict(
        hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads, vocab_size=cfg.vocab_size, rms_norm_eps=cfg.rms_norm_eps,
        max_position_embeddings=cfg.max_position_embeddings, tie_word_embeddings=cfg.tie_word_embeddings,
        hidden_act=cfg.hidden_act, bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id,
        pad_token_id=cfg.pad_token_id,
    )
    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.rope_scaling and cfg.arch != "minicpm":  # MiniCPM's LongRoPE is applied by MiniCPMRotaryEmbedding
        rope = {**cfg.rope_scaling, "rope_theta": cfg.rope_theta}
        rope.setdefault("rope_type", rope.pop("type", "default"))
    if cfg.arch in ("llama", "minicpm"):
        return LlamaConfig(**common, head_dim=cfg.resolved_head_dim, attention_bias=cfg.attention_bias,
                           rope_parameters=rope)
    if cfg.arch == "qwen2":
        return Qwen2Config(**common, rope_parameters=rope, use_sliding_window=False)
    if cfg.arch == "qwen3":
        return Qwen3Config(**common, head_dim=cfg.resolved_head_dim, attention_bias=cfg.attention_bias,
                           rope_parameters=rope, use_sliding_window=False)
    raise ConfigError(f"unknown LLM family {cfg.arch!r}", "use a MiniCPM-V 2.5, 2.6, 4.0 or 4.5 checkpoint")


def build_llm(cfg: LLMConfig) -> nn.Module:
    from transformers import LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM

    hf = hf_config(cfg)
    hf._attn_implementation = "sdpa"
    if cfg.arch == "minicpm":
        return MiniCPMForCausalLM(hf, cfg)
    return {"llama": LlamaForCausalLM, "qwen2": Qwen2ForCausalLM, "qwen3": Qwen3ForCausalLM}[cfg.arch](hf)


def rebuild_rotary(llm: nn.Module, cfg: LLMConfig) -> None:
    """Real rotary tables for an LLM built on the meta device (non-persistent buffers are never
    in a checkpoint)."""
    inner = llm.model
    if cfg.arch == "minicpm":
        inner.rotary_emb = MiniCPMRotaryEmbedding(cfg)
    else:
        inner.rotary_emb = type(inner.rotary_emb)(config=hf_config(cfg))


# ---- MiniCPM4 -------------------------------------------------------------------------------------


class ScaledEmbedding(nn.Embedding):
    """MiniCPM multiplies token embeddings by scale_emb (vision embeddings are not scaled)."""

    def __init__(self, num, dim, scale: float, padding_idx=None):
        super().__init__(num, dim, padding_idx=padding_idx)
        self.scale = scale

    def forward(self, ids):
        return super().forward(ids) * self.scale


class ScaledInputLinear(nn.Linear):
    """MiniCPM's lm_head sees hidden / (hidden_size / dim_model_base) (muP output scaling)."""

    def __init__(self, in_features, out_features, divisor: float):
        super().__init__(in_features, out_features, bias=False)
        self.divisor = divisor

    def forward(self, x):
        return super().forward(x / self.divisor)


class MiniCPMRotaryEmbedding(nn.Module):
    """MiniCPM LongRoPE: inv_freq divided by per-dimension factors, cos/sin scaled.

    Unlike transformers' dynamic longrope, MiniCPM fixes the factor set once from
    max_position_embeddings (long factors iff it exceeds the original training length).
    """

    def __init__(self, cfg: LLMConfig):
        super().__init__()
        dim = cfg.resolved_head_dim
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        scaling = 1.0
        rs = cfg.rope_scaling or {}
        if rs.get("rope_type", rs.get("type")) == "longrope":
            original = rs["original_max_position_embeddings"]
            use_long = cfg.max_position_embeddings > original
            factors = torch.tensor(rs["long_factor"] if use_long else rs["short_factor"], dtype=torch.float32)
            inv_freq = inv_freq / factors
            scale = cfg.max_position_embeddings / original
            scaling = math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1 else 1.0
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.attention_scaling = scaling

    def forward(self, x, position_ids):
        freqs = position_ids[..., None].float() * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)


def _minicpm_layer_class():
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    class MiniCPMDecoderLayer(LlamaDecoderLayer):
        """Llama layer whose residual branches are scaled by scale_depth / sqrt(num_layers)."""

        def __init__(self, config, layer_idx, residual_scale: float):
            super().__init__(config, layer_idx)
            self.residual_scale = residual_scale

        def forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_values=None,
                    use_cache=False, position_embeddings=None, **kwargs):
            h, _ = self.self_attn(hidden_states=self.input_layernorm(hidden_states), attention_mask=attention_mask,
                                  position_ids=position_ids, past_key_values=past_key_values, use_cache=use_cache,
                                  position_embeddings=position_embeddings, **kwargs)
            hidden_states = hidden_states + h * self.residual_scale
            return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states)) * self.residual_scale

    return MiniCPMDecoderLayer


def MiniCPMForCausalLM(hf, cfg: LLMConfig) -> nn.Module:  # noqa: N802 - a factory named as the class it builds
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(hf)
    residual_scale = cfg.scale_depth / math.sqrt(cfg.num_hidden_layers)
    layer_cls = _minicpm_layer_class()
    model.model.layers = nn.ModuleList(layer_cls(hf, i, residual_scale) for i in range(cfg.num_hidden_layers))
    model.model.embed_tokens = ScaledEmbedding(cfg.vocab_size, cfg.hidden_size, cfg.scale_emb)
    model.model.rotary_emb = MiniCPMRotaryEmbedding(cfg)
    model.lm_head = ScaledInputLinear(cfg.hidden_size, cfg.vocab_size, cfg.hidden_size / cfg.dim_model_base)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model
