"""The decoder part of `edgevlm export`: a recipe's decoder target -> .pte (executorch) or .onnx
graphs (ort) + its manifest entry.

The LLM is built a layer at a time from a source (export/llm_source.py, export/llm_build.py):
calibrated, quantized into the backend's form, and run on a fixed text prompt. Its last-position
logits from the float model and from the built model run eagerly (the artifact's cache format
and attention) are stored beside the artifacts (verification/decoder/<target>.npz): `verify`
compares every decoder artifact's own prefill of that prompt with the eager ones, and reports its
distance from the float model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from edgevlm.export.decoder_pte import DecoderPteSpec, export_pte
from edgevlm.export.gates import Gate, compare, gate_for
from edgevlm.export.kv_cache import KVCacheSpec
from edgevlm.export.manifest_builders import kv_cache_entry, pte_decoder_entry
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


def decoder_spec(target: DecoderTarget) -> DecoderPteSpec:
    cache = KVCacheSpec(target.kv_cache, target.kv_group_size, target.kv_rotate_keys)
    return DecoderPteSpec(max_seq_len=target.max_seq_len, weights=target.weights, group_size=target.group_size,
                          cache=cache, attention=target.attention or "custom", embedding=target.embedding)


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
    from edgevlm.export.decoder import ExportDecoder

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


def custom_ops(spec: DecoderPteSpec, out: Path) -> tuple[list[str], list[Path]]:
    """The non-ATen kernels the program calls, and (for ours) their C++ sources copied beside it for
    the app to compile in (ExecuTorch's own llama ops come with its LLM runner build)."""
    if spec.attention != "custom":
        return [], []
    if spec.cache.format != "int4":
        return ["llama::update_cache.out", "llama::custom_sdpa.out"], []
    from edgevlm.export.int4_attention import KERNEL_FILES, KERNEL_NAMES

    folder = out / "kernels"  # an INT4-cache program calls only these (no llama:: ops)
    folder.mkdir(exist_ok=True)
    for source in KERNEL_FILES:
        shutil.copyfile(source, folder / source.name)
    return list(KERNEL_NAMES), [folder / s.name for s in KERNEL_FILES]


def export_pte_target(loaded, recipe: Recipe, target: DecoderTarget, out: Path, built, parity: dict,
                      vision=None) -> dict:
    """The executorch target: write the .pte of a built LLM; returns the manifest entry."""
    spec = decoder_spec(target)
    name = f"minicpmv-{loaded.config.version}.decoder.xnnpack.{target.precision}.pte"
    path = Path(out) / name
    metadata = export_pte(loaded, spec, path, runner="multimodal", vision=vision if target.vision_in_pte else None,
                          llm=built.llm)
    d = loaded.config.llm.hidden_size
    methods = ["token_embedding", "text_decoder"] + (["vision_encoder"] if target.vision_in_pte else [])
    ops, sources = custom_ops(spec, Path(out))
    return pte_decoder_entry(
        root=Path(out), path=path, recipe=recipe.name, precision=target.precision, kernel_sources=sources,
        custom_ops=ops, methods=methods,
        inputs=[{"name": "embeddings", "shape": [1, "T", d], "dtype": "float32"},
                {"name": "input_pos", "shape": [1], "dtype": "int64"}],
        outputs=[{"name": "logits", "shape": [1, loaded.config.llm.vocab_size], "dtype": "float32"}],
        weights={"scheme": target.weights, "group_size": target.group_size, "library": "torchao",
                 "calibration": weight_calibration_record(built, target), "embedding": target.embedding},
        kv_cache=kv_cache_block(loaded, spec, spec.attention), runner_metadata=metadata,
        quality_gate=decoder_gate(target, parity).to_dict(), parity=parity)


def weight_plan(target: DecoderTarget):
    """What the float LLM becomes for this target (export/llm_build.py)."""
    from edgevlm.calibration.awq import SETTINGS

    awq = SETTINGS.get(target.weight_calibration) if target.weights != "fp32" else None
    if target.backend == "ort":
        from edgevlm.export.decoder_onnx import weight_plan as onnx_plan
        from edgevlm.export.decoder_onnx_artifact import onnx_spec

        return onnx_plan(onnx_spec(target), awq)
    return decoder_spec(target).weight_plan(awq)


def export_decoder_target(loaded, recipe: Recipe, target: DecoderTarget, out: Path, source, calibration=(),
                          vision=None, park=None, stage=None) -> dict:
    """Build the LLM for `target` from `source` (calibrated on `calibration` embeddings when the
    target says so), write its artifact(s) and return the manifest entry. `stage`: a
    resources.StageRecorder.stage-like context factory."""
    import contextlib

    from edgevlm.export.llm_build import build_llm

    stage = stage or (lambda name, **fields: contextlib.nullcontext())
    plan = weight_plan(target)
    ids = parity_ids(loaded)
    cache = KVCacheSpec(target.kv_cache, target.kv_group_size, target.kv_rotate_keys)
    with stage(f"decoder build ({target.backend} {target.precision})", calibration=target.weight_calibration,
               layers=source.num_layers):
        built = build_llm(source, plan, calibration=list(calibration) if plan.awq else [],
                          probes=[source.embed(torch.tensor(ids))], park=park)
        eager = eager_logits(built.llm, cache, target.attention or "custom", ids)
    parity = write_parity_reference(ids, built.probe_logits[0], eager, out, f"{target.backend}-{target.precision}")
    with stage(f"decoder export ({target.backend} {target.precision})"):
        if target.backend == "ort":
            from edgevlm.export.decoder_onnx_artifact import export_onnx_decoder_target

            return export_onnx_decoder_target(loaded, recipe, target, out, built, parity)
        return export_pte_target(loaded, recipe, target, out, built, parity, vision)
