"""The `executorch` decoder backend: one XNNPACK .pte in ExecuTorch's multimodal runner conventions
(export/decoder/pte.py), run here by ExecuTorch's Python runtime.

Its declarations are the recipe rules for `backend: executorch` decoder targets. Light to import:
the exporter and the runtime load inside the methods.
"""

from __future__ import annotations

from pathlib import Path

from edgevlm.backends.base import DecoderSupport
from edgevlm.export.decoder.kv_formats import FORMATS as KV_FORMATS
# token-embedding tables (export/quantized_modules.py); int8 / int4: ExecuTorch quantized kernels
EMBEDDINGS = ("fp32", "bf16", "int8", "int4")


class ExecuTorchDecoderBackend:
    name = "executorch"
    support = DecoderSupport(
        # No weight-only "4w": XNNPACK runs 4-bit weights only with int8 dynamic activations.
        weights=("fp32", "8da4w"),
        kv_formats=KV_FORMATS,
        # custom (the default): ExecuTorch's LLM ops + ours for INT4, cost grows with the context;
        # static: masked attention over the whole cache, no custom kernels for the app to link
        attention=("custom", "static"),
        embeddings=EMBEDDINGS,
        vision_in_artifact=True,
        refused_weights={"4w": (
            "the executorch decoder has no weight-only int4 (4w): XNNPACK runs 4-bit weights only with int8 "
            "dynamic activations, and ExecuTorch stored 4w as fp32 weights (an 8x larger .pte)",
            "use weights: 8da4w")},
    )

    def weight_plan(self, target, awq=None):
        from edgevlm.export.decoder.pte_artifact import decoder_spec

        return decoder_spec(target).weight_plan(awq)

    def export(self, loaded, recipe, target, out: Path, built, parity: dict, vision=None) -> dict:
        from edgevlm.export.decoder.pte_artifact import export_pte_target

        return export_pte_target(loaded, recipe, target, out, built, parity, vision)

    def open_session(self, root: Path, entry: dict):
        from edgevlm.export.decoder.session import PteDecoderSession

        return PteDecoderSession(root, entry)

    def verify(self, root: Path, entry: dict) -> list:
        return []  # a .pte has no I/O declared outside the program; parity runs it

    def describe_io(self, config, target) -> tuple[list[dict], list[dict]]:
        from edgevlm.export.decoder.pte_artifact import io_specs

        return io_specs(config)
