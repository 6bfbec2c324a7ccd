"""Named model configurations: the four MiniCPM-V generations at their real sizes, and `-tiny`
variants (same modules, a few MB) for tests and the default main job.

A registry: unknown names fail loudly with the list of known ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edgevlm.config import LLMConfig, MiniCPMVConfig, SliceConfig, VisionConfig
from edgevlm.errors import ConfigError

_AUTO_MAP = {
    "AutoConfig": "configuration_minicpm.MiniCPMVConfig",
    "AutoModel": "modeling_minicpmv.MiniCPMV",
    "AutoModelForCausalLM": "modeling_minicpmv.MiniCPMV",
}

SIGLIP_400M = VisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                           image_size=980, patch_size=14)
# Tiny tower keeps image_size 980 / patch 14 so position bucketing into the 70x70 table is the real one.
SIGLIP_TINY = VisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           image_size=980, patch_size=14)


def _longrope(head_dim: int, original: int) -> dict:
    # Structure of MiniCPM4's LongRoPE; the factor values here are smooth stand-ins, not the
    # official per-dimension numbers (random-weight presets do not need them).
    n = head_dim // 2
    return {"rope_type": "longrope", "original_max_position_embeddings": original,
            "short_factor": [round(1.0 + 0.02 * i, 4) for i in range(n)],
            "long_factor": [round(1.0 + 0.5 * i, 4) for i in range(n)]}


_LLMS = {
    # Llama-3-8B (MiniCPM-Llama3-V 2.5)
    "2.5": LLMConfig(arch="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, rms_norm_eps=1e-5,
                     rope_theta=500000.0, max_position_embeddings=8192, bos_token_id=128000,
                     eos_token_id=128001),
    # Qwen2-7B (MiniCPM-V 2.6)
    "2.6": LLMConfig(arch="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                     num_attention_heads=28, num_key_value_heads=4, vocab_size=151666, rms_norm_eps=1e-6,
                     rope_theta=1000000.0, max_position_embeddings=32768, attention_bias=True,
                     bos_token_id=151643, eos_token_id=151645),
    # MiniCPM4 3B class (MiniCPM-V 4.0): muP scaling fields as in the MiniCPM4 family.
    "4.0": LLMConfig(arch="minicpm", hidden_size=2560, intermediate_size=10240, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=2, vocab_size=73448, rms_norm_eps=1e-6,
                     rope_theta=10000.0, rope_scaling=_longrope(80, 32768), max_position_embeddings=32768,
                     scale_emb=12.0, scale_depth=1.4, dim_model_base=256, bos_token_id=1, eos_token_id=2),
    # Qwen3-8B (MiniCPM-V 4.5)
    "4.5": LLMConfig(arch="qwen3", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151748,
                     rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=40960,
                     bos_token_id=151643, eos_token_id=151645),
}


def _tiny_llm(real: LLMConfig) -> LLMConfig:
    """A few MB, but the real family's head dimension (128; MiniCPM4's 80), so every cache layout,
    kernel and recipe default a real model takes is exercised by the tiny presets."""
    if real.arch == "minicpm":  # 4 x 80
        shape = dict(hidden_size=320, num_attention_heads=4, num_key_value_heads=2, head_dim=None)
    elif real.arch == "qwen2":  # head_dim is hidden / heads: 2 x 128, one shared kv head
        shape = dict(hidden_size=256, num_attention_heads=2, num_key_value_heads=1, head_dim=None)
    else:  # Llama-3 / Qwen3 carry head_dim: 4 x 128 over a 256-wide model
        shape = dict(hidden_size=256, num_attention_heads=4, num_key_value_heads=2, head_dim=128)
    rope = _longrope(real.resolved_head_dim, 4096) if real.rope_scaling else None
    return dataclasses.replace(
        real, intermediate_size=512, num_hidden_layers=2, vocab_size=1024, max_position_embeddings=4096,
        rope_scaling=rope, bos_token_id=None, eos_token_id=None, **shape)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    config: MiniCPMVConfig
    dtype: str  # weights dtype written to disk

    def build_config(self) -> MiniCPMVConfig:
        return dataclasses.replace(self.config, llm=dataclasses.replace(self.config.llm),
                                   extra=dict(self.config.extra))


def _preset(version: str, tiny: bool, description: str) -> Preset:
    llm = _tiny_llm(_LLMS[version]) if tiny else _LLMS[version]
    config = MiniCPMVConfig(
        version=version, llm=llm, vision_config=SIGLIP_TINY if tiny else SIGLIP_400M,
        slice_config=SliceConfig(max_slice_nums=9, patch_size=14, scale_resolution=448),
        # 2.5 resamples each slice to 96 queries; later generations to 64.
        query_num=96 if version == "2.5" else 64,
        use_image_id=version != "2.5",
        extra={"auto_map": dict(_AUTO_MAP), "torch_dtype": "float32" if tiny else "bfloat16"},
    )
    name = f"minicpmv-{version}" + ("-tiny" if tiny else "")
    return Preset(name, description, config, "float32" if tiny else "bfloat16")


PRESETS: dict[str, Preset] = {}
for _version, _desc in [("2.5", "MiniCPM-Llama3-V 2.5: SigLIP-400M + Llama-3-8B"),
                        ("2.6", "MiniCPM-V 2.6: SigLIP-400M + Qwen2-7B"),
                        ("4.0", "MiniCPM-V 4.0: SigLIP2-400M + MiniCPM4 (3B class)"),
                        ("4.5", "MiniCPM-V 4.5: SigLIP2-400M + 3D resampler + Qwen3-8B")]:
    for _tiny in (False, True):
        _p = _preset(_version, _tiny, _desc + (" (tiny: same modules, a few MB, random weights)" if _tiny else ""))
        PRESETS[_p.name] = _p


# Real SigLIP-400M and resampler (output width 3584) over a 1-layer LLM: exports and benchmarks the
# full-size vision encoder without writing an 8B checkpoint.
_vision_full = _preset("2.6", False, "")
_vision_full_llm = dataclasses.replace(_vision_full.config.llm, num_hidden_layers=1, intermediate_size=512,
                                       vocab_size=1024, bos_token_id=None, eos_token_id=None)
PRESETS["minicpmv-2.6-vision-full"] = Preset(
    "minicpmv-2.6-vision-full", "MiniCPM-V 2.6 vision at full size (SigLIP-400M + resampler to 3584) over a 1-layer "
    "LLM: for full-size vision-encoder export and benchmarks",
    dataclasses.replace(_vision_full.config, llm=_vision_full_llm), "float32")


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}", f"known presets: {', '.join(PRESETS)}") from None


# edgevlm-tiny: the quality oracle trained on synthetic VQA by `edgevlm train-oracle` (MiniCPM-V 2.6
# modules: SigLIP NaViT + resampler + Qwen2). Small slices (112 px, up to 4 per image) and 16
# queries per slice keep CPU training within about 30 minutes while slicing still varies.
_ORACLE_VISION = VisionConfig(hidden_size=128, intermediate_size=384, num_hidden_layers=3, num_attention_heads=4,
                              image_size=980, patch_size=14)
_ORACLE_LLM = dataclasses.replace(_LLMS["2.6"], hidden_size=256, intermediate_size=640, num_hidden_layers=3,
                                  num_attention_heads=4, num_key_value_heads=2, vocab_size=1024,
                                  max_position_embeddings=1024, bos_token_id=None, eos_token_id=None)
PRESETS["edgevlm-tiny"] = Preset(
    "edgevlm-tiny", "edgevlm's quality oracle: MiniCPM-V 2.6 modules at 4.2M parameters, trained on synthetic VQA "
    "(`edgevlm train-oracle`)",
    MiniCPMVConfig(version="2.6", llm=_ORACLE_LLM, vision_config=_ORACLE_VISION,
                   slice_config=SliceConfig(max_slice_nums=4, patch_size=14, scale_resolution=112),
                   query_num=16, use_image_id=True,
                   extra={"auto_map": dict(_AUTO_MAP), "torch_dtype": "float16"}),
    "float16")


# Qwen2.5-0.5B / -1.5B shaped LLMs (MiniCPM-V 2.6 layout, Qwen2 family) under the tiny vision tower:
# decoder benchmarks at phone-class sizes without writing a full 8B checkpoint.
def _qwen25_llm(hidden: int, layers: int, heads: int, intermediate: int) -> LLMConfig:
    return dataclasses.replace(_LLMS["2.6"], hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                               num_key_value_heads=2, intermediate_size=intermediate, vocab_size=151936,
                               tie_word_embeddings=True)


for _name, _llm, _desc in [
        ("minicpmv-2.6-llm0.5b", _qwen25_llm(896, 24, 14, 4864), "Qwen2.5-0.5B-shaped LLM"),
        ("minicpmv-2.6-llm1.5b", _qwen25_llm(1536, 28, 12, 8960), "Qwen2.5-1.5B-shaped LLM")]:
    _base = _preset("2.6", True, "")
    PRESETS[_name] = Preset(_name, f"MiniCPM-V 2.6 layout: tiny vision tower + {_desc} (random weights): decoder "
                                   "benchmarks at phone-class sizes",
                            dataclasses.replace(_base.config, llm=_llm), "bfloat16")
