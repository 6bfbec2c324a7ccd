"""Pixels -> what the NaViT SigLIP tower takes: normalised patch rows, position ids, padded batches.

A slice of h x w patches is stored as one row of patches, [3, patch, h*w*patch], patches in
raster order; a conv with kernel = stride = patch over that row equals the conv over the image.
The padded batch (`pad_slices`) is the static-shape contract exported vision encoders use.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from edgevlm.preprocess.slicing import SliceLayout, get_sliced_images

DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)


def norm_stats(processor_config: dict | None = None, mean=None, std=None) -> tuple[tuple, tuple]:
    """(mean, std): explicit values, else preprocessor_config.json `norm_mean`/`norm_std`, else 0.5."""
    processor_config = processor_config or {}
    mean = mean if mean is not None else processor_config.get("norm_mean", DEFAULT_MEAN)
    std = std if std is not None else processor_config.get("norm_std", DEFAULT_STD)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def normalize(image: Image.Image, mean=DEFAULT_MEAN, std=DEFAULT_STD) -> torch.Tensor:
    """RGB image -> [3, H, W] float32 (x / 255 - mean) / std.

    float32 throughout in the official order (uint8 -> float32, / 255, - mean, / std, with mean
    and std cast to float32 as transformers' `normalize` does), so values match bit for bit.
    """
    array = np.asarray(image.convert("RGB") if image.mode != "RGB" else image).astype(np.float32) / 255
    array = (array - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def reshape_by_patch(image: torch.Tensor, patch_size: int = 14) -> torch.Tensor:
    """Official reshape_by_patch: [3, H, W] -> [3, patch, N*patch], N = (H//patch) * (W//patch).

    unfold gives [3*p*p, N] (column k = patch k in raster order); reshaping to [3, p, p, N] and
    swapping the last two axes lays patch k at columns k*p..(k+1)*p-1. Rows/columns beyond a
    multiple of the patch size are dropped, as unfold does.
    """
    channels = image.shape[0]
    patches = torch.nn.functional.unfold(image, (patch_size, patch_size), stride=(patch_size, patch_size))
    patches = patches.reshape(channels, patch_size, patch_size, -1)
    return patches.permute(0, 1, 3, 2).reshape(channels, patch_size, -1)


def patches_to_image(row: torch.Tensor, tgt_size, patch_size: int = 14) -> torch.Tensor:
    """Inverse of reshape_by_patch: [3, patch, h*w*patch] and (h, w) -> [3, h*patch, w*patch]."""
    h, w = (int(v) for v in tgt_size)
    channels = row.shape[0]
    grid = row[:, :, : h * w * patch_size].reshape(channels, patch_size, h, w, patch_size)
    return grid.permute(0, 2, 1, 3, 4).reshape(channels, h * patch_size, w * patch_size)


def image_slices(image: Image.Image, max_slice_nums: int = 9, scale_resolution: int = 448, patch_size: int = 14,
                 slice_mode: bool = True, mean=DEFAULT_MEAN, std=DEFAULT_STD
                 ) -> tuple[list[torch.Tensor], torch.Tensor, SliceLayout]:
    """One image -> (per-slice patch rows [3, p, n*p] in placeholder order, tgt_sizes [S, 2] (h, w), plan)."""
    views, layout = get_sliced_images(image, max_slice_nums, scale_resolution, patch_size, slice_mode)
    rows, sizes = [], []
    for view in views:
        pixels = normalize(view, mean, std)
        rows.append(reshape_by_patch(pixels, patch_size))
        sizes.append((pixels.shape[1] // patch_size, pixels.shape[2] // patch_size))
    return rows, torch.tensor(sizes, dtype=torch.long).reshape(-1, 2), layout


def to_patch_row(image: Image.Image, mean=DEFAULT_MEAN, std=DEFAULT_STD, patch: int = 14):
    """One already-sized view -> ([3, p, n*p] patch row, (h, w) patches)."""
    pixels = normalize(image, mean, std)
    return reshape_by_patch(pixels, patch), (pixels.shape[1] // patch, pixels.shape[2] // patch)


def navit_position_ids(h: int, w: int, num_patches_per_side: int = 70) -> torch.Tensor:
    """Position-table ids [h*w] of an h x w patch grid, bit-exact with the official NaViT SigLIP.

    Fractional coordinates i/h are bucketed against boundaries k/n (n = num_patches_per_side).
    The official code divides by `tgt_sizes[b][0]`, an int32 *tensor*, so the arange step is
    the float32 1/h, not the float64 one a Python int gives; for n = 70 the two disagree at
    h or w in {25, 49, 50, 55, 58, ...}. We reproduce the tensor arithmetic.
    """
    n = num_patches_per_side
    boundaries = torch.arange(1 / n, 1.0, 1 / n)
    size = torch.tensor([h, w], dtype=torch.int32)
    coords_h = torch.arange(0, 1 - 1e-6, 1 / size[0])
    coords_w = torch.arange(0, 1 - 1e-6, 1 / size[1])
    bucket_h = torch.bucketize(coords_h, boundaries, right=True)
    bucket_w = torch.bucketize(coords_w, boundaries, right=True)
    return (bucket_h[:, None] * n + bucket_w).flatten()


class SliceBatch(NamedTuple):
    pixel_values: torch.Tensor  # [B, 3, patch, max_patches*patch] float32, zero padded
    patch_attention_mask: torch.Tensor  # [B, max_patches] bool, True on real patches
    position_ids: torch.Tensor  # [B, max_patches] long, 0 on padding
    tgt_sizes: torch.Tensor  # [B, 2] long (h, w) in patches


def pad_slices(pixel_values: list[torch.Tensor], tgt_sizes, num_patches_per_side: int = 70,
               max_patches: int | None = None) -> SliceBatch:
    """Per-slice patch rows -> one padded batch (the official get_vllm_embedding layout).

    `max_patches` fixes the padded length (the static shape an exported encoder is compiled
    for); by default the longest slice's patch count.
    """
    sizes = torch.as_tensor(tgt_sizes, dtype=torch.long).reshape(-1, 2)
    if len(pixel_values) != len(sizes):
        raise ValueError(f"{len(pixel_values)} slices but {len(sizes)} tgt_sizes")
    counts = [int(h) * int(w) for h, w in sizes.tolist()]
    longest = max(counts, default=0)
    max_patches = longest if max_patches is None else int(max_patches)
    if longest > max_patches:
        raise ValueError(f"a slice has {longest} patches, more than the padded length {max_patches}")
    patch = pixel_values[0].shape[1] if pixel_values else 14
    batch = torch.zeros(len(pixel_values), 3, patch, max_patches * patch, dtype=torch.float32)
    mask = torch.zeros(len(pixel_values), max_patches, dtype=torch.bool)
    position_ids = torch.zeros(len(pixel_values), max_patches, dtype=torch.long)
    for i, (row, count, (h, w)) in enumerate(zip(pixel_values, counts, sizes.tolist())):
        if row.shape[-1] != count * patch:
            raise ValueError(f"slice {i} holds {row.shape[-1] // patch} patches but its tgt_size is {h}x{w}")
        batch[i, :, :, : count * patch] = row
        mask[i, :count] = True
        position_ids[i, :count] = navit_position_ids(h, w, num_patches_per_side)
    return SliceBatch(batch, mask, position_ids, sizes)
