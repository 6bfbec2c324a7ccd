"""The official Hugging Face file layout of a MiniCPM-V checkpoint directory, and the expected
parameter names/shapes of a config (computed on the meta device: no memory, any size)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import torch

from edgevlm.config import MiniCPMVConfig

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


@contextlib.contextmanager
def atomic_directory(final: Path, overwrite: bool = False):
    """Yield a temporary sibling directory; rename it to `final` only if the block succeeds.

    A failure or Ctrl-C leaves `final` untouched (absent, or as it was) and removes the temp dir.
    """
    final = Path(final)
    if final.exists() and any(final.iterdir()) and not overwrite:
        from edgevlm.errors import EdgeVLMError

        raise EdgeVLMError(f"{final} already exists and is not empty",
                           "choose another --out directory, or pass --overwrite")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield tmp
        _apply_umask(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _apply_umask(root: Path) -> None:
    # mkdtemp makes a 0700 directory; published artifacts get the user's normal permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(root, 0o777 & ~umask)
    for path in root.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
