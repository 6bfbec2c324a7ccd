"""Per-layer SQNR of an ONNX vision artifact against the float encoder it was exported from.

Where quantization noise enters and how it grows through the SigLIP layers is what a user needs
to pick a layer to keep at 16 bits (calibration/layered.py). Stage outputs are found by the
exporter's name-scope metadata (`pkg.torch.onnx.name_scopes`, kept through onnxruntime's QDQ
quantizer and fp16 conversion): the last node whose innermost module is `vpm.embeddings`,
`vpm.encoder.layers.<i>` (the residual add) or `vpm.post_layernorm`. Those tensors are added as
graph outputs and run on the CPU EP (where a rewrite such as QNN's layernorm fusion dropped the
metadata, a fresh float export of the same encoder supplies the names, which quantizers keep); the float StaticVisionEncoder gives the reference through
forward hooks on the same padded inputs. Only real (unpadded) patch rows are compared.

Runs on: ort fp16/int8 `.onnx` and the QNN recipe's `.qdq.onnx` (the quantization grid the HTP
runs, on CPU kernels). A Core ML program or a compiled QNN context binary has no such names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgevlm.calibration.layered import module_path

ONNX_SUFFIXES = (".onnx",)


def stage_scopes(layers: int) -> list[str]:
    return ["vpm.embeddings"] + [f"vpm.encoder.layers.{i}" for i in range(layers)] + ["vpm.post_layernorm"]


def stage_tensors(model, scopes: list[str]) -> dict[str, str]:
    """scope -> name of the tensor its last node writes (graph order is topological)."""
    found = {}
    for node in model.graph.node:
        scope = module_path(node)
        if scope in scopes and node.op_type not in ("QuantizeLinear", "DequantizeLinear", "Cast"):
            found[scope] = node.output[0]
    return found


def reexported_stage_tensors(encoder, example: dict, scopes: list[str]) -> dict[str, str]:
    """Stage tensor names from a fresh float export of the same encoder: the exporter names tensors
    deterministically, and quantizers keep the names of the tensors they wrap in Q/DQ pairs."""
    import tempfile

    import onnx

    from edgevlm.backends.onnx_export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(encoder, example, Path(tmp) / "float.onnx")
        return stage_tensors(onnx.load(str(path), load_external_data=False), scopes)


def _with_outputs(model, names: list[str]):
    import onnx

    types = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.value_info) + list(model.graph.output)}
    if any(n not in types for n in names):
        inferred = onnx.shape_inference.infer_shapes(model)
        types |= {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    existing = {o.name for o in model.graph.output}
    for name in names:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name, 1), None))
    return model


def layer_sqnr(loaded, artifact_path: Path, artifact: dict, batches: list, mask_value: float) -> dict:
    """SQNR (dB) per stage over `batches` (export/vision.VisionInputs of single real slices)."""
    import onnx
    import onnxruntime as ort

    from edgevlm.export.vision import INPUT_NAMES, OUTPUT_NAMES, StaticVisionEncoder

    model = onnx.load(str(artifact_path))
    scopes = stage_scopes(len(loaded.model.vpm.encoder.layers))
    encoder = StaticVisionEncoder(loaded.model.vpm, loaded.model.resampler, mask_value).eval()
    tensors = stage_tensors(model, scopes)
    if len(tensors) < len(scopes):  # rewritten graphs (QNN's layernorm fusion) lose the metadata, not the names
        tensors = reexported_stage_tensors(encoder, batches[0].arrays, scopes)
    produced = {o for node in model.graph.node for o in node.output}
    missing = [s for s in scopes if tensors.get(s) not in produced]
    if missing:
        return {"status": "not run", "reason": f"no stage tensor for {missing[:3]} in {artifact_path.name}"}
    names = [tensors[s] for s in scopes]
    session = ort.InferenceSession(_with_outputs(model, names).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    modules = [encoder.vpm.embeddings, *encoder.vpm.encoder.layers, encoder.vpm.post_layernorm]
    signal = np.zeros(len(scopes) + 1)
    noise = np.zeros(len(scopes) + 1)
    for batch in batches:
        captured = []
        hooks = [m.register_forward_hook(lambda mod, args, out: captured.append(out)) for m in modules]
        try:
            with torch.no_grad():
                final = encoder(*(torch.from_numpy(batch.arrays[n]) for n in INPUT_NAMES))
        finally:
            for h in hooks:
                h.remove()
        got = session.run(names + list(OUTPUT_NAMES), batch.arrays)
        real = int(batch.arrays["patch_mask"][0].sum())
        refs = [c[0, :real].numpy() for c in captured] + [final[0].numpy()]
        outs = [g[0, :real] for g in got[:-1]] + [got[-1][0]]
        for i, (ref, out) in enumerate(zip(refs, outs)):
            ref64 = ref.astype(np.float64)
            signal[i] += float(np.sum(ref64 ** 2))
            noise[i] += float(np.sum((ref64 - out.astype(np.float64)) ** 2))
    labels = [s.removeprefix("vpm.encoder.") for s in scopes] + ["output (resampler)"]
    # The SQNR of onnxruntime.quantization.qdq_loss_debug (compute_signal_to_quantization_noice_ratio:
    # 20 log10(|ref| / |ref - out|) over all batches; equal to 1e-13 dB on the tiny presets' ort
    # fp32/fp16/int8), summed as we go: its API takes every batch's activations at once, ~5 GB in
    # float64 for 8 slices of the full-size SigLIP's 29 stages.
    db = [float("inf") if n == 0 else float(10 * np.log10(s / n)) for s, n in zip(signal, noise)]
    return {"status": "ok", "slices": len(batches), "runtime": f"onnxruntime {ort.__version__} CPU EP",
            "stages": [{"stage": label, "tensor": name, "sqnr_db": value}
                       for label, name, value in zip(labels, names + list(OUTPUT_NAMES), db)]}


def onnx_view(root: Path, artifact: dict) -> Path | None:
    """The ONNX file whose per-layer outputs stand for this vision artifact, if there is one."""
    if artifact["target"] == "ort":
        return Path(root) / artifact["file"]
    if artifact["target"] == "qnn":
        qdq = Path(root) / artifact["file"].replace(".onnx", ".qdq.onnx")
        return qdq if qdq.exists() else None
    return None
