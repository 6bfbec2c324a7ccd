"""The decoder part of `edgevlm export`: a recipe's decoder target -> its backend's artifact(s)
(backends/executorch_decoder.py: .pte; backends/ort_decoder.py: .onnx graphs) + the manifest entry.

The LLM is built a layer at a time from a source (export/llm_source.py, export/llm_build.py):
calibrated, quantized into the backend's form, and run on a fixed text prompt. Its last-position
logits from the float model and from the built model run eagerly (the artifact's cache format
and attention) are stored beside the artifacts (verification/decoder/<target>.npz): `verify`
compares every decoder artifact's own prefill of that prompt with the eager ones, and reports its
distance from the float model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgevlm.backends.base import get_decoder_backend
from edgevlm.export.decoder.kv_cache import KVCacheSpec
from edgevlm.export.gates import Gate, compare, gate_for
from edgevlm.export.manifest_builders import kv_cache_entry
from edgevlm.export.recipes import DecoderTarget, Recipe

PARITY_PROMPT = "Describe the picture in one short sentence, then name its main colour."
PARITY_DIR = "verification/decoder"  # one .npz per decoder artifact
# Prefill-logit gate of a quantized decoder artifact against the same quantized model run eagerly
# (ExportDecoder over the built LLM, the artifact's cache format and attention mode): it checks the
# export, lowering and kernels, not the quantization, whose cost against the float model is
# reported beside it and judged by `edgevlm quality`. The artifact must be within 30 dB of the eager
# model, or at least 10 dB closer to it than quantization moved the eager model from the float one:
# a random-weight model amplifies every rounding difference as it amplifies quantization noise.
# Measured (artifact vs eager / eager vs float): tiny 4.0 .pte 38.8 / 18.7 dB, .onnx 41.1 / 19.9;
# real-width 2-layer MiniCPM4 .pte 23.1 / 8.3 (XNNPACK keeps the weight scales in bf16: 26.8 dB
# for 8da4w weights alone; 60 dB for the INT4 cache kernels alone). A scrambled cache or packing
# measures about 0 dB.
GATE_CEILING_DB, GATE_MARGIN_DB = 30.0, 10.0


def decoder_gate(target: DecoderTarget, parity: dict) -> Gate:
    """The gate a decoder artifact's prefill is judged by against its eager model (see above)."""
    if target.weights == "fp32" and target.kv_cache == "fp32":
        return gate_for("fp32")
    return Gate("sqnr_db", round(min(GATE_CEILING_DB, parity["float_sqnr_db"] + GATE_MARGIN_DB), 3), True)


def kv_cache_block(loaded, spec, attention: str) -> dict:
    """The artifact's manifest `kv_cache` block (manifest_builders.kv_cache_entry). `spec`: a .pte or
    ONNX decoder spec (max_seq_len, cache); `attention`: static | custom (ONNX: always static)."""
    llm = loaded.config.llm
    return kv_cache_entry(spec.cache, max_seq_len=spec.max_seq_len, attention=attention,
                          layers=llm.num_hidden_layers, kv_heads=llm.num_key_value_heads,
                          head_dim=llm.resolved_head_dim)


def parity_ids(loaded) -> list[int]:
    return loaded.tokenizer.encode(PARITY_PROMPT)


@torch.no_grad()
def eager_logits(llm, cache: KVCacheSpec, attention: str, ids: list[int]) -> torch.Tensor:
    """Last-position logits of a built LLM run eagerly as the artifact runs it (its embedding, cache
    format and attention mode): the reference an artifact's own prefill must reproduce."""
    from edgevlm.export.decoder.graph import ExportDecoder

    decoder = ExportDecoder(llm, len(ids) + 1, cache, attention=attention).eval()
    return decoder(llm.get_input_embeddings()(torch.tensor(ids))[None].float(), torch.tensor([0]))[0]


def write_parity_reference(ids: list[int], float_logits: torch.Tensor, eager: torch.Tensor, out: Path,
                           name: str) -> dict:
    """The parity prompt's last-position logits from the float model and from the artifact's model
    run eagerly; the manifest entry's `parity` block."""
    path = Path(out) / PARITY_DIR / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, ids=np.asarray(ids, dtype=np.int64), logits=float_logits.float().numpy(),
             eager_logits=eager.float().numpy())
    return {"reference": str(path.relative_to(out)), "prompt": PARITY_PROMPT, "tokens": len(ids),
            "compared_with": "eager_logits (this artifact's model run eagerly)",
            "float_sqnr_db": round(min(compare(float_logits.numpy(), eager.numpy())["sqnr_db"], 200.0), 3)}


def weight_calibration_record(built, target: DecoderTarget) -> dict:
    summary = built.calibration
    if summary["method"] == "rtn":
        return {"method": "rtn"}
    return ({k: v for k, v in summary.items() if k != "groups"}
            | {"method": target.weight_calibration,
               "alpha": {name: g["alpha"] for name, g in summary["groups"].items()}})




def weight_plan(target: DecoderTarget):
    """What the float LLM becomes for this target (export/llm_build.py), as its backend says."""
    from edgevlm.calibration.awq import SETTINGS

    awq = SETTINGS.get(target.weight_calibration) if target.weights != "fp32" else None
    return get_decoder_backend(target.backend).weight_plan(target, awq)


def with_defaults(target: DecoderTarget) -> DecoderTarget:
    """The target with its backend's defaults filled in (recipes do this when they are parsed; a
    target made in code may leave `attention` unset)."""
    import dataclasses

    if target.attention:
        return target
    return dataclasses.replace(target, attention=get_decoder_backend(target.backend).support.default_attention)


def export_decoder_target(loaded, recipe: Recipe, target: DecoderTarget, out: Path, source, calibration=(),
                          vision=None, park=None, stage=None) -> dict:
    """Build the LLM for `target` from `source` (calibrated on `calibration` embeddings when the
    target says so), write its artifact(s) and return the manifest entry. `stage`: a
    resources.StageRecorder.stage-like context factory."""
    import contextlib

    from edgevlm.export.llm_build import build_llm

    stage = stage or (lambda name, **fields: contextlib.nullcontext())
    target = with_defaults(target)
    backend = get_decoder_backend(target.backend)
    plan = weight_plan(target)
    ids = parity_ids(loaded)
    cache = KVCacheSpec(target.kv_cache, target.kv_group_size, target.kv_rotate_keys)
    with stage(f"decoder build ({target.backend} {target.precision})", calibration=target.weight_calibration,
               layers=source.num_layers):
        built = build_llm(source, plan, calibration=list(calibration) if plan.awq else [],
                          probes=[source.embed(torch.tensor(ids))], park=park)
        eager = eager_logits(built.llm, cache, target.attention, ids)
    parity = write_parity_reference(ids, built.probe_logits[0], eager, out, f"{target.backend}-{target.precision}")
    with stage(f"decoder export ({target.backend} {target.precision})"):
        return backend.export(loaded, recipe, target, out, built, parity, vision)
