"""NaViT-style SigLIP vision tower (`vpm.*`), as MiniCPM-V 2.5-4.5 use it: the one the exporter
traces (export/vision.py runs `traced_copy` of the eager model's tower). The eager reference is
transformers' (model/navit_siglip.py), on the same parameters, so parity checks compare two codes.
Its classes keep their names and module path: the ONNX exporter records them in every node's metadata.

Each image slice keeps its own (h, w) patch grid. Slices are flattened to a row of patches and
padded to a common length; padded patches are masked out of attention, and each real patch gets
a position from the 70x70 table by bucketing its fractional (row, col) coordinate. The state-dict
names follow the official `modeling_navit_siglip.py` so official weights load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgevlm.config import VisionConfig


class SiglipVisionEmbeddings(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.embed_dim = config.hidden_size
        self.patch_size = config.patch_size
        self.patch_embedding = nn.Conv2d(config.num_channels, self.embed_dim, kernel_size=self.patch_size,
                                         stride=self.patch_size, padding="valid")
        self.num_patches_per_side = config.num_patches_per_side
        self.position_embedding = nn.Embedding(self.num_patches_per_side ** 2, self.embed_dim)

    def forward(self, pixel_values: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, 3, patch, L*patch] (patches laid side by side), position_ids [B, L]."""
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))
        embeddings = patches.flatten(2).transpose(1, 2)  # [B, L, D]
        return embeddings + self.position_embedding(position_ids)


class SiglipAttention(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        d = config.hidden_size
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.q_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None) -> torch.Tensor:
        b, n, d = x.shape

        def heads(t):
            return t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class SiglipMLP(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.approximate = "tanh" if config.hidden_act == "gelu_pytorch_tanh" else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class SiglipEncoderLayer(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.self_attn = SiglipAttention(config)
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = SiglipMLP(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), attn_bias)
        return x + self.mlp(self.layer_norm2(x))


class SiglipEncoder(nn.Module):
    def __init__(self, config: VisionConfig, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(SiglipEncoderLayer(config) for _ in range(num_layers))


class SiglipVisionTransformer(nn.Module):
    """`vpm`: embeddings -> encoder -> post_layernorm, over padded slices with a patch mask."""

    def __init__(self, config: VisionConfig, num_layers: int | None = None):
        super().__init__()
        self.config = config
        self.embeddings = SiglipVisionEmbeddings(config)
        self.encoder = SiglipEncoder(config, config.num_hidden_layers if num_layers is None else num_layers)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor, patch_attention_mask: torch.Tensor,
                position_ids: torch.Tensor, return_hidden_states: bool = False):
        """Returns [B, L, D] features (padded rows are garbage; the resampler masks them).

        patch_attention_mask [B, L] bool, True for real patches. With return_hidden_states, also
        the list of per-layer outputs (embeddings first), for per-layer error analysis.
        """
        x = self.embeddings(pixel_values, position_ids)
        # Additive key mask: padded keys get the dtype's lowest value, as the official model's
        # _prepare_4d_attention_mask does; None when nothing is padded.
        attn_bias = None
        if not bool(patch_attention_mask.all()):
            attn_bias = torch.zeros(patch_attention_mask.shape, dtype=x.dtype, device=x.device)
            attn_bias = attn_bias.masked_fill(~patch_attention_mask, torch.finfo(x.dtype).min)[:, None, None, :]
        hidden = [x]
        for layer in self.encoder.layers:
            x = layer(x, attn_bias)
            hidden.append(x)
        x = self.post_layernorm(x)
        return (x, hidden) if return_hidden_states else x


def traced_copy(vpm: nn.Module, config: VisionConfig) -> SiglipVisionTransformer:
    """This tower over `vpm`'s own parameters (shared, not copied)."""
    with torch.device("meta"):
        tower = SiglipVisionTransformer(config, num_layers=len(vpm.encoder.layers))
    tower.load_state_dict(vpm.state_dict(), strict=True, assign=True)
    return tower.train(vpm.training)
