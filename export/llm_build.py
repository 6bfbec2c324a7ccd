"""Build the decoder's LLM one layer at a time: calibrate, quantize, and keep a float reference.

The calibration sequences (for AWQ) and the probe sequences (whose last-position logits are the
parity reference `verify` checks artifacts against) flow through the float model a layer at a
time, the way AutoAWQ and llm-compressor calibrate. For each layer:

    fp32 layer from the source -> hidden states of every sequence through it (original weights),
    capturing each AWQ group's inputs -> search / fold / clip (calibration/awq.py) -> quantize its
    linears into the backend's form (export/quantized_modules.py) -> into the skeleton

then the final norm, the lm_head (a block of rows at a time) and the token embedding. Peak memory
is one fp32 layer, the hidden states, and the quantized model so far (which can be parked in
files, edgevlm.resources.ScratchFiles). The result is an LLM module the exporters read as they
read the reference model (export/decoder/graph.py's ExportDecoder).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from edgevlm.calibration.awq import (AwqSettings, ClipSearch, Quantizer, WeightRows, calibrate_group,
                                     check_group_size, layer_groups, search_scale, subsample)
from edgevlm.export.quantized_modules import (INTX_SCHEMES, IntxLinear, NBitsLinear, quantized_embedding,
                                              row_blocks)
from edgevlm.progress import progress_bar

SCHEMES = ("fp32",) + INTX_SCHEMES + ("int4",)  # int4: MatMulNBits (ONNX)


@dataclass(frozen=True)
class WeightPlan:
    """What the builder turns the float LLM into."""

    scheme: str = "fp32"  # fp32 (float modules) | 8da4w (torchao, .pte) | int4 (MatMulNBits, .onnx)
    group_size: int = 32
    symmetric: bool = True  # MatMulNBits only; torchao's intx is symmetric
    accuracy_level: int | None = 4  # MatMulNBits
    bits: int = 4
    embedding: str = "fp32"  # fp32 | bf16 | fp16 | int8 | int4 (export/quantized_modules.py)
    awq: AwqSettings | None = None  # None: round to nearest

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, not {self.scheme!r}")

    @property
    def quantizer(self) -> Quantizer:
        """The round trip AWQ searches against: the target's own grid."""
        return Quantizer(self.bits, self.group_size, self.symmetric or self.scheme in INTX_SCHEMES)


@dataclass
class BuiltLLM:
    llm: nn.Module
    probe_logits: list[torch.Tensor] = field(default_factory=list)  # fp32 reference, last position
    calibration: dict = field(default_factory=lambda: {"method": "rtn"})


