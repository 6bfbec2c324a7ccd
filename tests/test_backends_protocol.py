"""Every registered backend provides the whole protocol its callers use (no getattr probing), and the
artifact names follow the recipe's target options."""

from __future__ import annotations

import typing
from types import SimpleNamespace

import pytest

from edgevlm.backends.base import VISION_BACKENDS, BackendError, VisionBackend, get_vision_backend
from edgevlm.export.driver import artifact_stem
from edgevlm.export.recipes import DEFAULT_MAX_PATCHES, VisionTarget


def _protocol_members(protocol) -> set[str]:
    hints = set(typing.get_type_hints(protocol))
    methods = {n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")}
    return hints | methods


@pytest.mark.parametrize("name", list(VISION_BACKENDS))
def test_every_vision_backend_has_every_protocol_member(name):
    backend = get_vision_backend(name)
    members = _protocol_members(VisionBackend)
    assert {"emulated", "mask_value", "verify_slices_per_case", "describe_io", "target_token"} <= members
    missing = [m for m in members if not hasattr(backend, m)]
    assert not missing, f"{name} lacks {missing}"
    assert isinstance(backend, VisionBackend)
    assert backend.name == name
    assert isinstance(backend.emulated, bool)
    assert isinstance(backend.mask_value, float) and backend.mask_value < 0
    assert backend.verify_slices_per_case is None or backend.verify_slices_per_case >= 1


def test_unknown_vision_backend_is_refused_with_the_known_ones():
    with pytest.raises(BackendError) as e:
        get_vision_backend("tpu")
    assert "tpu" in e.value.problem and "qnn" in e.value.fix


@pytest.mark.parametrize("options, token", [
    ({}, "htp-sm8650-v75"),
    ({"soc_model": 43, "htp_arch": 73}, "htp-sm8550-v73"),
    ({"soc_model": 69, "htp_arch": 79}, "htp-sm8750-v79"),
    ({"soc_model": 99}, "htp-soc99-v75"),
])
def test_qnn_artifact_name_follows_the_recipes_soc_model(options, token):
    loaded = SimpleNamespace(config=SimpleNamespace(version="4.0"))
    stem = artifact_stem(loaded, "vision", VisionTarget("qnn", "w8a16", options=options))
    assert stem == f"minicpmv-4.0.vision.{token}.w8a16"


def test_other_targets_keep_their_tokens():
    loaded = SimpleNamespace(config=SimpleNamespace(version="2.6"))
    assert artifact_stem(loaded, "vision", VisionTarget("coreml", "fp16")) == "minicpmv-2.6.vision.ane.fp16"
    assert artifact_stem(loaded, "vision", VisionTarget("ort", "int8")) == "minicpmv-2.6.vision.ort.int8"
    assert VisionTarget("ort", "fp32").max_patches == DEFAULT_MAX_PATCHES
