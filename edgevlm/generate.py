"""Eager reference generation: image(s) + prompt -> text, greedy, with every intermediate kept.

This is the oracle later issues check exported artifacts against: per-slice vision features,
resampler outputs, the merged input embeddings and the logits of every step are returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from edgevlm.checkpoint.loader import LoadedModel
from edgevlm.errors import PromptError


@dataclass
class GenerationTrace:
    input_ids: torch.Tensor  # [T] prompt ids
    vision_features: torch.Tensor | None  # [slices, max_patches, vision_width] (padded rows masked)
    vision_embeds: torch.Tensor  # [groups, query_num, llm_width]
    inputs_embeds: torch.Tensor  # [T, llm_width]
    step_logits: list[torch.Tensor] = field(default_factory=list)  # last-position logits, prefill first
    tokens: list[int] = field(default_factory=list)  # generated ids (stop token included if hit)
    text: str = ""
    stopped_by: str = ""  # "stop_token" | "max_new_tokens" | "max_position"


@torch.inference_mode()
def generate(loaded: LoadedModel, inputs, max_new_tokens: int = 32,
             on_token: Callable[[str], None] | None = None) -> GenerationTrace:
    """Greedy decode. `inputs` is a preprocess.ProcessedInputs; `on_token` streams text pieces."""
    model, tok, cfg = loaded.model, loaded.tokenizer, loaded.config
    limit = cfg.llm.max_position_embeddings
    if len(inputs.input_ids) >= limit:
        raise PromptError(f"the prompt is {len(inputs.input_ids)} tokens, the model's context is {limit}",
                          "use fewer or smaller images (max_slice_nums) or a shorter question")
    features = None
    vision_embeds = torch.zeros(0, cfg.query_num, cfg.llm.hidden_size)
    if inputs.pixel_values:
        features = model.vision_features(inputs.pixel_values, inputs.tgt_sizes)
        vision_embeds = model.resampler(features, inputs.tgt_sizes, inputs.temporal_ids)
    embeds = model.embed_inputs(inputs.input_ids, vision_embeds, inputs.image_bounds)
    trace = GenerationTrace(inputs.input_ids, features, vision_embeds, embeds)

    from transformers import DynamicCache

    cache = DynamicCache(config=model.llm.config)
    out = model.llm(inputs_embeds=embeds[None].to(loaded.dtype), past_key_values=cache, use_cache=True)
    stop_ids = tok.stop_token_ids()
    position = len(inputs.input_ids)
    trace.stopped_by = "max_new_tokens"
    for _ in range(max_new_tokens):
        logits = out.logits[0, -1].float()
        trace.step_logits.append(logits)
        next_id = int(logits.argmax())
        trace.tokens.append(next_id)
        if next_id in stop_ids:
            trace.stopped_by = "stop_token"
            break
        if on_token is not None:
            on_token(tok.decode([next_id]))
        position += 1
        if position >= limit:
            trace.stopped_by = "max_position"
            break
        step = model.llm.get_input_embeddings()(torch.tensor([[next_id]]))
        out = model.llm(inputs_embeds=step, past_key_values=cache, use_cache=True)
    trace.text = tok.decode([t for t in trace.tokens if t not in stop_ids])
    return trace
