"""Activation-aware INT4 weight scaling (AWQ-style) ahead of round-to-nearest quantizers, one group
of linears at a time.

Weight channels that meet large activations matter most, so before quantizing, each group of
linears that reads one input is rescaled channel-wise: W' = W * s, and the op that produces the
input divides by s (an RMSNorm's weight), so the float model computes the same function.
s = mean|x|^alpha per input channel, with alpha searched per group on calibration activations to
minimise the output error of the group-wise INT4 round-trip. Then each (row, group) range is
clipped to the ratio that minimises its output error (AWQ's clip search).

The quantizers stay the well-kept ones (torchao for the .pte, onnxruntime's block quantizer for
ONNX): this module only hands them weights that round better. Groups (Llama/Qwen/MiniCPM layers):

    input_layernorm          -> q_proj, k_proj, v_proj
    post_attention_layernorm -> gate_proj, up_proj
    model.norm               -> lm_head (untied first when it shares the embedding)

o_proj and down_proj stay plain round-to-nearest, chosen on evidence. On edgevlm-tiny (torchao
8da4w g32, logits' relative MSE over 20 held-out prompts; round-to-nearest 1.5e-3, scales alone
1.47e-3): folding their scales into v_proj / up_proj as the AWQ paper does gave 8.0e-4 against
6.8e-4 without, and clip-searching them gave 1.03e-3 (down_proj's heavy-tailed inputs: the
clip fitted to calibration rows costs the held-out ones).

Both searches use the inputs' Gram matrix instead of the outputs: the output error of a weight
error E over inputs x is ||x E^T||^2 = sum(E * (E @ x^T x)), and the error of one (row, group) is
e^T G_g e with G_g the group's [32, 32] Gram block. Nothing of size [tokens, out, groups] is ever
built (the clip search used to build [512, out, in/32] floats: 12 GB for MiniCPM4's lm_head), the
cost no longer grows with the number of tokens, and weights are read a block of rows at a time,
so a 150k-row lm_head is searched without an fp32 copy. The layer-by-layer driver that feeds
these searches is export/llm_build.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger("edgevlm.awq")
ALPHAS = tuple(i / 20 for i in range(21))
MAX_ROWS = 4096  # calibration tokens kept per group (a seeded random subset beyond that)
CLIP_RATIOS = tuple(1 - i / 20 for i in range(11))  # 1.0 .. 0.5
CLIP_ROWS = 512  # tokens used by the clip search
OUT_BLOCK = 4096  # weight rows handled at a time


@dataclass(frozen=True)
class AwqSettings:
    """How hard the search works. `awq` is the reference; `awq-fast` searches alpha on a coarser grid
    (0, 0.1, ..., 1) over every 4th output row of each weight, about 8x less arithmetic."""

    alphas: tuple[float, ...] = ALPHAS
    max_rows: int = MAX_ROWS
    clip: bool = True
    clip_rows: int = CLIP_ROWS
    output_stride: int = 1


SETTINGS = {"awq": AwqSettings(), "awq-fast": AwqSettings(alphas=tuple(i / 10 for i in range(11)), output_stride=4)}


def fake_quant(w: torch.Tensor, bits: int, group: int, symmetric: bool) -> torch.Tensor:
    """Group-wise round-to-nearest round trip along the input dimension (what the quantizers do)."""
    out_features, in_features = w.shape
    g = w.reshape(out_features, in_features // group, group)
    if symmetric:  # torchao's symmetric int4: [-8, 7], scale = max|w| / 7.5
        scale = g.abs().amax(-1, keepdim=True).clamp_min(1e-8) / ((2 ** bits - 1) / 2)
        q = (g / scale).round().clamp(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        return (q * scale).reshape_as(w)
    lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    scale = ((hi - lo) / (2 ** bits - 1)).clamp_min(1e-8)
    zero = (-lo / scale).round()
    q = ((g / scale).round() + zero).clamp(0, 2 ** bits - 1)
    return ((q - zero) * scale).reshape_as(w)


@dataclass(frozen=True)
class Quantizer:
    bits: int = 4
    group_size: int = 32
    symmetric: bool = True

    def round_trip(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quant(w, self.bits, self.group_size, self.symmetric)


class WeightRows:
    """A weight matrix [out, in] read a block of fp32 rows at a time: a module's weight, or a
    reader of a checkpoint tensor that is never held whole in fp32."""

    def __init__(self, rows: int, read: Callable[[int, int], torch.Tensor]):
        self.rows, self._read = rows, read

    @classmethod
    def of(cls, weight: torch.Tensor) -> "WeightRows":
        return cls(weight.shape[0], lambda a, b: weight[a:b].float())

    def blocks(self, size: int = OUT_BLOCK, stride: int = 1) -> Iterator[tuple[int, torch.Tensor]]:
        for start in range(0, self.rows, size):
            block = self._read(start, min(start + size, self.rows))
            yield start, block[::stride] if stride > 1 else block


def subsample(x: torch.Tensor, max_rows: int, generator: torch.Generator) -> torch.Tensor:
    """At most max_rows rows of x, a random subset drawn from the shared generator (the draw order
    over groups is the model's forward order, so the subsets do not depend on how layers are fed)."""
    if len(x) > max_rows:
        x = x[torch.randperm(len(x), generator=generator)[:max_rows]]
    return x


def _scales(mean_abs: torch.Tensor, alpha: float) -> torch.Tensor:
    s = mean_abs.pow(alpha)
    return s / (s.max() * s.min()).sqrt()


def search_scale(weights: list[WeightRows], x: torch.Tensor, quantizer: Quantizer,
                 settings: AwqSettings = SETTINGS["awq"]) -> tuple[float, torch.Tensor, dict]:
    """The alpha (and s) minimising the summed output MSE of the group's INT4 round trips on x.

    Returns (alpha, s, {"rtn_error", "awq_error", "errors": {alpha: error}})."""
    mean_abs = x.abs().mean(0).clamp_min(1e-6)
    gram = (x.double().T @ x.double()).float()
    n = len(x)
    errors = {}
    for alpha in settings.alphas:
        s = _scales(mean_abs, alpha)
        total = 0.0
        for weight in weights:
            err, rows = 0.0, 0
            for _, block in weight.blocks(stride=settings.output_stride):
                e = quantizer.round_trip(block * s) / s - block
                err += float(((e @ gram) * e).sum())
                rows += len(block)
            total += err / (n * rows)
        errors[alpha] = total
    alpha = min(errors, key=errors.get)
    return alpha, _scales(mean_abs, alpha), {"rtn_error": errors.get(0.0, float("nan")), "awq_error": errors[alpha],
                                             "errors": errors}


class ClipSearch:
    """Per (row, group) clipping of a weight, chosen on inputs x (the group's Gram blocks)."""

    def __init__(self, x: torch.Tensor, quantizer: Quantizer):
        self.quantizer = quantizer
        xg = x.double().reshape(len(x), -1, quantizer.group_size)
        self.gram = torch.einsum("ngk,ngl->gkl", xg, xg).float()  # [groups, G, G]

    def __call__(self, w: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(the clipped copy of w [rows, in], how many (row, group) ranges were clipped): the ratio of
        CLIP_RATIOS with the smallest output error, per (row, group)."""
        q = self.quantizer
        wg = w.reshape(w.shape[0], -1, q.group_size)
        lo, hi = wg.amin(-1, keepdim=True), wg.amax(-1, keepdim=True)
        if q.symmetric:
            lo = -torch.maximum(lo.abs(), hi.abs())
            hi = -lo
        best_err = torch.full(wg.shape[:2], float("inf"))
        best = wg
        for ratio in CLIP_RATIOS:
            clipped = torch.maximum(torch.minimum(wg, hi * ratio), lo * ratio)
            d = q.round_trip(clipped.reshape_as(w)).reshape_as(wg) - wg
            err = torch.einsum("ogk,gkl,ogl->og", d, self.gram, d)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best = torch.where(better[..., None], clipped, best)
        return best.reshape_as(w), int((best != wg).any(-1).sum())


@dataclass(frozen=True)
class Group:
    name: str
    producer: nn.Module  # the RMSNorm whose weight absorbs 1/s
    linears: tuple[nn.Linear, ...]


def layer_groups(layer: nn.Module, index: int) -> list[Group]:
    attn, mlp = layer.self_attn, layer.mlp
    return [Group(f"layers.{index}.qkv", layer.input_layernorm, (attn.q_proj, attn.k_proj, attn.v_proj)),
            Group(f"layers.{index}.gate_up", layer.post_attention_layernorm, (mlp.gate_proj, mlp.up_proj))]


def check_group_size(layer: nn.Module, group_size: int) -> None:
    """Every linear of a decoder layer must split into whole quantization groups."""
    for name, lin in layer.named_modules():
        if isinstance(lin, nn.Linear) and lin.in_features % group_size:
            from edgevlm.errors import ConfigError

            raise ConfigError(f"weight group size {group_size} does not divide {name}'s {lin.in_features} inputs",
                              "use a group size that divides the hidden and MLP widths (32, 64 or 128)")


@torch.no_grad()
def calibrate_group(group: Group, x: torch.Tensor, quantizer: Quantizer, settings: AwqSettings) -> dict:
    """Search, fold and clip one group of in-memory fp32 linears in place; x: its inputs (subsampled)."""
    alpha, s, errors = search_scale([WeightRows.of(lin.weight) for lin in group.linears], x, quantizer, settings)
    for lin in group.linears:
        lin.weight.mul_(s.to(lin.weight.dtype))
    group.producer.weight.div_(s.to(group.producer.weight.dtype))  # RMSNorm: y = weight * x_hat
    summary = {"alpha": alpha, "rtn_error": errors["rtn_error"], "awq_error": errors["awq_error"]}
    if settings.clip:  # after scaling the linears read x / s
        search, clips = ClipSearch((x / s)[:settings.clip_rows], quantizer), []
        for lin in group.linears:
            clipped, count = search(lin.weight.float())
            lin.weight.copy_(clipped.to(lin.weight.dtype))
            clips.append({"clipped_fraction": count * quantizer.group_size / lin.weight.numel()})
        summary["clip"] = clips
    return summary


def awq_scaled(llm: nn.Module, embeddings: list[torch.Tensor], group_size: int, bits: int = 4,
               symmetric: bool = True, clip: bool = True, settings: AwqSettings | None = None
               ) -> tuple[nn.Module, dict]:
    """A float copy of an in-memory `llm` with AWQ scales folded in (and clipped), and a summary
    (alpha and error per group). The layers are calibrated one at a time (export/llm_build.py), each
    on the float model's own activations: folds are float-exact, and a group's search accounts for
    its own fold."""
    from dataclasses import replace

    from edgevlm.export.llm_build import WeightPlan, build_llm
    from edgevlm.export.llm_source import ModuleLayers

    settings = replace(settings or SETTINGS["awq"], clip=clip)
    plan = WeightPlan(scheme="fp32", group_size=group_size, symmetric=symmetric, bits=bits, awq=settings)
    built = build_llm(ModuleLayers(llm), plan, calibration=embeddings)
    return built.llm, built.calibration


@torch.no_grad()
def calibration_embeddings(loaded, source: str = "builtin", count: int = 16, seed: int = 0,
                           embed: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Input embeddings (vision rows placed) of the calibration set's image + prompt pairs, one image
    at a time. `embed`: token ids -> fp32 embeddings (default: the loaded LLM's own table)."""
    from edgevlm.calibration.datasets import calibration_samples
    from edgevlm.model.minicpmv import place_vision
    from edgevlm.preprocess import preprocess

    model, out = loaded.model, []
    embed = embed or (lambda ids: model.llm.get_input_embeddings()(ids).float())
    for sample in calibration_samples(source, count, seed):
        inputs = preprocess([sample.image], sample.prompt, loaded.tokenizer, loaded.config, loaded.processor_config)
        vision = model.encode_images(inputs.pixel_values, inputs.tgt_sizes, inputs.temporal_ids)
        out.append(place_vision(embed(inputs.input_ids), vision, inputs.image_bounds))
    return out
