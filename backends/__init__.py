"""Backend converters (Core ML, QNN HTP via ONNX Runtime, ONNX Runtime EPs, ExecuTorch), each
imported lazily so a missing SDK never breaks the rest (installed as `edgevlm.backends`)."""
