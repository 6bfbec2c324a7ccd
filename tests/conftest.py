"""Shared fixtures: tiny checkpoints are written once per test session, in the official layout."""

from __future__ import annotations

import logging
import os

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
logging.getLogger("torchao").setLevel(logging.ERROR)

TINY_PRESETS = ["minicpmv-2.5-tiny", "minicpmv-2.6-tiny", "minicpmv-4.0-tiny", "minicpmv-4.5-tiny"]
SMALL_SHARDS = 3 * 1024 * 1024  # force several shards so the index path is exercised


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """preset name -> directory of a written tiny checkpoint (seed 0)."""
    from edgevlm.checkpoint.writer import write_checkpoint
    from edgevlm.presets import get_preset

    root = tmp_path_factory.mktemp("checkpoints")
    out = {}
    for name in TINY_PRESETS:
        preset = get_preset(name)
        out[name] = write_checkpoint(preset.build_config(), root / name, seed=0, dtype=preset.dtype,
                                     shard_bytes=SMALL_SHARDS, show_progress=False)
    return out


@pytest.fixture(scope="session")
def loaded_models(tiny_checkpoints):
    """preset name -> LoadedModel (fp32), loaded lazily and cached for the session."""
    from edgevlm.checkpoint.loader import load_model

    cache = {}

    class Lazy(dict):
        def __missing__(self, name):
            cache[name] = load_model(tiny_checkpoints[name])
            self[name] = cache[name]
            return cache[name]

    return Lazy()
