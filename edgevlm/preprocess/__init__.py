"""Preprocessing, as the official MiniCPM-V (2.5 / 2.6 / 4.0 / 4.5) processor does it.

load_image (any file -> upright RGB, bounded memory) -> LLaVA-UHD slicing (slicing.py) ->
normalised patch rows, NaViT position ids, padded batches (patches.py) -> chat prompt with image
placeholders, token ids and image bounds (prompt.py); 4.5 video frames and temporal ids (video.py).
"""

from edgevlm.preprocess.image_io import MAX_PIXELS, load_image, original_size
from edgevlm.preprocess.patches import (SliceBatch, image_slices, navit_position_ids, norm_stats, normalize,
                                        pad_slices, patches_to_image, reshape_by_patch, to_patch_row)
from edgevlm.preprocess.prompt import (IMAGE_MARK, ProcessedInputs, grid_placeholder, image_bounds,
                                       image_placeholder, preprocess, render_prompt, user_content)
from edgevlm.preprocess.slicing import (SliceLayout, apply_layout, ensure_divide, find_best_resize, get_refine_size,
                                        get_sliced_grid, get_sliced_images, slice_image, slice_layout)
from edgevlm.preprocess.video import (MAX_FRAMES_PER_GROUP, TIME_SCALE, flatten_temporal_ids, group_frames,
                                      image_temporal_ids, preprocess_video, temporal_ids_from_timestamps)

__all__ = [
    "MAX_PIXELS", "load_image", "original_size",
    "SliceLayout", "apply_layout", "ensure_divide", "find_best_resize", "get_refine_size", "get_sliced_grid",
    "get_sliced_images", "slice_image", "slice_layout",
    "SliceBatch", "image_slices", "navit_position_ids", "norm_stats", "normalize", "pad_slices", "patches_to_image",
    "reshape_by_patch", "to_patch_row",
    "IMAGE_MARK", "ProcessedInputs", "grid_placeholder", "image_bounds", "image_placeholder", "preprocess",
    "render_prompt", "user_content",
    "MAX_FRAMES_PER_GROUP", "TIME_SCALE", "flatten_temporal_ids", "group_frames", "image_temporal_ids",
    "preprocess_video", "temporal_ids_from_timestamps",
]
