"""MiniCPM-V: `vpm` (SigLIP NaViT) -> `resampler` (64 queries per slice) -> `llm` (decoder).

This eager fp32 model is the oracle every exported artifact is checked against. Its state-dict
keys equal the official checkpoints' (`vpm.*`, `resampler.*`, `llm.model.*`, `llm.lm_head.*`).
"""

from __future__ import annotations

import torch
from torch import nn

from edgevlm.config import MiniCPMVConfig
from edgevlm.model.llm import build_llm
from edgevlm.model.resampler import Resampler
from edgevlm.preprocess.patches import pad_slices as preprocess_pad_slices


def pad_slices(pixel_values: list[torch.Tensor], tgt_sizes: torch.Tensor, num_patches_per_side: int,
               max_patches: int | None = None):
    """(batch, patch mask, position ids) of edgevlm.preprocess.pad_slices, the batch in the slices'
    dtype: one padding and one position arithmetic (the official float32 bucketing) for the eager
    model, the exported encoders' host inputs and the native runtime."""
    padded = preprocess_pad_slices(pixel_values, tgt_sizes, num_patches_per_side, max_patches=max_patches)
    return padded.pixel_values.to(pixel_values[0].dtype), padded.patch_attention_mask, padded.position_ids


class MiniCPMV(nn.Module):
    def __init__(self, config: MiniCPMVConfig):
        super().__init__()
        self.config = config
        from edgevlm.model.navit_siglip import NavitSiglip  # imports transformers: only when a model is built

        self.vpm = NavitSiglip(config.vision_config, num_layers=config.num_vision_layers_used)
        self.resampler = Resampler(
            num_queries=config.query_num, embed_dim=config.llm.hidden_size, num_heads=config.resampler_heads,
            kv_dim=config.vision_config.hidden_size, temporal=config.has_temporal_resampler,
        )
        self.llm = build_llm(config.llm)

    # ---- vision ---------------------------------------------------------------------------------

    def vision_features(self, pixel_values: list[torch.Tensor], tgt_sizes: torch.Tensor) -> torch.Tensor:
        """Per-slice SigLIP features [B, L, vision_width], padded to the longest slice."""
        batch, mask, position_ids = pad_slices(pixel_values, tgt_sizes, self.config.vision_config.num_patches_per_side)
        dtype = self.vpm.embeddings.patch_embedding.weight.dtype
        return self.vpm(batch.to(dtype), mask, position_ids)

    def encode_images(self, pixel_values: list[torch.Tensor], tgt_sizes: torch.Tensor,
                      temporal_ids: list[list[int]] | None = None) -> torch.Tensor:
        """Slices -> [G, query_num, llm_width] vision embeddings (G = slices, or video groups)."""
        if not pixel_values:
            return torch.zeros(0, self.config.query_num, self.config.llm.hidden_size)
        features = self.vision_features(pixel_values, tgt_sizes)
        return self.resampler(features, tgt_sizes, temporal_ids)

    # ---- language -------------------------------------------------------------------------------

    def embed_inputs(self, input_ids: torch.Tensor, vision_embeds: torch.Tensor,
                     image_bounds: torch.Tensor) -> torch.Tensor:
        """Token embeddings with each image bound's rows replaced by one group of vision embeddings."""
        return place_vision(self.llm.get_input_embeddings()(input_ids), vision_embeds, image_bounds)


def place_vision(embeds: torch.Tensor, vision_embeds: torch.Tensor, image_bounds: torch.Tensor) -> torch.Tensor:
    """A copy of token embeddings [T, D] with each image bound's rows replaced by one group of
    vision embeddings [G, Q, D]."""
    if len(image_bounds) != len(vision_embeds):
        raise ValueError(f"prompt has {len(image_bounds)} image placeholders but {len(vision_embeds)} "
                         "vision embedding groups were computed")
    embeds = embeds.clone()
    for (start, end), group in zip(image_bounds.tolist(), vision_embeds):
        embeds[start:end] = group.to(embeds.dtype)
    return embeds
