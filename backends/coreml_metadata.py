"""What a Core ML vision package says about itself: description, author, version, I/O descriptions and
`user_defined_metadata`, so an app (or another runtime's Core ML adapter) can size its buffers and
prompt placeholders from the package alone: tokens per slice, embedding width, max patches, the
preprocessing that made the inputs, and which model and toolchain wrote it.

Core ML's user-defined metadata is a string -> string map; lists are written as JSON. Every value
is a fact of the model, recipe or toolchain version, never a path or a time, so a re-export of the
same model is byte-identical (the package is normalised after saving, backends/coreml.py).
"""

from __future__ import annotations

import json
from importlib import metadata

from edgevlm.backends.base import VisionExportRequest

METADATA_PREFIX = "edgevlm."  # keeps these keys apart from coremltools' own com.github.apple.coremltools.*
INPUT_DESCRIPTIONS = {
    "pixel_values": "One image slice as a row of 14x14 patches in raster order, normalised with norm_mean/norm_std "
                    "and zero-padded to max_patches: float32 [batch, 3, patch_size, max_patches * patch_size]",
    "patch_mask": "1.0 for the slice's real patches, 0.0 for padding: float32 [batch, max_patches]",
    "position_ids": "Bucketed position of each patch in the num_patches_per_side^2 position table (row bucket * "
                    "num_patches_per_side + column bucket; 0 for padding): int32 [batch, max_patches]",
    "resampler_pos": "2D sincos position embedding of each patch for the resampler, computed on the host: "
                     "float32 [batch, max_patches, embedding_size]",
}
OUTPUT_DESCRIPTION = ("query_num LLM-width embeddings per slice; they replace the <unk> placeholders of the "
                      "slice's <image>/<slice> run in the prompt: float32 [batch, query_num, embedding_size]")


def edgevlm_version() -> str:
    try:
        return metadata.version("edgevlm")
    except metadata.PackageNotFoundError:
        return "unknown"


def package_metadata(request: VisionExportRequest, options: dict) -> dict[str, str]:
    """The user_defined_metadata entries (without the prefix): shapes from the request's own example
    and encoder, model and preprocessing facts from `request.model_facts` when the exporter gave them."""
    batch, max_patches = request.example["patch_mask"].shape
    resampler = request.encoder.resampler
    facts = {"query_num": resampler.num_queries, "embedding_size": resampler.embed_dim,
             "max_patches": max_patches, "batch": batch, "precision": request.precision,
             "compute_units": options["compute_units"], "compression": options["compression"],
             "attention_mask_value": request.encoder.mask_value, "edgevlm_version": edgevlm_version()}
    facts |= request.model_facts
    return {key: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            for key, value in sorted(facts.items())}


def describe_model(model, request: VisionExportRequest, options: dict) -> dict[str, str]:
    """Set the MLModel's description fields in place (before saving); returns the metadata written."""
    facts = package_metadata(request, options)
    name = f"MiniCPM-V {facts['model_version']}" if "model_version" in facts else "MiniCPM-V"
    model.short_description = (f"{name} vision encoder (SigLIP + perceiver resampler): one image slice of up to "
                               f"{facts['max_patches']} patches -> {facts['query_num']} embeddings of width "
                               f"{facts['embedding_size']} for the LLM. Exported by edgevlm.")
    model.author = f"edgevlm {facts['edgevlm_version']}"
    model.version = facts.get("model_version", "")
    for name, text in INPUT_DESCRIPTIONS.items():
        model.input_description[name] = text
    model.output_description["vision_embeds"] = OUTPUT_DESCRIPTION
    for key, value in facts.items():
        model.user_defined_metadata[METADATA_PREFIX + key] = value
    return facts
