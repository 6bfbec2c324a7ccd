"""Method and metadata names of ExecuTorch's LLM runners (the conventions a decoder .pte follows).

One spelling for the exporter, the sessions, `verify`, the profilers and the benchmarks. The ONNX
decoder uses the same method names for its two graphs (manifest `graphs.<name>`) and the same
metadata keys in the manifest's `runner_metadata`.
"""

# methods: the multimodal runner (ExecuTorch's LLaVA export) and the text runner
TOKEN_EMBEDDING = "token_embedding"  # tokens int64 [1, T] -> embeddings [1, T, D]
TEXT_DECODER = "text_decoder"  # (embeddings [1, T, D], input_pos int64 [1]) -> logits [1, V]
VISION_ENCODER = "vision_encoder"  # the static vision contract of export/vision.py -> [1, Q, D]
TEXT_FORWARD = "forward"  # the text runner: (tokens, input_pos) -> logits

# constant methods the runners read (each a method returning one value)
MAX_SEQ_LEN = "get_max_seq_len"
MAX_CONTEXT_LEN = "get_max_context_len"
VOCAB_SIZE = "get_vocab_size"
N_LAYERS = "get_n_layers"
BOS_ID = "get_bos_id"
EOS_IDS = "get_eos_ids"
USE_KV_CACHE = "use_kv_cache"
USE_SDPA_WITH_KV_CACHE = "use_sdpa_with_kv_cache"
ENABLE_DYNAMIC_SHAPE = "enable_dynamic_shape"
# ours: the KV-cache format, so a harness can tell caches apart without the manifest
KV_CACHE_FORMAT = "get_kv_cache_format"
KV_CACHE_BITS = "get_kv_cache_bits"
KV_CACHE_GROUP_SIZE = "get_kv_cache_group_size"
