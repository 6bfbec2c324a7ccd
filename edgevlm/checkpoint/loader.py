"""Load a MiniCPM-V checkpoint directory (official layout) into the reference model.

The model is built on the meta device and each tensor is read from its safetensors shard and
assigned in place, in the requested dtype: peak memory is the model plus one tensor, never
twice the checkpoint. Every way a directory can be wrong gets an error naming the file and fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from edgevlm.checkpoint.layout import (INDEX_FILE, PREPROCESSOR_FILE, SINGLE_FILE, build_on_meta,
                                       expected_parameters, tied_keys)
from edgevlm.checkpoint.writer import DTYPES
from edgevlm.config import MiniCPMVConfig
from edgevlm.errors import CheckpointError, ConfigError
from edgevlm.jsonfiles import read_json_object
from edgevlm.safety import check_dtypes, check_weight_map, read_processor_config
from edgevlm.tokenizer import Tokenizer, load_tokenizer

MAX_LISTED = 12  # keys listed per problem before "... and N more"


@dataclass
class LoadedModel:
    path: Path
    config: MiniCPMVConfig
    model: torch.nn.Module
    tokenizer: Tokenizer
    processor_config: dict
    dtype: torch.dtype


def load_config(model_dir: Path) -> MiniCPMVConfig:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConfigError(f"model directory {model_dir} does not exist",
                          "pass the path of a MiniCPM-V checkpoint directory (config.json, *.safetensors, "
                          "tokenizer.json), or write one with `edgevlm checkpoint --preset NAME --out DIR`")
    return MiniCPMVConfig.from_file(model_dir / "config.json")


def weight_files(model_dir: Path) -> dict[str, list[str]]:
    """shard file name -> keys it holds (from the index, or the single-file header)."""
    index = model_dir / INDEX_FILE
    if index.is_file():
        try:
            weight_map = read_json_object(index, "checkpoint index", CheckpointError)["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index} is malformed ({e!r})", "restore it from the checkpoint") from None
        check_weight_map(model_dir, index, weight_map)  # a mapping of names to shards inside model_dir
        files: dict[str, list[str]] = {}
        for key, name in weight_map.items():
            files.setdefault(name, []).append(key)
        absent = [n for n in files if not (model_dir / n).is_file()]
        if absent:
            raise CheckpointError(f"{index} names shard files that are missing: {', '.join(sorted(absent))}",
                                  "download the missing shards again (an interrupted download leaves this state)")
        return files
    if (model_dir / SINGLE_FILE).is_file():
        return {SINGLE_FILE: list(_open(model_dir / SINGLE_FILE).keys())}
    others = sorted(p.name for p in model_dir.glob("*.bin")) + sorted(p.name for p in model_dir.glob("*.pt"))
    hint = (f"found {', '.join(others[:3])}: convert to safetensors once "
            "(e.g. `safetensors.torch.save_file(torch.load(f, weights_only=True), ...)`)" if others
            else "the directory must hold model.safetensors or sharded model-*.safetensors with " + INDEX_FILE)
    raise CheckpointError(f"no safetensors weights in {model_dir}", hint)


def _open(path: Path):
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as e:  # SafetensorError for a bad header or a truncated file
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})",
                              "the file is truncated or corrupt: download or copy it again") from None


def check_keys(config: MiniCPMVConfig, found: dict[str, tuple[int, ...]], source: Path) -> None:
    """Raise one error listing every missing, unexpected and mis-shaped key."""
    expected = expected_parameters(config)
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected and k not in tied_keys(config)]
    misshaped = [f"{k}: file {list(found[k])} vs model {list(expected[k][0])}"
                 for k in expected if k in found and tuple(found[k]) != expected[k][0]]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if items:
            more = f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
            problems.append(f"{len(items)} {label} key(s): " + ", ".join(items[:MAX_LISTED]) + more)
    if problems:
        raise CheckpointError(
            f"weights in {source} do not fit the model described by config.json (version {config.version}):\n  "
            + "\n  ".join(problems),
            "config.json and the weights must come from the same checkpoint; check `version`, the layer counts "
            "and hidden sizes in config.json",
        )


def load_model(model_dir: Path, dtype: str = "float32") -> LoadedModel:
    model_dir = Path(model_dir)
    config = load_config(model_dir)
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}", f"use one of {', '.join(DTYPES)}")
    torch_dtype = DTYPES[dtype]
    files = weight_files(model_dir)
    handles = {name: _open(model_dir / name) for name in files}
    found = {}
    for name, handle in handles.items():
        for key in handle.keys():
            found[key] = tuple(handle.get_slice(key).get_shape())
    check_keys(config, found, model_dir)
    check_dtypes(config, handles, model_dir)  # float weights stay float: I32 bits are never loaded as F32

    model = build_on_meta(config)
    for name, handle in handles.items():
        for key in handle.keys():
            try:
                tensor = handle.get_tensor(key).to(torch_dtype)
            except Exception as e:
                raise CheckpointError(f"{model_dir / name}: tensor {key} cannot be read ({e})",
                                      "the shard is corrupt: download or copy it again") from None
            model.load_state_dict({key: tensor}, strict=False, assign=True)
    _finish_meta_model(model, config)
    model.eval()
    tokenizer = load_tokenizer(model_dir, embedding_rows=config.llm.vocab_size)
    processor_path = model_dir / PREPROCESSOR_FILE
    processor_config = read_processor_config(processor_path) if processor_path.is_file() else {}
    return LoadedModel(model_dir, config, model, tokenizer, processor_config, torch_dtype)


def _finish_meta_model(model: torch.nn.Module, config: MiniCPMVConfig) -> None:
    """Tie weights and rebuild the non-persistent buffers (rotary tables) that stayed on meta."""
    from edgevlm.model.llm import MiniCPMRotaryEmbedding, hf_config

    if config.llm.tie_word_embeddings:
        model.llm.lm_head.weight = model.llm.get_input_embeddings().weight
    llm = model.llm.model
    if config.llm.arch == "minicpm":
        llm.rotary_emb = MiniCPMRotaryEmbedding(config.llm)
    else:
        llm.rotary_emb = type(llm.rotary_emb)(config=hf_config(config.llm))
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"internal: tensors not materialised after loading: {left[:MAX_LISTED]}",
                              "please report this as a bug")