class _LayerRunner:
    """Runs one decoder layer on a [1, T, D] sequence as the reference model's forward does
    (its rotary tables and causal mask, computed once per sequence length)."""

    def __init__(self, llm: nn.Module):
        self.llm = llm
        self._inputs: dict[int, dict] = {}

    def __call__(self, layer: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_causal_mask

        t = hidden.shape[1]
        if t not in self._inputs:
            positions = torch.arange(t)[None]
            mask = create_causal_mask(config=self.llm.config, inputs_embeds=hidden, attention_mask=None, cache=None,
                                      position_ids=positions)
            self._inputs[t] = {"attention_mask": mask, "position_ids": positions,
                               "position_embeddings": self.llm.model.rotary_emb(hidden, positions)}
        return layer(hidden, use_cache=False, **self._inputs[t])


def quantize_linear(rows, plan: WeightPlan, bias=None, input_divisor=None, park=None,
                    float_module: Callable[[torch.Tensor], nn.Module] | None = None) -> nn.Module:
    """One linear (fp32 row blocks of its weight) in the plan's form."""
    if plan.scheme in INTX_SCHEMES:
        return IntxLinear.from_rows(rows, plan.scheme, plan.group_size, bias, input_divisor, park)
    if plan.scheme == "int4":
        return NBitsLinear.from_rows(rows, plan.group_size, plan.symmetric, plan.accuracy_level, bias, input_divisor,
                                     park)
    return float_module(torch.cat(list(rows)))


@torch.no_grad()
def quantize_layer(layer: nn.Module, plan: WeightPlan, park=None) -> nn.Module:
    """Replace every nn.Linear of a decoder layer by its quantized form (fp32: left as is)."""
    if plan.scheme == "fp32":
        return layer
    for name, module in list(layer.named_modules()):
        if isinstance(module, nn.Linear):
            parent_name, _, child = name.rpartition(".")
            parent = layer.get_submodule(parent_name) if parent_name else layer
            bias = None if module.bias is None else module.bias.detach().float().clone()
            setattr(parent, child, quantize_linear(row_blocks(module.weight.detach()), plan, bias, park=park))
            del module
    return layer


def _head_divisor(lm_head: nn.Module) -> float | None:
    from edgevlm.model.llm import ScaledInputLinear

    return lm_head.divisor if isinstance(lm_head, ScaledInputLinear) else None  # MiniCPM4's muP lm_head


def _embedding_scale(embed: nn.Module) -> float:
    from edgevlm.model.llm import ScaledEmbedding

    return embed.scale if isinstance(embed, ScaledEmbedding) else 1.0  # MiniCPM4's scale_emb


@torch.no_grad()
def build_llm(source, plan: WeightPlan, calibration: list[torch.Tensor] = (), probes: list[torch.Tensor] = (),
              park=None, description: str = "decoder layers") -> BuiltLLM:
    """source: export/llm_source.py; calibration / probes: input embeddings [T, D] per sequence."""
    from edgevlm.export.llm_source import _materialize

    llm = source.skeleton()
    awq = plan.awq if calibration else None
    quantizer = plan.quantizer
    generator = torch.Generator().manual_seed(0)  # one stream of subsets, drawn in forward order
    runner = _LayerRunner(llm)
    cal = [e[None].float() for e in calibration]
    probe = [p[None].float() for p in probes]
    groups_summary: dict[str, dict] = {}
    with progress_bar(source.num_layers + 1, description, report_every_s=60) as advance:
        for index in range(source.num_layers):
            layer = source.layer(index)
            if plan.awq is not None or plan.scheme != "fp32":
                check_group_size(layer, plan.group_size)
            groups = layer_groups(layer, index) if awq else []
            captured: dict[str, list[torch.Tensor]] = {g.name: [] for g in groups}
            hooks = [g.linears[0].register_forward_pre_hook(
                lambda mod, args, rows=captured[g.name]: rows.append(args[0].reshape(-1, args[0].shape[-1])))
                for g in groups]  # a group's linears share their input
            try:
                cal = [runner(layer, h) for h in cal]
            finally:
                for h in hooks:
                    h.remove()
            probe = [runner(layer, h) for h in probe]
            for group in groups:
                x = subsample(torch.cat(captured.pop(group.name)), awq.max_rows, generator)
                groups_summary[group.name] = calibrate_group(group, x, quantizer, awq)
            llm.model.layers[index] = quantize_layer(layer, plan, park)
            del layer
            advance()
        norm = source.norm()
        head = source.lm_head()
        divisor = _head_divisor(llm.lm_head)
        probe_logits = [_logits(norm(h[:, -1]), head, divisor) for h in probe]
        transform = None
        if awq:
            x = subsample(torch.cat([norm(h).reshape(-1, h.shape[-1]) for h in cal]), awq.max_rows, generator)
            transform, groups_summary["lm_head"] = _calibrate_head(norm, head, x, quantizer, awq, plan.group_size)
        del cal
        blocks = (transform(block) if transform else block for _, block in head.blocks())
        float_head = (lambda weight: _materialize(llm.lm_head, {"weight": weight}))
        llm.lm_head = quantize_linear(blocks, plan, input_divisor=divisor, park=park, float_module=float_head)
        llm.model.norm = norm
        embed = llm.get_input_embeddings()
        llm.model.embed_tokens = quantized_embedding(source.embedding(), plan.embedding, _embedding_scale(embed), park)
        advance()
    return BuiltLLM(llm, probe_logits, _summary(groups_summary, plan, awq, len(calibration)))


def _logits(x: torch.Tensor, head: WeightRows, divisor: float | None) -> torch.Tensor:
    """x [1, D] through the float lm_head (row blocks), as the reference's F.linear(x / divisor, W)."""
    if divisor is not None:
        x = x / divisor
    return torch.cat([x @ block.T for _, block in head.blocks()], dim=-1)[0]


def _calibrate_head(norm, head: WeightRows, x, quantizer: Quantizer, awq: AwqSettings, group_size: int):
    """AWQ for the lm_head group: fold s into the final norm now; return the per-block transform
    (scale, then clip) the quantizer applies as it reads the rows."""
    if x.shape[1] % group_size:
        from edgevlm.errors import ConfigError

        raise ConfigError(f"AWQ group size {group_size} does not divide lm_head's {x.shape[1]} inputs",
                          "use a group size that divides the hidden and MLP widths (32, 64 or 128)")
    alpha, s, errors = search_scale([head], x, quantizer, awq)
    norm.weight.div_(s)
    summary = {"alpha": alpha, "rtn_error": errors["rtn_error"], "awq_error": errors["awq_error"]}
    if not awq.clip:
        return (lambda block: block * s), summary
    search = ClipSearch((x / s)[:awq.clip_rows], quantizer)
    counts = {"clipped": 0, "groups": 0}

    def transform(block):
        clipped, count = search(block * s)
        counts["clipped"] += count
        counts["groups"] += block.numel() // group_size
        summary["clip"] = [{"clipped_fraction": counts["clipped"] / counts["groups"]}]
        return clipped

    return transform, summary


def _summary(groups: dict, plan: WeightPlan, awq: AwqSettings | None, sequences: int) -> dict:
    if awq is None:
        return {"method": "rtn"}
    rtn = sum(v["rtn_error"] for v in groups.values())
    best = sum(v["awq_error"] for v in groups.values())
    return {"method": "awq", "clip_search": awq.clip, "groups": groups, "output_mse_rtn": rtn, "output_mse_awq": best,
            "calibration_sequences": sequences, "bits": plan.bits, "group_size": plan.group_size,
            "symmetric": plan.quantizer.symmetric,
            "search": {"alphas": len(awq.alphas), "max_rows": awq.max_rows, "output_stride": awq.output_stride}}
