"""The `ort` decoder backend: text_decoder + token_embedding .onnx graphs for ONNX Runtime's CPU EP,
the KV cache as graph I/O (export/decoder/onnx_graph.py, export/decoder/stateless.py).

Its declarations are the recipe rules for `backend: ort` decoder targets. Light to import: the
exporter and onnxruntime load inside the methods.
"""

from __future__ import annotations

from pathlib import Path

from edgevlm.backends.base import DecoderSupport
from edgevlm.backends.executorch_decoder import KV_FORMATS

EMBEDDINGS = ("fp32", "bf16", "int8")  # token_embedding graph tables (no int4 Gather form here)


class OrtDecoderBackend:
    name = "ort"
    support = DecoderSupport(
        weights=("fp32", "int4"),  # int4: block-wise, MatMulNBits layout
        kv_formats=KV_FORMATS,
        attention=("static",),  # the cache is graph I/O: masked attention over all of it
        embeddings=EMBEDDINGS,
        # matmulnbits: the contrib op, fastest on ORT CPU; qdq: standard opset-21 DequantizeLinear + MatMul
        weight_formats=("matmulnbits", "qdq"),
        # accuracy_level 4: int8 activations inside MatMulNBits (the fastest measured; None = fp32)
        options={"symmetric": False, "accuracy_level": 4, "weight_format": "matmulnbits"},
    )

    def weight_plan(self, target, awq=None):
        from edgevlm.export.decoder.onnx_artifact import onnx_spec
        from edgevlm.export.decoder.onnx_graph import weight_plan

        return weight_plan(onnx_spec(target), awq)

    def export(self, loaded, recipe, target, out: Path, built, parity: dict, vision=None) -> dict:
        from edgevlm.export.decoder.onnx_artifact import export_onnx_decoder_target

        return export_onnx_decoder_target(loaded, recipe, target, out, built, parity)

    def open_session(self, root: Path, entry: dict):
        from edgevlm.export.decoder.session import OrtDecoderSession

        return OrtDecoderSession(root, entry)

    def verify(self, root: Path, entry: dict) -> list:
        """Each graph's declared I/O against the manifest's."""
        from edgevlm.export.decoder.onnx_graph import session
        from edgevlm.export.decoder.verify import io_contract

        return [io_contract(graph, session(Path(root) / graph["file"])) for graph in entry["graphs"].values()]

    def describe_io(self, config, target) -> tuple[list[dict], list[dict]]:
        from edgevlm.export.decoder.onnx_artifact import graph_io, onnx_spec

        return graph_io(config, onnx_spec(target))
