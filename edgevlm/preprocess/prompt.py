"""Prompt assembly as the official MiniCPM-V chat() + processor do it, and image bounds.

chat() writes the user turn as "\\n".join(["(<image>./</image>)"] * n_images + [question]) and
renders the chat template; the processor then replaces each "(<image>./</image>)" with that
image's placeholder: `<image_id>i</image_id>` (2.6+, when use_image_id) + `<image>` + unk *
query_num + `</image>`, then (slice mode, sliced images) the grid's rows of `<slice>` + unk *
query_num + `</slice>` joined by "\\n". Each unk run is later overwritten by one group of
vision embeddings; the runs appear in slice order (source, then rows top to bottom, left to
right), which is the order of `pixel_values`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from edgevlm.errors import PromptError
from edgevlm.preprocess.image_io import original_size
from edgevlm.preprocess.patches import image_slices, norm_stats

IMAGE_MARK = "(<image>./</image>)"
_STARTS, _ENDS = ("<image>", "<slice>"), ("</image>", "</slice>")


@dataclass
class ProcessedInputs:
    input_ids: torch.Tensor  # [T] long
    pixel_values: list[torch.Tensor]  # per slice [3, patch, n*patch], placeholder order
    tgt_sizes: torch.Tensor  # [S, 2] long, (h, w) in patches
    image_bounds: torch.Tensor  # [M, 2] long, start inclusive, end exclusive; M = S, or video groups
    prompt: str
    grids: list = field(default_factory=list)  # per image (cols, rows) or None
    temporal_ids: list[list[int]] | None = None  # 4.5: per slice [-1], or per video group frame ids
    image_sizes: list[tuple[int, int]] = field(default_factory=list)  # per image (width, height)


def grid_placeholder(grid, query_num: int, unk: str = "<unk>") -> str:
    """Rows of `<slice>`unk*Q`</slice>` cells, joined by newlines; "" without a grid."""
    if grid is None:
        return ""
    cell = "<slice>" + unk * query_num + "</slice>"
    cols, rows = grid
    return "\n".join(cell * cols for _ in range(rows))


def image_placeholder(query_num: int, grid=None, image_idx: int = 0, use_image_id: bool = False,
                      slice_mode: bool = True, unk: str = "<unk>") -> str:
    """The official get_slice_image_placeholder for one image."""
    text = "<image>" + unk * query_num + "</image>"
    if use_image_id:
        text = f"<image_id>{image_idx}</image_id>" + text
    return text + grid_placeholder(grid, query_num, unk) if slice_mode else text


def user_content(num_images: int, question: str) -> str:
    """chat()'s user turn: one mark per image, each on its own line, then the question."""
    return "\n".join([IMAGE_MARK] * num_images + [question])


def render_prompt(tokenizer, content: str, placeholders: list[str | None], enable_thinking: bool = False) -> str:
    """Chat template over `content`, then each mark replaced by its placeholder (processor order).

    A None placeholder drops its mark and strips the text before it, as the official processor
    does for the non-first frames of a 4.5 video group.
    """
    if content.count(IMAGE_MARK) != len(placeholders):
        raise PromptError(f"the user turn holds {content.count(IMAGE_MARK)} image marks {IMAGE_MARK!r} "
                          f"for {len(placeholders)} images", f"do not write {IMAGE_MARK} in the question")
    text = tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                         enable_thinking=enable_thinking)
    chunks = text.split(IMAGE_MARK)
    if len(chunks) - 1 != len(placeholders):
        raise PromptError(f"the rendered chat template holds {len(chunks) - 1} image marks for {len(placeholders)} "
                          "images", "use the tokenizer_config.json chat template that came with the checkpoint")
    out = []
    for chunk, placeholder in zip(chunks, placeholders):
        out.append(chunk.strip() if placeholder is None else chunk + placeholder)
    return "".join(out) + chunks[-1]


CONTENT_PROBE = "EDGEVLM_USER_CONTENT"


def uses_image_id(config, override: bool | None = None) -> bool:
    """Whether placeholders start with `<image_id>i</image_id>`: 2.6+ per config (2.5 never)."""
    return (config.use_image_id if override is None else bool(override)) and config.version != "2.5"


