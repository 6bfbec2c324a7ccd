"""Prompt assembly with image placeholders, tokenisation and image bounds."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from edgevlm.errors import PromptError
from edgevlm.preprocess.slicing import image_slices

IMAGE_MARK = "(<image>./</image>)"


@dataclass
class ProcessedInputs:
    input_ids: torch.Tensor  # [T]
    pixel_values: list[torch.Tensor]  # per slice [3, patch, n*patch], placeholder order
    tgt_sizes: torch.Tensor  # [S, 2] (h, w) patches
    image_bounds: torch.Tensor  # [M, 2] start inclusive, end exclusive
    prompt: str
    grids: list = field(default_factory=list)
    temporal_ids: list | None = None


def image_placeholder(query_num: int, grid, image_idx: int, use_image_id: bool, slice_mode: bool, unk: str) -> str:
    text = "<image>" + unk * query_num + "</image>"
    if use_image_id:
        text = f"<image_id>{image_idx}</image_id>" + text
    if slice_mode and grid is not None:
        cell = "<slice>" + unk * query_num + "</slice>"
        text += "\n".join(cell * grid[0] for _ in range(grid[1]))
    return text


def image_bounds(ids: torch.Tensor, tokenizer, query_num: int) -> torch.Tensor:
    starts = {tokenizer.token_id("<image>"), tokenizer.token_id("<slice>")}
    ends = {tokenizer.token_id("</image>"), tokenizer.token_id("</slice>")}
    start_pos = [i + 1 for i, t in enumerate(ids.tolist()) if t in starts]
    end_pos = [i for i, t in enumerate(ids.tolist()) if t in ends]
    if len(start_pos) != len(end_pos) or any(e - s != query_num for s, e in zip(start_pos, end_pos)):
        raise PromptError("image placeholders in the prompt are unbalanced or not query_num tokens long",
                          "do not write <image>/<slice> tokens in the question text")
    return torch.tensor(list(zip(start_pos, end_pos)), dtype=torch.long).reshape(-1, 2)


def preprocess(images, question: str, tokenizer, config, processor_config: dict | None = None) -> ProcessedInputs:
    """Images + question -> token ids, per-slice pixels, tgt sizes and image bounds (official format)."""
    processor_config = processor_config or {}
    mean = processor_config.get("norm_mean", (0.5, 0.5, 0.5))
    std = processor_config.get("norm_std", (0.5, 0.5, 0.5))
    sc = config.slice_config
    use_id = config.use_image_id and config.version != "2.5"
    pixel_values, sizes, grids, marks = [], [], [], []
    for idx, image in enumerate(images):
        rows, tgt, layout = image_slices(image, sc.max_slice_nums, sc.scale_resolution, sc.patch_size,
                                         config.slice_mode, mean, std)
        pixel_values += rows
        sizes.append(tgt)
        grids.append(layout.grid)
        marks.append(image_placeholder(config.query_num, layout.grid, idx, use_id, config.slice_mode,
                                       tokenizer.unk_token))
    content = "\n".join([IMAGE_MARK] * len(images) + [question])
    for mark in marks:
        content = content.replace(IMAGE_MARK, mark, 1)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                           enable_thinking=False)
    ids = torch.tensor(tokenizer.encode(prompt), dtype=torch.long)
    bounds = image_bounds(ids, tokenizer, config.query_num)
    tgt_sizes = torch.cat(sizes) if sizes else torch.zeros(0, 2, dtype=torch.long)
    if len(bounds) != len(pixel_values):
        raise PromptError(f"{len(bounds)} placeholders for {len(pixel_values)} slices", "report this as a bug")
    return ProcessedInputs(ids, pixel_values, tgt_sizes, bounds, prompt, grids)
