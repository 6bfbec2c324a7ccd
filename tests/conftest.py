"""Shared fixtures: tiny checkpoints are written once per test session, in the official layout."""

from __future__ import annotations

import logging
import os
from pathlib import Path

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
def runtime_home(tmp_path_factory):
    """One $EDGEVLM_HOME for every native-runtime test: build_runtime caches a build per key there,
    so the host and aarch64 builds are made once per session, not once per test module.
    EDGEVLM_TEST_RUNTIME_HOME keeps them across sessions (the build key still hashes every source)."""
    kept = os.environ.get("EDGEVLM_TEST_RUNTIME_HOME")
    return Path(kept) if kept else tmp_path_factory.mktemp("edgevlm-home")


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


@pytest.fixture
def edgevlm_logs():
    """Records of the `edgevlm` logger (which `main()` may have set not to propagate to caplog)."""
    import logging

    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("edgevlm")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope="session")
def int4_kv_export(tiny_checkpoints, tmp_path_factory):
    """An export with an ONNX vision artifact and an INT4-KV-cache decoder .pte (which ships its kernel
    sources): every file kind `edgevlm run` loads or ships. Tests copy it before changing anything."""
    import yaml

    from edgevlm.export.driver import export_model
    from edgevlm.export.recipes import load_recipe

    root = tmp_path_factory.mktemp("int4_kv_export")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "int4-kv", "vision": [{"backend": "ort", "precision": "fp32"}],
                                      "decoder": [{"backend": "executorch", "weights": "fp32", "kv_cache": "int4",
                                                   "max_seq_len": 256}]}))
    return export_model(tiny_checkpoints["minicpmv-2.6-tiny"], load_recipe(str(recipe)), root / "out")
