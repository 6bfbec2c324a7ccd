"""The test oracle for calibration/awq.py: edgevlm's AWQ as it was before the layer-by-layer rewrite
(issue 14), unchanged. It captures every group's inputs in one forward of a deep-copied fp32 model
and searches on [tokens, out] outputs and a [512, out, groups] clip tensor, so it only fits small
models; the layer-by-layer implementation must reproduce its scales, clips and weights.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger("edgevlm.awq")
ALPHAS = tuple(i / 20 for i in range(21))
MAX_ROWS = 4096  # calibration tokens kept per group (a random subset beyond that)


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
class Group:
    name: str
    producer: nn.Module  # the RMSNorm whose weight absorbs 1/s
    linears: tuple[nn.Linear, ...]


def layer_groups(llm: nn.Module) -> list[Group]:
    groups = []
    for i, layer in enumerate(llm.model.layers):
        attn, mlp = layer.self_attn, layer.mlp
        groups.append(Group(f"layers.{i}.qkv", layer.input_layernorm, (attn.q_proj, attn.k_proj, attn.v_proj)))
        groups.append(Group(f"layers.{i}.gate_up", layer.post_attention_layernorm, (mlp.gate_proj, mlp.up_proj)))
    groups.append(Group("lm_head", llm.model.norm, (llm.lm_head,)))
    return groups


@torch.no_grad()
def collect_inputs(llm: nn.Module, embeddings: list[torch.Tensor], linears: list[nn.Linear],
                   seed: int = 0) -> dict[nn.Linear, torch.Tensor]:
    """The input rows each of `linears` sees while the float LLM prefills each calibration sequence
    (at most MAX_ROWS per linear, a seeded random subset)."""
    rows: dict[nn.Linear, list[torch.Tensor]] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args: rows.setdefault(mod, []).append(
        args[0].reshape(-1, args[0].shape[-1]).float())) for m in linears]
    try:
        for embeds in embeddings:
            llm(inputs_embeds=embeds[None].float(), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for module, parts in rows.items():
        x = torch.cat(parts)
        if len(x) > MAX_ROWS:
            x = x[torch.randperm(len(x), generator=generator)[:MAX_ROWS]]
        out[module] = x
    return out


def _search(group: Group, x: torch.Tensor, bits: int, group_size: int, symmetric: bool) -> tuple[float, torch.Tensor, dict]:
    mean_abs = x.abs().mean(0).clamp_min(1e-6)
    reference = [x @ lin.weight.float().T for lin in group.linears]
    best = (float("inf"), 0.0, torch.ones_like(mean_abs))
    errors = {}
    for alpha in ALPHAS:
        s = mean_abs.pow(alpha)
        s = s / (s.max() * s.min()).sqrt()
        err = 0.0
        for lin, ref in zip(group.linears, reference):
            w = fake_quant(lin.weight.float() * s, bits, group_size, symmetric) / s
            err += float(((x @ w.T - ref) ** 2).mean())
        errors[alpha] = err
        if err < best[0]:
            best = (err, alpha, s)
    return best[1], best[2], {"rtn_error": errors[0.0], "awq_error": best[0]}


@torch.no_grad()
def _apply(group: Group, s: torch.Tensor) -> None:
    for lin in group.linears:
        lin.weight.mul_(s.to(lin.weight.dtype))
    group.producer.weight.div_(s.to(group.producer.weight.dtype))  # RMSNorm: y = weight * x_hat


CLIP_RATIOS = tuple(1 - i / 20 for i in range(11))  # 1.0 .. 0.5
CLIP_ROWS = 512  # tokens used by the clip search


def _clip(lin: nn.Linear, x: torch.Tensor, bits: int, group_size: int, symmetric: bool) -> dict:
    """Shrink each (row, group) range to the ratio that minimises that group's share of the output error.

    The clipped float weights carry the choice to any quantizer: its scale comes from their range."""
    w = lin.weight.float()
    out_features, in_features = w.shape
    groups = in_features // group_size
    xg = x[:CLIP_ROWS].reshape(-1, groups, group_size)
    wg = w.reshape(out_features, groups, group_size)
    lo, hi = wg.amin(-1, keepdim=True), wg.amax(-1, keepdim=True)
    if symmetric:
        lo = -torch.maximum(lo.abs(), hi.abs())
        hi = -lo
    best_err = torch.full((out_features, groups), float("inf"))
    best = wg.clone()
    for ratio in CLIP_RATIOS:
        clipped = torch.maximum(torch.minimum(wg, hi * ratio), lo * ratio)
        q = fake_quant(clipped.reshape_as(w), bits, group_size, symmetric).reshape_as(wg)
        err = torch.einsum("ngk,ogk->nog", xg, q - wg).pow(2).sum(0)  # [out, groups]
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better[..., None], clipped, best)
    with torch.no_grad():
        lin.weight.copy_(best.reshape_as(w).to(lin.weight.dtype))
    return {"clipped_fraction": float((best != wg).any(-1).float().mean())}


def awq_scaled(llm: nn.Module, embeddings: list[torch.Tensor], group_size: int, bits: int = 4,
               symmetric: bool = True, clip: bool = True) -> tuple[nn.Module, dict]:
    """A float copy of `llm` with AWQ scales folded in, and a summary (alpha and error per group).

    One capture of the float model's activations serves every group: each fold is float-exact and
    changes only its own group's inputs (divided by that group's s), which the search accounts for."""
    llm = copy.deepcopy(llm).float().eval().requires_grad_(False)
    if llm.get_input_embeddings().weight is llm.get_output_embeddings().weight:
        llm.lm_head.weight = nn.Parameter(llm.lm_head.weight.detach().clone(), requires_grad=False)
    for group in layer_groups(llm):
        for lin in group.linears:
            if lin.in_features % group_size:
                from edgevlm.errors import ConfigError

                raise ConfigError(f"AWQ group size {group_size} does not divide {group.name}'s {lin.in_features} inputs",
                                  "use a group size that divides the hidden and MLP widths (32, 64 or 128)")
    groups = layer_groups(llm)
    inputs = collect_inputs(llm, embeddings, [g.linears[0] for g in groups])  # a group's linears share it
    summary = {}
    for group in groups:
        x = inputs[group.linears[0]]
        alpha, s, errors = _search(group, x, bits, group_size, symmetric)
        _apply(group, s)
        summary[group.name] = {"alpha": alpha} | errors
        if clip:  # after scaling the linears read x / s
            summary[group.name]["clip"] = [_clip(lin, x / s, bits, group_size, symmetric) for lin in group.linears]
    rtn = sum(v["rtn_error"] for v in summary.values())
    awq = sum(v["awq_error"] for v in summary.values())
    log.info("awq scales folded", extra={"groups": len(summary), "output_mse_rtn": rtn, "output_mse_awq": awq})
    return llm, {"method": "awq", "clip_search": clip, "groups": summary, "output_mse_rtn": rtn, "output_mse_awq": awq,
                 "calibration_sequences": len(embeddings), "bits": bits, "group_size": group_size,
                 "symmetric": symmetric}
