"""Readers for older manifest versions: a manifest of a known older `schema_version` is upgraded in
memory to the current one, so artifact folders written by an earlier edgevlm still verify and run.
The file on disk is never rewritten (its bytes may be hashed or signed by whoever shipped it).

Version 1 -> 2:
- the top-level `kv_cache` (a copy of the *last* decoder's block, null without a decoder) is
  dropped: every decoder artifact carries its own block, and readers use that one;
- the fields a version-1 decoder block may lack (written before they existed) are filled where
  they follow from the others: `bits` from `format`, `attention` "static" (the only mode before
  ExecuTorch's custom attention), `rotation_block` from `head_dim` (the largest power of two
  dividing it, kv_cache.rotation_block) when keys are rotated, else null; `quantization` null for
  float caches.
Anything else is left as it was, and the upgraded manifest is checked against the current schema
like a new one.
"""

from __future__ import annotations

import copy

BITS = {"fp32": 32, "fp16": 16, "int8": 8, "int4": 4}


def upgrade_v1(manifest: dict) -> dict:
    """A version-1 manifest as version 2 (a copy; tolerant of any shape: the schema judges the result)."""
    upgraded = copy.deepcopy(manifest)
    upgraded.pop("kv_cache", None)
    upgraded["schema_version"] = 2
    artifacts = upgraded.get("artifacts")
    for artifact in artifacts if isinstance(artifacts, list) else ():
        cache = artifact.get("kv_cache") if isinstance(artifact, dict) else None
        if isinstance(cache, dict) and artifact.get("part") == "decoder":
            _fill_kv_cache(cache)
    return upgraded


def _fill_kv_cache(cache: dict) -> None:
    fmt = cache.get("format")
    if fmt in BITS:
        cache.setdefault("bits", BITS[fmt])
    cache.setdefault("attention", "static")
    head_dim, quantized = cache.get("head_dim"), fmt in ("int8", "int4")
    if "rotation_block" not in cache and isinstance(head_dim, int) and head_dim > 0:
        cache["rotation_block"] = head_dim & -head_dim if quantized and cache.get("rotate_keys") else None
    if not quantized:
        cache.setdefault("quantization", None)


# version -> upgrade to the next version; read_manifest applies them in order
UPGRADES = {1: upgrade_v1}
