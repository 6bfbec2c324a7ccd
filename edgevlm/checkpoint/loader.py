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
    parts: tuple[str, ...] = ("vision", "llm")  # modules with weights; the rest stay on the meta device


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
        with _open(model_dir / SINGLE_FILE) as handle:
            return {SINGLE_FILE: list(handle.keys())}
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


# What each part of the model is called in the state dict (the official prefixes).
PART_PREFIXES = {"vision": ("vpm.", "resampler."), "llm": ("llm.",)}
ALL_PARTS = tuple(PART_PREFIXES)


class CheckpointReader:
    """Tensors of a checkpoint by name, read from their safetensors shard on demand, so reading
    part of an 8B checkpoint costs the part, not the checkpoint. A shard stays mapped only while
    tensors read from it in its stored dtype are alive (they are views of the mapping)."""

    def __init__(self, model_dir: Path):
        self.root = Path(model_dir)
        self.files = weight_files(self.root)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        self.shard_of: dict[str, str] = {}
        for name in self.files:
            with _open(self.root / name) as handle:
                for key in handle.keys():
                    view = handle.get_slice(key)
                    self.shapes[key], self.dtypes[key], self.shard_of[key] = tuple(view.get_shape()), view.get_dtype(), name

    def check(self, config: MiniCPMVConfig) -> None:
        """Every key present with the model's shape, and float weights stored as floats (I32 bits are
        never loaded as F32); from the headers alone."""
        check_keys(config, self.shapes, self.root)
        check_dtypes(config, self.dtypes, self.shard_of, self.root)

    def read(self, keys, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """Copies of `keys` (in `dtype`, or as stored), one shard handle open at a time."""
        by_shard: dict[str, list[str]] = {}
        for key in keys:
            by_shard.setdefault(self.shard_of[key], []).append(key)
        out = {}
        for name, names in by_shard.items():
            with _open(self.root / name) as handle:
                for key in names:
                    out[key] = self._copy(handle, name, key, lambda: handle.get_tensor(key), dtype)
        return out

    def read_rows(self, key: str, start: int, end: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Rows start..end-1 of a 2-D tensor (e.g. a 150k-row lm_head, a block at a time)."""
        name = self.shard_of[key]
        with _open(self.root / name) as handle:
            return self._copy(handle, name, key, lambda: handle.get_slice(key)[start:end], dtype)

    def _copy(self, handle, name: str, key: str, get, dtype: torch.dtype | None) -> torch.Tensor:
        try:
            tensor = get()
        except Exception as e:
            raise CheckpointError(f"{self.root / name}: tensor {key} cannot be read ({e})",
                                  "the shard is corrupt: download or copy it again") from None
        # in the stored dtype this is a view of the file mapping (kept alive by the tensor): its pages
        # are page cache, resident only while read and reclaimable under memory pressure
        return tensor.to(dtype) if dtype is not None else tensor


def load_model(model_dir: Path, dtype: str = "float32", parts: tuple[str, ...] = ALL_PARTS) -> LoadedModel:
    """Load the reference model; `parts` picks which modules get weights ("vision": vpm + resampler,
    "llm"). The others keep their structure on the meta device, so an export that needs only the
    vision tower does not read an 8B LLM (the decoder is streamed layer by layer instead)."""
    model_dir = Path(model_dir)
    config = load_config(model_dir)
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}", f"use one of {', '.join(DTYPES)}")
    unknown = set(parts) - set(PART_PREFIXES)
    if unknown:
        raise ValueError(f"unknown model parts {sorted(unknown)}; known: {ALL_PARTS}")
    torch_dtype = DTYPES[dtype]
    reader = CheckpointReader(model_dir)
    reader.check(config)
    model = build_on_meta(config)
    prefixes = tuple(p for part in parts for p in PART_PREFIXES[part])
    for name in reader.files:
        wanted = [k for k, shard in reader.shard_of.items() if shard == name and k.startswith(prefixes)]
        with _open(model_dir / name) as handle:
            for key in wanted:
                tensor = reader._copy(handle, name, key, lambda: handle.get_tensor(key), torch_dtype)
                model.load_state_dict({key: tensor}, strict=False, assign=True)
    _finish_meta_model(model, config, loaded=parts)
    model.eval()
    tokenizer = load_tokenizer(model_dir, embedding_rows=config.llm.vocab_size)
    processor_path = model_dir / PREPROCESSOR_FILE
    processor_config = read_processor_config(processor_path) if processor_path.is_file() else {}
    return LoadedModel(model_dir, config, model, tokenizer, processor_config, torch_dtype, parts=tuple(parts))


def _finish_meta_model(model: torch.nn.Module, config: MiniCPMVConfig, loaded: tuple[str, ...] = ALL_PARTS) -> None:
    """Tie weights and rebuild the non-persistent buffers (rotary tables) that stayed on meta;
    check that every tensor of the loaded parts got its values."""
    from edgevlm.model.llm import rebuild_rotary

    if config.llm.tie_word_embeddings:
        model.llm.lm_head.weight = model.llm.get_input_embeddings().weight
    rebuild_rotary(model.llm, config.llm)
    prefixes = tuple(p for part in loaded for p in PART_PREFIXES[part])
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers())
            if t.is_meta and n.startswith(prefixes)]
    if left:
        raise CheckpointError(f"internal: tensors not materialised after loading: {left[:MAX_LISTED]}",
                              "please report this as a bug")
