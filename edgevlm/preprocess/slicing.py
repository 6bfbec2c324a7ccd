"""LLaVA-UHD slicing, exactly as the official MiniCPM-V image processor (2.5 / 2.6 / 4.0 / 4.5).

An image becomes a downscaled "source" view plus, when it is large enough, a grid of slices cut
from an upscaled "refine" view; every side is a multiple of the patch size. The size arithmetic
is plain Python (usable without pixels, e.g. to plan static export shapes) and keeps the official
code's quirks: Python's round() (half to even), int() truncation, first-minimum tie-breaking.

Sizes are (width, height) and grids (cols, rows), as in the official processor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from edgevlm.preprocess.image_io import original_size

Size = tuple[int, int]


def ensure_divide(length: float, patch_size: int) -> int:
    """Nearest multiple of patch_size (round half to even), at least patch_size."""
    return max(round(length / patch_size) * patch_size, patch_size)


def find_best_resize(size, scale_resolution: int, patch_size: int, allow_upscale: bool = False) -> Size:
    """Keep the aspect ratio, bring the area to ~scale_resolution^2 (down only, unless allowed)."""
    width, height = size
    if width * height > scale_resolution * scale_resolution or allow_upscale:
        ratio = width / height
        height = int(scale_resolution / math.sqrt(ratio))
        width = int(height * ratio)  # int() may give 0 for extreme ratios; ensure_divide clamps
    return ensure_divide(width, patch_size), ensure_divide(height, patch_size)


def get_refine_size(size, grid: Size, scale_resolution: int, patch_size: int, allow_upscale: bool = False) -> Size:
    """Size of the view the grid is cut from: grid cells are each best-resized."""
    width, height = size
    cols, rows = grid
    refine_w, refine_h = ensure_divide(width, cols), ensure_divide(height, rows)
    cell_w, cell_h = find_best_resize((refine_w / cols, refine_h / rows), scale_resolution, patch_size, allow_upscale)
    return cell_w * cols, cell_h * rows


def get_sliced_grid(size, max_slice_nums: int, scale_resolution: int, never_split: bool = False) -> Size | None:
    """(cols, rows) whose aspect ratio is closest (in log) to the image's, or None: no slicing.

    The slice count is ceil(area / scale_resolution^2) capped at max_slice_nums; grids of that
    count and its two neighbours compete. Ties keep the first candidate (strict <), which is
    the one with fewer columns of the smallest count.
    """
    width, height = size
    log_ratio = math.log(width / height)
    multiple = min(math.ceil(width * height / (scale_resolution * scale_resolution)), max_slice_nums)
    if multiple <= 1 or never_split:
        return None
    best, best_error = None, float("inf")
    for count in (multiple - 1, multiple, multiple + 1):
        if count == 1 or count > max_slice_nums:
            continue
        for cols in range(1, count + 1):
            if count % cols == 0:
                error = abs(log_ratio - math.log(cols / (count // cols)))
                if error < best_error:
                    best, best_error = (cols, count // cols), error
    return best


@dataclass(frozen=True)
class SliceLayout:
    """Where an image's slices come from; a pure function of its size and the slice config.

    `source_size`: the source view (width, height). `grid`: (cols, rows) or None. `refine_size`:
    the view the grid is cut from. `slice_size`: one grid cell. `resize_source`: False only for
    slice_mode=False, where the official processor feeds the image unresized.
    """

    image_size: Size
    source_size: Size
    grid: Size | None = None
    refine_size: Size | None = None
    resize_source: bool = True

    @property
    def slice_size(self) -> Size | None:
        if self.grid is None:
            return None
        return self.refine_size[0] // self.grid[0], self.refine_size[1] // self.grid[1]

    @property
    def num_slices(self) -> int:
        """Source view plus grid cells: the number of vision-tower inputs (and placeholders)."""
        return 1 + (self.grid[0] * self.grid[1] if self.grid else 0)

    def patch_grids(self, patch_size: int = 14) -> list[Size]:
        """(h, w) in patches of every slice, in slice order: the official `tgt_sizes`."""
        src_w, src_h = self.source_size
        cells = [] if self.grid is None else [self.slice_size] * (self.grid[0] * self.grid[1])
        return [(src_h // patch_size, src_w // patch_size)] + [(h // patch_size, w // patch_size) for w, h in cells]


def slice_layout(size, max_slice_nums: int = 9, scale_resolution: int = 448, patch_size: int = 14,
                 never_split: bool = False, slice_mode: bool = True) -> SliceLayout:
    """The official slice plan for an image of `size` (width, height)."""
    size = (int(size[0]), int(size[1]))
    if not slice_mode:  # official get_sliced_images: `if not self.slice_mode: return [image]`
        return SliceLayout(size, size, resize_source=False)
    grid = get_sliced_grid(size, max_slice_nums, scale_resolution, never_split)
    if grid is None:  # one view, up- or downscaled to ~scale_resolution^2
        return SliceLayout(size, find_best_resize(size, scale_resolution, patch_size, allow_upscale=True))
    return SliceLayout(size, find_best_resize(size, scale_resolution, patch_size), grid,
                       get_refine_size(size, grid, scale_resolution, patch_size, allow_upscale=True))


def apply_layout(image: Image.Image, layout: SliceLayout) -> tuple[Image.Image, list[list[Image.Image]]]:
    """(source view, grid rows top to bottom, each row's cells left to right)."""
    if not layout.resize_source:
        return image, []
    source = image.resize(layout.source_size, resample=Image.Resampling.BICUBIC)
    if layout.grid is None:
        return source, []
    refine = image.resize(layout.refine_size, resample=Image.Resampling.BICUBIC)
    cell_w, cell_h = layout.slice_size
    rows = [[refine.crop((left, top, left + cell_w, top + cell_h)) for left in range(0, refine.width, cell_w)]
            for top in range(0, refine.height, cell_h)]
    return source, rows


def slice_image(image: Image.Image, max_slice_nums: int = 9, scale_resolution: int = 448, patch_size: int = 14,
                never_split: bool = False):
    """Official `slice_image`: (source view, grid rows of slices, grid or None)."""
    layout = slice_layout(original_size(image), max_slice_nums, scale_resolution, patch_size, never_split)
    source, rows = apply_layout(image, layout)
    return source, rows, layout.grid


def get_sliced_images(image: Image.Image, max_slice_nums: int = 9, scale_resolution: int = 448,
                      patch_size: int = 14, slice_mode: bool = True) -> tuple[list[Image.Image], SliceLayout]:
    """Official `get_sliced_images`: [source, *cells row by row] (the placeholder order), and the plan.

    The plan is made from `original_size(image)`, so an image that load_image reduced gets the
    grid and sizes of the full-resolution file.
    """
    layout = slice_layout(original_size(image), max_slice_nums, scale_resolution, patch_size, slice_mode=slice_mode)
    source, rows = apply_layout(image, layout)
    return [source] + [cell for row in rows for cell in row], layout