def assembly_block(tokenizer, config, enable_thinking: bool = False) -> dict | None:
    """What a runtime without Jinja needs to build `preprocess`'s prompt (the manifest's
    prompt.assembly): the rendered chat template around the user turn, whether the template trims
    that turn, and the placeholder rules. None when the template does more to the user turn than
    place it (or trim it): such a prompt can only be rendered by the template itself.
    """
    def render(content: str) -> str:
        return tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                             enable_thinking=enable_thinking)

    text = render(CONTENT_PROBE)
    if text.count(CONTENT_PROBE) != 1:
        return None
    prefix, suffix = text.split(CONTENT_PROBE)
    padded = " \n" + CONTENT_PROBE + "\n "
    rendered = render(padded)
    if rendered == prefix + padded + suffix:
        content = "verbatim"
    elif rendered == text:
        content = "trimmed"  # Jinja's `| trim`: Python's str.strip()
    else:
        return None
    marks = user_content(2, CONTENT_PROBE)
    if render(marks) != prefix + marks + suffix:
        return None
    return {"prefix": prefix, "suffix": suffix, "content": content, "line_separator": "\n",
            "image_id": uses_image_id(config), "slice_mode": bool(config.slice_mode),
            "unk_token": tokenizer.unk_token}


def image_bounds(input_ids: torch.Tensor, tokenizer, query_num: int) -> torch.Tensor:
    """[M, 2] (start, end) of each unk run: after every `<image>`/`<slice>`, up to its closing tag.

    `<image_id>` tokens are not bounds. Every bound must span exactly query_num unk tokens.
    """
    ids = input_ids.tolist()
    starts_ids = {tokenizer.token_id(t) for t in _STARTS}
    ends_ids = {tokenizer.token_id(t) for t in _ENDS}
    unk = tokenizer.token_id(tokenizer.unk_token)
    starts = [i + 1 for i, t in enumerate(ids) if t in starts_ids]
    ends = [i for i, t in enumerate(ids) if t in ends_ids]
    fix = "do not write <image>, </image>, <slice> or </slice> in the question"
    if len(starts) != len(ends):
        raise PromptError(f"the prompt has {len(starts)} image/slice openings but {len(ends)} closings", fix)
    for k, (start, end) in enumerate(zip(starts, ends)):
        following = starts[k + 1] if k + 1 < len(starts) else len(ids) + 1
        if end - start != query_num or not start <= end < following or any(t != unk for t in ids[start:end]):
            raise PromptError(f"image placeholder {k} spans tokens {start}..{end}, not {query_num} unk tokens", fix)
    return torch.tensor(list(zip(starts, ends)), dtype=torch.long).reshape(-1, 2)


def tokenize(tokenizer, prompt: str, query_num: int, expected_bounds: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt text -> (input_ids [T], image_bounds [M, 2]), checking M against the vision inputs."""
    ids = torch.tensor(tokenizer.encode(prompt), dtype=torch.long)
    bounds = image_bounds(ids, tokenizer, query_num)
    if len(bounds) != expected_bounds:
        raise PromptError(f"the prompt has {len(bounds)} image placeholders for {expected_bounds} vision outputs",
                          "do not write <image>, <slice> or <unk> tokens in the question")
    return ids, bounds


def preprocess(images, question: str, tokenizer, config, processor_config: dict | None = None, *,
               norm_mean=None, norm_std=None, max_slice_nums: int | None = None, use_image_id: bool | None = None,
               enable_thinking: bool = False) -> ProcessedInputs:
    """Images (RGB PIL, e.g. from load_image) + question -> model inputs, as official chat() builds them.

    No images gives the text-only path. 2.5 never uses image ids; later versions follow
    config.use_image_id unless `use_image_id` is given. 4.5 marks every image slice with
    temporal id -1.
    """
    images = list(images or [])
    mean, std = norm_stats(processor_config, norm_mean, norm_std)
    sc = config.slice_config
    max_slices = sc.max_slice_nums if max_slice_nums is None else int(max_slice_nums)
    with_ids = uses_image_id(config, use_image_id)
    pixel_values, sizes, grids, placeholders = [], [], [], []
    for idx, image in enumerate(images):
        rows, tgt, layout = image_slices(image, max_slices, sc.scale_resolution, sc.patch_size,
                                         config.slice_mode, mean, std)
        pixel_values += rows
        sizes.append(tgt)
        grids.append(layout.grid)
        placeholders.append(image_placeholder(config.query_num, layout.grid, idx, with_ids, config.slice_mode,
                                              tokenizer.unk_token))
    prompt = render_prompt(tokenizer, user_content(len(images), question), placeholders, enable_thinking)
    ids, bounds = tokenize(tokenizer, prompt, config.query_num, len(pixel_values))
    temporal = [[-1] for _ in pixel_values] if config.has_temporal_resampler and pixel_values else None
    return ProcessedInputs(
        input_ids=ids, pixel_values=pixel_values,
        tgt_sizes=torch.cat(sizes) if sizes else torch.zeros(0, 2, dtype=torch.long),
        image_bounds=bounds, prompt=prompt, grids=grids, temporal_ids=temporal,
        image_sizes=[original_size(image) for image in images])
