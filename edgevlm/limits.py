"""Limits checked before any work: what a config, a recipe value, a manifest or an image may ask
edgevlm to allocate or parse. Each limit is a named constant; the ones a user may need to raise
are read from the environment.

A model config is checked field by field (types from the config dataclasses, ranges below), for
consistency (heads divide widths), and by the bytes its parameters would take as float32
(what `load_model` allocates), all from config.json alone: nothing is built first, so
`num_hidden_layers: 1000000` is refused in milliseconds instead of building for minutes.
"""

from __future__ import annotations

import os

from edgevlm.errors import ConfigError, LimitExceeded

# ---- model configs -------------------------------------------------------------------------------
# Real MiniCPM-V models are at most ~9B parameters (36 GB as float32), 40 layers, 152k vocab.
MAX_MODEL_BYTES = int(float(os.environ.get("EDGEVLM_MAX_MODEL_GB", "128")) * 2 ** 30)
LLM_RANGES = {
    "hidden_size": (1, 65536), "intermediate_size": (1, 262144), "num_hidden_layers": (1, 512),
    "num_attention_heads": (1, 1024), "num_key_value_heads": (1, 1024), "vocab_size": (1, 1 << 22),
    "head_dim": (1, 4096), "max_position_embeddings": (1, 1 << 22), "dim_model_base": (1, 65536),
    "rms_norm_eps": (1e-12, 1), "rope_theta": (1, 1e12), "scale_emb": (1e-6, 1e6), "scale_depth": (1e-6, 1e6),
    "bos_token_id": (0, 1 << 22), "pad_token_id": (-1, 1 << 22),
}
VISION_RANGES = {
    "hidden_size": (1, 65536), "intermediate_size": (1, 262144), "num_hidden_layers": (1, 256),
    "num_attention_heads": (1, 1024), "image_size": (1, 65536), "patch_size": (1, 1024), "num_channels": (1, 64),
    "layer_norm_eps": (1e-12, 1),
}
SLICE_RANGES = {"max_slice_nums": (1, 64), "patch_size": (1, 1024), "scale_resolution": (1, 16384)}
TOP_RANGES = {"query_num": (1, 4096), "image_size": (1, 65536), "patch_size": (1, 1024),
              "vision_batch_size": (1, 4096)}

# ---- recipes, manifests, images ------------------------------------------------------------------
MAX_RECIPE_BYTES = 1 << 20  # built-in recipes are ~1 KB
MAX_YAML_DEPTH = 32
MAX_MANIFEST_BYTES = int(float(os.environ.get("EDGEVLM_MAX_MANIFEST_MB", "32")) * 2 ** 20)  # tiny: ~60 KB
MAX_JSON_DEPTH = 64
MAX_TENSOR_BYTES = 64 << 30  # one I/O tensor a manifest declares (a 4K-token fp32 KV cache of 8B: 1 GB)
# A decoded image budget, checked from the file header before any pixel is decoded. 2^28 pixels
# (16384^2) covers 200-megapixel phone photos; a 100000x100000 PNG would take minutes to reduce.
MAX_IMAGE_PIXELS = int(float(os.environ.get("EDGEVLM_MAX_IMAGE_PIXELS", str(1 << 28))))


def config_problems(data: dict, source: str) -> list[str]:
    """Types and ranges of every field config.json sets that edgevlm reads."""
    from edgevlm.config import LLMConfig, MiniCPMVConfig, SliceConfig, VisionConfig
    from edgevlm.typed import field_problems

    # version is normalized on its own (2.6, "2.6", 4 all name one); the sections are checked below
    top = {k: v for k, v in data.items() if k not in ("version", "arch", "vision_config", "slice_config", "llm", "extra")}
    problems = field_problems(LLMConfig, top, source, LLM_RANGES)
    problems += field_problems(MiniCPMVConfig, top, source, TOP_RANGES)
    for key, kind, ranges in (("vision_config", VisionConfig, VISION_RANGES), ("slice_config", SliceConfig,
                                                                               SLICE_RANGES)):
        section = data.get(key)
        if section is None:
            continue
        if not isinstance(section, dict):
            problems.append(f"{source}.{key} is a {type(section).__name__}; expected a mapping")
        else:
            problems += field_problems(kind, section, f"{source}.{key}", ranges)
    eos = data.get("eos_token_id")
    if isinstance(eos, list) and len(eos) > 64:
        problems.append(f"{source}.eos_token_id lists {len(eos)} ids; expected at most 64")
    return problems


