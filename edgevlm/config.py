"""Typed model configuration, read from and written to the official `config.json` layout.

Official MiniCPM-V checkpoints keep the LLM fields at the top level of config.json, the vision
tower under `vision_config`, and slicing under `slice_config`. We parse that into one typed tree
(`MiniCPMVConfig`) and write it back with the same field names, so a checkpoint we write is
indistinguishable in layout from an official one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevlm.errors import ConfigError

# version -> LLM backbone family. The version field is a float in official configs (2.5, 2.6, 4.0, 4.5).
LLM_ARCH_BY_VERSION = {"2.5": "llama", "2.6": "qwen2", "4.0": "minicpm", "4.5": "qwen3"}
SUPPORTED_VERSIONS = tuple(LLM_ARCH_BY_VERSION)


def normalize_version(raw: Any) -> str:
    """'2.6', 2.6, 4 and 4.0 all name a version; returns the canonical 'X.Y' string."""
    if raw is None:
        raise ConfigError(
            "config.json has no `version` field, so the MiniCPM-V generation is unknown",
            f"add \"version\": one of {', '.join(SUPPORTED_VERSIONS)} to config.json",
        )
    try:
        text = f"{float(raw):.1f}"
    except (TypeError, ValueError):
        raise ConfigError(f"config.json `version` is {raw!r}, not a number",
                          f"use one of {', '.join(SUPPORTED_VERSIONS)}") from None
    if text not in LLM_ARCH_BY_VERSION:
        raise ConfigError(
            f"MiniCPM-V version {text} is not supported",
            f"supported versions: {', '.join(SUPPORTED_VERSIONS)}",
        )
    return text


@dataclass
class VisionConfig:
    """SigLIP / SigLIP2 NaViT vision tower (`vpm.*`)."""

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 27
    num_attention_heads: int = 16
    image_size: int = 980  # position table covers image_size // patch_size = 70 buckets per side
    patch_size: int = 14
    num_channels: int = 3
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu_pytorch_tanh"
    model_type: str = "siglip_vision_model"

    @property
    def num_patches_per_side(self) -> int:
        return self.image_size // self.patch_size

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass
class SliceConfig:
    """LLaVA-UHD slicing parameters (`slice_config` in config.json)."""

    max_slice_nums: int = 9
    patch_size: int = 14
    scale_resolution: int = 448


@dataclass
class LLMConfig:
    """Decoder fields; official configs keep these at the top level of config.json."""

    arch: str  # llama | qwen2 | qwen3 | minicpm (derived from the version, never written)
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    head_dim: int | None = None
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # Qwen2 has q/k/v biases; derived from arch when absent
    hidden_act: str = "silu"
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    # MiniCPM4 muP scaling: embeddings * scale_emb, residual branches * scale_depth/sqrt(L),
    # final hidden / (hidden_size / dim_model_base) before lm_head.
    scale_emb: float | None = None
    scale_depth: float | None = None
    dim_model_base: int | None = None

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads


# Top-level config.json keys that belong to the LLM.
_LLM_KEYS = tuple(f.name for f in dataclasses.fields(LLMConfig) if f.name != "arch")


@dataclass
class MiniCPMVConfig:
    version: str
    llm: LLMConfig
    vision_config: VisionConfig = field(default_factory=VisionConfig)
    slice_config: SliceConfig = field(default_factory=SliceConfig)
    query_num: int = 64
    image_size: int = 448
    patch_size: int = 14
    slice_mode: bool = True
    use_image_id: bool = True
    drop_vision_last_layer: bool = False
    batch_vision_input: bool = True
    vision_batch_size: int = 16
    # Extra top-level fields we do not interpret but must round-trip (auto_map, _name_or_path...).
    extra: dict = field(default_factory=dict)

    @property
    def resampler_heads(self) -> int:
        return self.llm.hidden_size // 128

    @property
    def has_temporal_resampler(self) -> bool:
        """4.5's "3D" resampler adds temporal sincos embeddings for video frames."""
        return self.version == "4.5"

    @property
    def num_vision_layers_used(self) -> int:
        n = self.vision_config.num_hidden_layers
        return n - 1 if self.drop_vision_last_layer else n

    # ---- config.json I/O -------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict, source: str = "config.json") -> "MiniCPMVConfig":
        from edgevlm.limits import check_config, check_config_data
        from edgevlm.typed import with_floats

        version = normalize_version(data.get("version"))
        arch = LLM_ARCH_BY_VERSION[version]
        check_config_data(data, source)  # types and ranges, before anything is built from them
        missing = [k for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                               "num_attention_heads", "vocab_size") if k not in data]
        if missing:
            raise ConfigError(f"{source} lacks LLM fields: {', '.join(missing)}",
                              "use the config.json that came with the checkpoint")
        llm_fields = {k: data[k] for k in _LLM_KEYS if k in data}
        llm_fields.setdefault("num_key_value_heads", data["num_attention_heads"])
        if "attention_bias" not in data:
            llm_fields["attention_bias"] = arch == "qwen2"
        if arch == "minicpm":
            for k in ("scale_emb", "scale_depth", "dim_model_base"):
                if llm_fields.get(k) is None:
                    raise ConfigError(f"{source} is a MiniCPM4 (version 4.0) config without `{k}`",
                                      "MiniCPM4 needs its muP fields scale_emb, scale_depth, dim_model_base")
        llm = LLMConfig(arch=arch, **with_floats(LLMConfig, llm_fields))
        vision_raw = with_floats(VisionConfig, dict(data.get("vision_config") or {}))
        vision = _build(VisionConfig, vision_raw, f"{source}: vision_config")
        slice_raw = {k: v for k, v in (data.get("slice_config") or {}).items() if k != "model_type"}
        slicing = _build(SliceConfig, slice_raw, f"{source}: slice_config")
        own = {"query_num", "image_size", "patch_size", "slice_mode", "use_image_id",
               "drop_vision_last_layer", "batch_vision_input", "vision_batch_size"}
        known = own | set(_LLM_KEYS) | {"version", "vision_config", "slice_config"}
        config = cls(
            version=version, llm=llm, vision_config=vision, slice_config=slicing,
            **{k: data[k] for k in own if k in data},
            extra={k: v for k, v in data.items() if k not in known},
        )
        check_config(config)  # consistency, and the bytes its parameters would take
        return config

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "architectures": ["MiniCPMV"],
            "model_type": "minicpmv",
            **self.extra,
        }
        llm = dataclasses.asdict(self.llm)
        llm.pop("arch")
        out.update({k: v for k, v in llm.items() if v is not None})
        out.update({
            "version": float(self.version),
            "query_num": self.query_num,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "slice_mode": self.slice_mode,
            "use_image_id": self.use_image_id,
            "drop_vision_last_layer": self.drop_vision_last_layer,
            "batch_vision_input": self.batch_vision_input,
            "vision_batch_size": self.vision_batch_size,
            "slice_config": {**dataclasses.asdict(self.slice_config), "model_type": "minicpmv"},
            "vision_config": dataclasses.asdict(self.vision_config),
        })
        return out

    @classmethod
    def from_file(cls, path: Path) -> "MiniCPMVConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no config.json at {path}",
                              "point --model at a checkpoint directory in the Hugging Face layout "
                              "(or write one with `edgevlm checkpoint --preset NAME --out DIR`)")
        from edgevlm.jsonfiles import read_json_object

        data = read_json_object(path, "model config", ConfigError, max_bytes=16 << 20,
                                fix="restore the checkpoint's config.json")
        return cls.from_dict(data, source=str(path))

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def _build(kind, raw: dict, where: str):
    names = {f.name for f in dataclasses.fields(kind)}
    # Unknown sub-fields are tolerated (official configs carry e.g. `_attn_implementation`).
    try:
        return kind(**{k: v for k, v in raw.items() if k in names})
    except TypeError as e:
        raise ConfigError(f"{where} is malformed ({e})", "restore the checkpoint's config.json") from None
