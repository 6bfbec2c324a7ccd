"""The executorch decoder target: a recipe's decoder target -> one .pte (ExecuTorch's multimodal
runner conventions, export/decoder/pte.py) + its manifest entry, with our kernels' sources beside
it when the program calls them."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgevlm.export.decoder import pte_names as names
from edgevlm.export.decoder.artifact import decoder_gate, kv_cache_block, weight_calibration_record
from edgevlm.export.decoder.custom_ops_attention import NAME as CUSTOM
from edgevlm.export.decoder.kv_cache import KVCacheSpec
from edgevlm.export.decoder.pte import DecoderPteSpec, export_pte
from edgevlm.export.manifest_builders import pte_decoder_entry
from edgevlm.export.recipes import DecoderTarget, Recipe


def decoder_spec(target: DecoderTarget) -> DecoderPteSpec:
    cache = KVCacheSpec(target.kv_cache, target.kv_group_size, target.kv_rotate_keys)
    return DecoderPteSpec(max_seq_len=target.max_seq_len, weights=target.weights, group_size=target.group_size,
                          cache=cache, attention=target.attention, embedding=target.embedding)


def io_specs(config) -> tuple[list[dict], list[dict]]:
    """(inputs, outputs) of the text_decoder method; the cache is the program's own state."""
    llm = config.llm
    return ([{"name": "embeddings", "shape": [1, "T", llm.hidden_size], "dtype": "float32"},
             {"name": "input_pos", "shape": [1], "dtype": "int64"}],
            [{"name": "logits", "shape": [1, llm.vocab_size], "dtype": "float32"}])


def embedding_table(spec: DecoderPteSpec, config) -> dict:
    """The manifest's record of the token-embedding table: format, layout, kernel, bytes."""
    from edgevlm.export.quantized_modules import EMBEDDING_GROUP, EMBEDDING_OPS

    rows, width = config.llm.vocab_size, config.llm.hidden_size
    fmt = spec.embedding
    if fmt in EMBEDDING_OPS:
        bits, scale_dtype, scale_bytes = (8, "float32", 4) if fmt == "int8" else (4, "float16", 2)
        table = {"bits": bits, "group_size": EMBEDDING_GROUP, "symmetric": True, "scale_dtype": scale_dtype,
                 "kernel": EMBEDDING_OPS[fmt],
                 "bytes": rows * width * bits // 8 + rows * (width // EMBEDDING_GROUP) * scale_bytes}
    else:
        table = {"bits": 32 if fmt == "fp32" else 16, "kernel": "aten::embedding.out",
                 "bytes": rows * width * (4 if fmt == "fp32" else 2)}
    # the lm_head is its own 4-bit copy even when tie_word_embeddings: XNNPACK packs it into its blob
    return {"format": fmt, **table, "tied_lm_head": "separate copy" if config.llm.tie_word_embeddings else "untied"}


def custom_ops(spec: DecoderPteSpec, out: Path) -> tuple[list[str], list[Path]]:
    """The non-ATen kernels the program calls, and (for ours) their C++ sources copied beside it for
    the app to compile in (ExecuTorch's own llama ops come with its LLM runner build, its quantized
    embedding kernels with kernels_quantized)."""
    from edgevlm.export.quantized_modules import EMBEDDING_OPS

    embedding = [EMBEDDING_OPS[spec.embedding]] if spec.embedding in EMBEDDING_OPS else []
    if spec.attention != CUSTOM:
        return embedding, []
    if spec.cache.format != "int4":
        return ["llama::update_cache.out", "llama::custom_sdpa.out"] + embedding, []
    from edgevlm.export.decoder.int4_attention import KERNEL_FILES, KERNEL_NAMES

    folder = out / "kernels"  # an INT4-cache program calls only these (no llama:: ops)
    folder.mkdir(exist_ok=True)
    for source in KERNEL_FILES:
        shutil.copyfile(source, folder / source.name)
    return list(KERNEL_NAMES) + embedding, [folder / s.name for s in KERNEL_FILES]


def export_pte_target(loaded, recipe: Recipe, target: DecoderTarget, out: Path, built, parity: dict,
                      vision=None) -> dict:
    """The executorch target: write the .pte of a built LLM; returns the manifest entry."""
    spec = decoder_spec(target)
    name = f"minicpmv-{loaded.config.version}.decoder.xnnpack.{target.precision}.pte"
    path = Path(out) / name
    metadata = export_pte(loaded, spec, path, runner="multimodal", vision=vision if target.vision_in_pte else None,
                          llm=built.llm)
    inputs, outputs = io_specs(loaded.config)
    methods = [names.TOKEN_EMBEDDING, names.TEXT_DECODER] + ([names.VISION_ENCODER] if target.vision_in_pte else [])
    ops, sources = custom_ops(spec, Path(out))
    return pte_decoder_entry(
        root=Path(out), path=path, recipe=recipe.name, precision=target.precision, kernel_sources=sources,
        custom_ops=ops, methods=methods, inputs=inputs, outputs=outputs,
        weights={"scheme": target.weights, "group_size": target.group_size, "library": "torchao",
                 "calibration": weight_calibration_record(built, target), "embedding": target.embedding,
                 "embedding_table": embedding_table(spec, loaded.config)},
        kv_cache=kv_cache_block(loaded, spec, spec.attention), runner_metadata=metadata,
        quality_gate=decoder_gate(target, parity).to_dict(), parity=parity)
