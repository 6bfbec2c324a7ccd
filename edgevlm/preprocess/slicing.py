"""LLaVA-UHD slicing exactly as the official MiniCPM-V image processor does it, and the
patchification into rows of patches the NaViT vision tower takes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


def ensure_divide(length: float, patch: int) -> int:
    return max(round(length / patch) * patch, patch)


def find_best_resize(size, scale_resolution: int, patch: int, allow_upscale: bool = False) -> tuple[int, int]:
    width, height = size
    if width * height > scale_resolution * scale_resolution or allow_upscale:
        ratio = width / height
        height = int(scale_resolution / math.sqrt(ratio))
        width = int(height * ratio)
    return ensure_divide(width, patch), ensure_divide(height, patch)


def get_refine_size(size, grid, scale_resolution: int, patch: int, allow_upscale: bool = False) -> tuple[int, int]:
    width, height = size
    cols, rows = grid
    refine_w, refine_h = ensure_divide(width, cols), ensure_divide(height, rows)
    best_w, best_h = find_best_resize((refine_w / cols, refine_h / rows), scale_resolution, patch, allow_upscale)
    return best_w * cols, best_h * rows


def get_sliced_grid(size, max_slice_nums: int, scale_resolution: int, never_split: bool = False):
    """(cols, rows) of the refined grid, or None when the image is not sliced."""
    width, height = size
    log_ratio = math.log(width / height)
    multiple = min(math.ceil(width * height / (scale_resolution * scale_resolution)), max_slice_nums)
    if multiple <= 1 or never_split:
        return None
    best, best_error = None, float("inf")
    for n in (multiple - 1, multiple, multiple + 1):
        if n == 1 or n > max_slice_nums:
            continue
        for cols in range(1, n + 1):
            if n % cols == 0:
                error = abs(log_ratio - math.log(cols / (n // cols)))
                if error < best_error:  # strict: ties keep the first candidate, as the official code
                    best, best_error = (cols, n // cols), error
    return best


@dataclass(frozen=True)
class SliceLayout:
    source_size: tuple[int, int]
    grid: tuple[int, int] | None
    refine_size: tuple[int, int] | None

    @property
    def slice_size(self):
        return None if self.grid is None else (self.refine_size[0] // self.grid[0], self.refine_size[1] // self.grid[1])


def slice_layout(size, max_slice_nums: int = 9, scale_resolution: int = 448, patch: int = 14,
                 never_split: bool = False) -> SliceLayout:
    grid = get_sliced_grid(size, max_slice_nums, scale_resolution, never_split)
    if grid is None:
        return SliceLayout(find_best_resize(size, scale_resolution, patch, allow_upscale=True), None, None)
    return SliceLayout(find_best_resize(size, scale_resolution, patch), grid,
                       get_refine_size(size, grid, scale_resolution, patch, allow_upscale=True))


def slice_image(image: Image.Image, layout: SliceLayout) -> list[Image.Image]:
    """Source image first, then grid cells row by row, left to right (the placeholder order)."""
    out = [image.resize(layout.source_size, resample=Image.Resampling.BICUBIC)]
    if layout.grid is not None:
        refined = image.resize(layout.refine_size, resample=Image.Resampling.BICUBIC)
        cell_w, cell_h = layout.slice_size
        for top in range(0, layout.refine_size[1], cell_h):
            for left in range(0, layout.refine_size[0], cell_w):
                out.append(refined.crop((left, top, left + cell_w, top + cell_h)))
    return out


def to_patch_row(image: Image.Image, mean, std, patch: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Normalised [3, patch, n*patch] row of patches (raster order) and the (h, w) patch grid."""
    array = (np.asarray(image, dtype=np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    chw = torch.from_numpy(array.transpose(2, 0, 1).copy())
    patches = torch.nn.functional.unfold(chw, (patch, patch), stride=(patch, patch))  # [3*p*p, N]
    patches = patches.reshape(3, patch, patch, -1).permute(0, 1, 3, 2).reshape(3, patch, -1)
    return patches, (chw.shape[1] // patch, chw.shape[2] // patch)


def image_slices(image: Image.Image, max_slice_nums: int = 9, scale_resolution: int = 448, patch_size: int = 14,
                 slice_mode: bool = True, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
    """One image -> (per-slice patch rows, tgt_sizes [S, 2], layout)."""
    layout = slice_layout(image.size, max_slice_nums, scale_resolution, patch_size, never_split=not slice_mode)
    rows, sizes = [], []
    for piece in slice_image(image, layout):
        row, hw = to_patch_row(piece, mean, std, patch_size)
        rows.append(row)
        sizes.append(hw)
    return rows, torch.tensor(sizes, dtype=torch.long), layout
