"""The official Hugging Face file layout of a MiniCPM-V checkpoint directory, and the expected
parameter names/shapes of a config (computed on the meta device: no memory, any size). Output folders
(`atomic_directory`) live in edgevlm/outputs.py."""

from __future__ import annotations

import torch

from edgevlm.config import MiniCPMVConfig
from edgevlm.outputs import atomic_directory  # noqa: F401  (re-exported: writers import it from here)

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
PREPROCESSOR_FILE = "preprocessor_config.json"


def shard_name(i: int, n: int) -> str:
    return f"model-{i:05d}-of-{n:05d}.safetensors"


def build_on_meta(config: MiniCPMVConfig):
    from edgevlm.model.minicpmv import MiniCPMV

    with torch.device("meta"):
        return MiniCPMV(config)


def tied_keys(config: MiniCPMVConfig) -> set[str]:
    """Keys that alias another parameter and are not stored (tied lm_head)."""
    return {"llm.lm_head.weight"} if config.llm.tie_word_embeddings else set()


def expected_parameters(config: MiniCPMVConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Every stored key with its shape, in module order."""
    model = build_on_meta(config)
    skip = tied_keys(config)
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items() if k not in skip}
