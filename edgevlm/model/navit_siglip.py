"""The eager NaViT SigLIP (`vpm.*`): transformers' Idefics2 vision tower, the NaViT SigLIP that
MiniCPM-V's official `modeling_navit_siglip.py` derives from, with the same state-dict keys.

The exporter traces its own SigLIP (model/siglip.py) on these same parameters, so export parity
checks compare two implementations. Only the positions are MiniCPM-V's (`preprocess.navit_position_ids`,
the official float32 arithmetic):
Idefics2 buckets `i * (1/h)` where the official code buckets `arange(0, 1, 1/h)`, which differ
for grid sides 25, 49, 50, 55, ... (each slice's positions would move by one bucket).
"""

from __future__ import annotations

import torch
from transformers.models.idefics2.configuration_idefics2 import Idefics2VisionConfig
from transformers.models.idefics2.modeling_idefics2 import Idefics2VisionTransformer

from edgevlm.config import VisionConfig


def _idefics2_config(config: VisionConfig, num_layers: int | None) -> Idefics2VisionConfig:
    hf = Idefics2VisionConfig(
        hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers if num_layers is None else num_layers,
        num_attention_heads=config.num_attention_heads, num_channels=config.num_channels,
        image_size=config.image_size, patch_size=config.patch_size, hidden_act=config.hidden_act,
        layer_norm_eps=config.layer_norm_eps)
    hf._attn_implementation = "sdpa"
    return hf


class NavitSiglip(Idefics2VisionTransformer):
    """`vpm`: embeddings -> encoder -> post_layernorm over padded slices (patches side by side)."""

    def __init__(self, config: VisionConfig, num_layers: int | None = None):
        super().__init__(_idefics2_config(config, num_layers))
        self.vision_config = config

    def forward(self, pixel_values: torch.Tensor, patch_attention_mask: torch.Tensor,
                position_ids: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, 3, patch, L*patch], patch_attention_mask [B, L] bool (True: real patch),
        position_ids [B, L] -> [B, L, D] features (padded rows are garbage; the resampler masks them)."""
        emb = self.embeddings
        patches = emb.patch_embedding(pixel_values.to(emb.patch_embedding.weight.dtype))
        x = patches.flatten(2).transpose(1, 2) + emb.position_embedding(position_ids)
        mask = None
        if not bool(patch_attention_mask.all()):  # padded keys: the dtype's lowest value, as the official model
            mask = torch.zeros(patch_attention_mask.shape, dtype=x.dtype, device=x.device)
            mask = mask.masked_fill(~patch_attention_mask, torch.finfo(x.dtype).min)[:, None, None, :]
        return self.post_layernorm(self.encoder(inputs_embeds=x, attention_mask=mask).last_hidden_state)
