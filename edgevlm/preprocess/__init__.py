"""Preprocessing: image loading, LLaVA-UHD slicing, patch rows, prompt assembly and image bounds."""

from edgevlm.preprocess.image_io import load_image
from edgevlm.preprocess.prompt import ProcessedInputs, image_placeholder, preprocess
from edgevlm.preprocess.slicing import get_sliced_grid, image_slices, slice_image, slice_layout, to_patch_row

__all__ = ["load_image", "ProcessedInputs", "image_placeholder", "preprocess", "get_sliced_grid", "image_slices",
           "slice_image", "slice_layout", "to_patch_row"]