def check_config_data(data: dict, source: str) -> None:
    """Refuse a config.json whose fields have the wrong type or range (before the tree is built)."""
    problems = config_problems(data, source)
    if problems:
        raise ConfigError(f"{source} has {len(problems)} invalid field(s):\n  " + "\n  ".join(problems[:12]),
                          "use the config.json that came with the checkpoint (numbers unquoted, counts positive)")


def check_config(config) -> None:
    """Consistency of a typed config, then the bytes its parameters would take (float32)."""
    v, llm = config.vision_config, config.llm
    problems = []
    if v.hidden_size % v.num_attention_heads:
        problems.append(f"vision_config.hidden_size {v.hidden_size} is not a multiple of its "
                        f"num_attention_heads {v.num_attention_heads}")
    if v.image_size < v.patch_size:
        problems.append(f"vision_config.image_size {v.image_size} is smaller than its patch_size {v.patch_size}")
    if llm.head_dim is None and llm.hidden_size % llm.num_attention_heads:
        problems.append(f"hidden_size {llm.hidden_size} is not a multiple of num_attention_heads "
                        f"{llm.num_attention_heads} (and no head_dim is given)")
    if llm.num_attention_heads % llm.num_key_value_heads:
        problems.append(f"num_attention_heads {llm.num_attention_heads} is not a multiple of num_key_value_heads "
                        f"{llm.num_key_value_heads}")
    if llm.hidden_size < 128 or llm.hidden_size % (llm.hidden_size // 128):
        problems.append(f"hidden_size {llm.hidden_size}: the resampler needs a width of at least 128 that its "
                        f"{max(1, llm.hidden_size // 128)} heads (width // 128) divide")
    eos = llm.eos_token_id if isinstance(llm.eos_token_id, list) else [llm.eos_token_id]
    if any(e is not None and not 0 <= e < llm.vocab_size for e in eos):
        problems.append(f"eos_token_id {llm.eos_token_id} is outside the vocabulary (vocab_size {llm.vocab_size})")
    if problems:
        raise ConfigError("config.json is inconsistent:\n  " + "\n  ".join(problems),
                          "use the config.json that came with the checkpoint")
    need = parameter_count(config) * 4
    if need > MAX_MODEL_BYTES:
        raise LimitExceeded(
            f"config.json describes a model of ~{parameter_count(config) / 1e9:.3g}B parameters "
            f"({llm.num_hidden_layers} LLM layers of width {llm.hidden_size}, {v.num_hidden_layers} vision layers): "
            f"{need / 2 ** 30:.1f} GiB as float32, above the {MAX_MODEL_BYTES / 2 ** 30:.0f} GiB limit",
            "check num_hidden_layers / hidden_size / vocab_size in config.json; a genuinely larger model needs "
            "EDGEVLM_MAX_MODEL_GB raised")


def parameter_count(config) -> int:
    """Parameters the model would hold, from the config alone (within ~1% of the built model)."""
    v, llm, d = config.vision_config, config.llm, config.llm.hidden_size
    h, hd = v.hidden_size, llm.resolved_head_dim
    vision = (v.num_channels * v.patch_size ** 2 * h + h + v.num_patches_per_side ** 2 * h
              + v.num_hidden_layers * (4 * (h * h + h) + 2 * h * v.intermediate_size + v.intermediate_size + 5 * h)
              + 2 * h)
    resampler = config.query_num * d + h * d + 4 * (d * d + d) + 6 * d + d * d
    attention = d * hd * (2 * llm.num_attention_heads + 2 * llm.num_key_value_heads)
    layer = attention + 3 * d * llm.intermediate_size + 2 * d + 4 * hd
    embeddings = llm.vocab_size * d * (1 if llm.tie_word_embeddings else 2)
    return vision + resampler + llm.num_hidden_layers * layer + embeddings + d
