"""KV-cache storage format names, torch-free: the backends' declarations and the CLI read them
without loading torch. The order is part of the .pte (its get_kv_cache_format codes)."""

FORMATS = ("fp32", "fp16", "int8", "int4")
