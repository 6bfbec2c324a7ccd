"""MiniCPM-V 4.5 video: frames, temporal ids and groups for the 3D resampler, and the prompt.

As the official 4.5 recipe (`encode_video` + `chat(..., use_image_id=False, max_slice_nums=1,
temporal_ids=groups)`): every frame is one unsliced view resized like a source slice; frames are
grouped consecutively (up to 6 per group); the resampler merges a group's frames into one set of
64 queries, so each GROUP gets one `<image>`unk*64`</image>` placeholder (the processor drops
the marks of a group's later frames together with the newline before them). Temporal ids are
frame timestamps in units of `TIME_SCALE` seconds.
"""

from __future__ import annotations

import numpy as np
import torch

from edgevlm.errors import PromptError
from edgevlm.preprocess.image_io import original_size
from edgevlm.preprocess.patches import image_slices, norm_stats
from edgevlm.preprocess.prompt import ProcessedInputs, image_placeholder, render_prompt, tokenize, user_content

TIME_SCALE = 0.1  # seconds per temporal id
MAX_FRAMES_PER_GROUP = 6  # frames the 4.5 resampler packs into one set of queries


def temporal_ids_from_timestamps(timestamps, scale: float = TIME_SCALE, duration: float | None = None) -> list[int]:
    """Frame times (seconds) -> temporal ids, as the official encode_video computes them.

    Each time snaps to the nearest point of np.arange(0, duration, scale) (ties to the earlier
    point), which is then divided by `scale` and truncated to int32. `duration` defaults to just
    past the last frame.
    """
    times = np.asarray(list(timestamps), dtype=np.float64)
    if times.size == 0:
        return []
    if not np.isfinite(times).all() or (times < 0).any():
        raise PromptError("video frame timestamps must be finite and non-negative seconds",
                          "pass each frame's time from the start of the video")
    grid = np.arange(0, float(times.max()) + scale if duration is None else duration, scale)
    if grid.size == 0:
        grid = np.zeros(1)
    upper = np.clip(np.searchsorted(grid, times), 0, grid.size - 1)
    lower = np.clip(upper - 1, 0, grid.size - 1)
    nearest = np.where(np.abs(times - grid[lower]) <= np.abs(grid[upper] - times), lower, upper)
    return (grid[nearest] / scale).astype(np.int32).tolist()


def group_frames(ids: list[int], group_size: int = MAX_FRAMES_PER_GROUP) -> list[list[int]]:
    """Consecutive groups of up to group_size ids (the official group_array)."""
    if group_size < 1:
        raise PromptError(f"frames per group is {group_size}", "use 1 to 6 frames per group")
    ids = [int(t) for t in ids]
    return [ids[i:i + group_size] for i in range(0, len(ids), group_size)]


def flatten_temporal_ids(groups: list[list[int]] | None) -> list[int] | None:
    """Groups -> one temporal id per slice, the list the resampler's positional inputs take."""
    return None if groups is None else [int(t) for group in groups for t in group]


def image_temporal_ids(num_slices: int) -> list[list[int]]:
    """4.5 still images: every slice is its own group with temporal id -1 (no temporal embedding)."""
    return [[-1] for _ in range(num_slices)]


def preprocess_video(frames, question: str, tokenizer, config, processor_config: dict | None = None, *,
                     timestamps=None, temporal_ids: list[list[int]] | None = None,
                     group_size: int = MAX_FRAMES_PER_GROUP, norm_mean=None, norm_std=None,
                     enable_thinking: bool = False) -> ProcessedInputs:
    """Video frames (RGB PIL) + their timestamps (or ready temporal id groups) -> 4.5 model inputs.

    pixel_values / tgt_sizes are per frame, in order; temporal_ids lists the groups; there is
    one image bound per group.
    """
    frames = list(frames)
    if not config.has_temporal_resampler:
        raise PromptError(f"temporal video grouping needs MiniCPM-V 4.5's 3D resampler; this is {config.version}",
                          "pass the frames as images to preprocess() instead")
    if not frames:
        raise PromptError("the video has no frames", "pass at least one frame")
    if temporal_ids is None:
        if timestamps is None:
            raise PromptError("video frames need their timestamps", "pass timestamps= (seconds) or temporal_ids=")
        temporal_ids = group_frames(temporal_ids_from_timestamps(timestamps), group_size)
    groups = [[int(t) for t in group] for group in temporal_ids]
    if any(not group for group in groups) or len(flatten_temporal_ids(groups)) != len(frames):
        raise PromptError(f"temporal ids name {len(flatten_temporal_ids(groups))} frames in {len(groups)} groups "
                          f"for {len(frames)} frames", "give one timestamp per frame, in order")
    mean, std = norm_stats(processor_config, norm_mean, norm_std)
    sc = config.slice_config
    pixel_values, sizes = [], []
    for frame in frames:  # max_slice_nums=1: one view per frame, never a grid
        rows, tgt, _ = image_slices(frame, 1, sc.scale_resolution, sc.patch_size, config.slice_mode, mean, std)
        pixel_values += rows
        sizes += tgt.tolist()
    firsts, start = set(), 0
    for group in groups:
        firsts.add(start)
        start += len(group)
    placeholders = [image_placeholder(config.query_num, None, i, False, config.slice_mode, tokenizer.unk_token)
                    if i in firsts else None for i in range(len(frames))]
    prompt = render_prompt(tokenizer, user_content(len(frames), question), placeholders, enable_thinking)
    ids, bounds = tokenize(tokenizer, prompt, config.query_num, len(groups))
    return ProcessedInputs(
        input_ids=ids, pixel_values=pixel_values, tgt_sizes=torch.tensor(sizes, dtype=torch.long).reshape(-1, 2),
        image_bounds=bounds, prompt=prompt, grids=[None] * len(frames), temporal_ids=groups,
        image_sizes=[original_size(frame) for frame in frames])
