"""The text decoder as exported: one export graph (graph.py: a single layer loop) with pluggable
attention strategies (static_attention.py, custom_ops_attention.py) and cache layouts (kv_cache.py,
stateless.py), and what the ExecuTorch (.pte) and ONNX Runtime (.onnx) decoder backends write,
run and check with it (backends/executorch_decoder.py, backends/ort_decoder.py).

Kept free of imports: `edgevlm.export.decoder.<module>` loads only what it names.
"""
