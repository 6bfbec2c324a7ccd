"""Write a seeded random checkpoint in the official layout.

Tensors are generated one at a time from a per-key seed and written shard by shard, so even an
8B preset needs only about one shard of memory, and a key's values do not depend on shard size
or on which other keys exist.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import torch
from safetensors.torch import save_file

from edgevlm.checkpoint.layout import (INDEX_FILE, PREPROCESSOR_FILE, atomic_directory, expected_parameters,
                                       shard_name)
from edgevlm.config import MiniCPMVConfig
from edgevlm.progress import progress_bar
from edgevlm.tokenizer import write_tokenizer

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
NORM_MARKERS = ("norm", "ln_q", "ln_kv", "ln_post")


# config.json key marking a checkpoint whose weights are seeded random (`edgevlm checkpoint`); it is
# carried into an export's manifest with the rest of the config.
RANDOM_WEIGHTS_KEY = "edgevlm_random_weights"


def init_tensor(key: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Deterministic values for one parameter, by its name.

    Norm scales are 1 + noise and biases small noise (not exactly 1 / 0) so a test catches a
    loader or exporter that drops them.
    """
    gen = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % (2 ** 63))
    noise = torch.randn(shape, generator=gen)
    if key == "resampler.proj":
        return noise * shape[0] ** -0.5
    if key == "resampler.query":
        return (noise * 0.02).clamp(-0.04, 0.04)
    if any(m in key for m in NORM_MARKERS) and key.endswith(".weight"):
        return 1.0 + 0.02 * noise
    return 0.02 * noise


def write_checkpoint(config: MiniCPMVConfig, out_dir: Path, seed: int = 0, dtype: str = "float32",
                     shard_bytes: int = 2 * 1024 ** 3, overwrite: bool = False, show_progress: bool = True,
                     state_dict: dict[str, torch.Tensor] | None = None, tokenizer_lines: tuple[str, ...] = ()) -> Path:
    """Write config.json, sharded safetensors + index, tokenizer and processor files to out_dir.

    Weights are seeded random unless `state_dict` (a trained model's, official key names) is given;
    `tokenizer_lines` extend the generated tokenizer's corpus (they must match what training used).
    """
    if state_dict is not None:
        from edgevlm.checkpoint.loader import check_keys

        check_keys(config, {k: tuple(v.shape) for k, v in state_dict.items()}, Path("<state_dict>"))
    torch_dtype = DTYPES[dtype]
    params = expected_parameters(config)
    itemsize = torch.empty((), dtype=torch_dtype).element_size()
    shards: list[list[str]] = [[]]
    size = 0
    for key, (shape, _) in params.items():
        nbytes = itemsize * _numel(shape)
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes

    out_dir = Path(out_dir)
    with atomic_directory(out_dir, overwrite=overwrite, kind="checkpoint") as tmp:
        weight_map, total = {}, 0
        with progress_bar(total=sum(_numel(s) for s, _ in params.values()), description="writing weights",
                          enabled=show_progress) as advance:
            for i, keys in enumerate(shards, start=1):
                name = shard_name(i, len(shards))
                tensors = {k: (init_tensor(k, params[k][0], seed) if state_dict is None else state_dict[k].detach())
                           .to(torch_dtype).contiguous() for k in keys}
                save_file(tensors, str(tmp / name), metadata={"format": "pt"})
                for k, t in tensors.items():
                    weight_map[k] = name
                    total += t.numel() * itemsize
                advance(sum(t.numel() for t in tensors.values()))
                del tensors
        (tmp / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                                 indent=2, sort_keys=True) + "\n")
        config.extra = {k: v for k, v in config.extra.items() if k != RANDOM_WEIGHTS_KEY} | {"torch_dtype": dtype}
        if state_dict is None:  # so every tool can say that what this model writes is meaningless
            config.extra[RANDOM_WEIGHTS_KEY] = {"seed": seed}
        config.save(tmp / "config.json")
        write_tokenizer(tmp, config.llm.arch, config.llm.vocab_size, tokenizer_lines)
        _write_processor_files(tmp, config)
    return out_dir


def _write_processor_files(out: Path, config: MiniCPMVConfig) -> None:
    processor = {
        "image_processor_type": "MiniCPMVImageProcessor",
        "auto_map": {"AutoImageProcessor": "image_processing_minicpmv.MiniCPMVImageProcessor",
                     "AutoProcessor": "processing_minicpmv.MiniCPMVProcessor"},
        "processor_class": "MiniCPMVProcessor",
        "max_slice_nums": config.slice_config.max_slice_nums,
        "scale_resolution": config.slice_config.scale_resolution,
        "patch_size": config.slice_config.patch_size,
        "use_image_id": config.use_image_id,
        "image_feature_size": config.query_num,
        "im_start": "<image>", "im_end": "</image>", "slice_start": "<slice>", "slice_end": "</slice>",
        "unk": "<unk>", "im_id_start": "<image_id>", "im_id_end": "</image_id>",
        "slice_mode": config.slice_mode,
        "norm_mean": [0.5, 0.5, 0.5], "norm_std": [0.5, 0.5, 0.5],
        "version": float(config.version),
    }
    (out / PREPROCESSOR_FILE).write_text(json.dumps(processor, indent=2) + "\n")
    generation = {k: v for k, v in {"bos_token_id": config.llm.bos_token_id,
                                    "eos_token_id": config.llm.eos_token_id}.items() if v is not None}
    (out / "generation_config.json").write_text(json.dumps({**generation, "do_sample": False}, indent=2) + "\n")


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
