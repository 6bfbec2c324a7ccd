"""The static-shape vision encoder: SigLIP + resampler with every shape fixed at export time.

An NPU compiles one graph once, so slices are padded to `max_patches` and everything that depends
on a slice's (h, w) grid is computed on the host and passed in:

  pixel_values   float32 [B, 3, patch, max_patches*patch]  patches of the slice, raster order, zero padded
  patch_mask     float32 [B, max_patches]                  1 for real patches, 0 for padding
  position_ids   int32   [B, max_patches]                  bucketed ids into the 70x70 position table
  resampler_pos  float32 [B, max_patches, D]               2D sincos of each patch (added to keys for
                                                           2.5-style resamplers, to values for 4.5)
output:
  vision_embeds  float32 [B, query_num, D]

Masks are floats (not bools) and ids int32 (not int64) because that is what NPU compilers
(Core ML / ANE, QNN HTP) take natively.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgevlm.errors import LimitExceeded
from edgevlm.model.minicpmv import pad_slices
from edgevlm.model.resampler import resampler_position_inputs
from edgevlm.model.siglip import SiglipVisionTransformer, traced_copy

INPUT_NAMES = ("pixel_values", "patch_mask", "position_ids", "resampler_pos")
OUTPUT_NAMES = ("vision_embeds",)
# Additive attention bias of padded patches. -1e4 zeroes a softmax weight and is safe in fp16.
# Quantized targets use a smaller magnitude: the bias shares the 8/16-bit range of the scores it is
# added to, and -1e4 would leave ~0.15 per step of a 16-bit range for the real scores.
MASK_NEG = -1e4
QUANTIZED_MASK_NEG = -100.0  # exp(-100) ~ 4e-44: still no weight on padding at any realistic score gap


class SlicesTooLarge(LimitExceeded, ValueError):
    """A slice has more patches than the encoder's static shape holds."""


class StaticVisionEncoder(nn.Module):
    def __init__(self, vpm: nn.Module, resampler: nn.Module, mask_value: float = MASK_NEG):
        super().__init__()
        # The hand-written tower torch.export traces, on the eager tower's parameters (model/siglip.py)
        self.vpm = vpm if isinstance(vpm, SiglipVisionTransformer) else traced_copy(vpm, vpm.vision_config)
        self.resampler = resampler
        self.mask_value = float(mask_value)

    def forward(self, pixel_values, patch_mask, position_ids, resampler_pos):
        x = self.vpm.embeddings(pixel_values, position_ids.long())
        key_bias = (1.0 - patch_mask) * self.mask_value  # 0 for real patches, mask_value for padding
        for layer in self.vpm.encoder.layers:
            x = layer(x, key_bias[:, None, None, :])
        x = self.vpm.post_layernorm(x)
        r = self.resampler
        kv = r.ln_kv(r.kv_proj(x))
        if r.temporal:  # 4.5: positions on the values (images: no temporal term on the keys)
            keys, values = kv, kv + resampler_pos
        else:
            keys, values = kv + resampler_pos, kv
        return r.attend(keys, values, key_bias)


@dataclass
class VisionInputs:
    """Host-side inputs for a batch of slices, plus how many rows of the batch are real."""

    arrays: dict[str, np.ndarray]
    num_slices: int


@dataclass(frozen=True)
class ResamplerSpec:
    """What the host needs of the resampler to build its positional input (no weights)."""

    embed_dim: int
    temporal: bool

    @classmethod
    def from_preprocessing(cls, pre: dict) -> ResamplerSpec:
        """From a manifest's `preprocessing` block (export/host.preprocessing_block)."""
        return cls(pre["resampler_pos"]["embed_dim"], pre["resampler_pos"]["added_to"] == "values")


def vision_inputs(pixel_values: list[torch.Tensor], tgt_sizes: torch.Tensor, max_patches: int,
                  resampler, num_patches_per_side: int, batch: int | None = None) -> VisionInputs:
    """Pad slices to the artifact's static shape; `batch` pads the slice count too (zero slices
    with one unmasked patch, so no softmax row is empty; their outputs are discarded).

    `resampler` is the model's Resampler or a ResamplerSpec (anything with embed_dim, temporal).
    """
    counts = [int(h) * int(w) for h, w in tgt_sizes.tolist()]
    if max(counts) > max_patches:
        worst = tgt_sizes[counts.index(max(counts))].tolist()
        raise SlicesTooLarge(
            f"a slice of {worst[0]}x{worst[1]} patches ({max(counts)}) exceeds the encoder's static "
            f"max_patches={max_patches}",
            "export with a max_patches of at least that many (the slicer makes slices of up to ~1092 patches at "
            "scale_resolution 448; only aspect ratios beyond about 1:32 make larger ones)")
    pv, mask, pos_ids = pad_slices(pixel_values, tgt_sizes, num_patches_per_side, max_patches=max_patches)
    sizes = [tuple(s) for s in tgt_sizes.tolist()]
    key_pos, value_pos, _ = resampler_position_inputs(sizes, max_patches, resampler.embed_dim, resampler.temporal)
    pos = value_pos if resampler.temporal else key_pos
    n = len(pixel_values)
    arrays = {"pixel_values": pv.float().numpy(), "patch_mask": mask.float().numpy(),
              "position_ids": pos_ids.to(torch.int32).numpy(), "resampler_pos": pos}
    if batch is not None and batch > n:
        extra = batch - n
        arrays = {k: np.concatenate([v, np.zeros((extra,) + v.shape[1:], v.dtype)]) for k, v in arrays.items()}
        arrays["patch_mask"][n:, 0] = 1.0
    return VisionInputs(arrays, n)
