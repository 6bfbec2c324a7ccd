"""The decoder backend registry and its declarations: the one source of the recipe rules."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from edgevlm.backends.base import DECODER_BACKENDS, BackendError, get_decoder_backend
from edgevlm.errors import ConfigError
from edgevlm.export.recipes import load_recipe


def _load(tmp_path, decoder: dict):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "vision": [], "decoder": [decoder]}))
    return load_recipe(str(path))


def test_unknown_decoder_backend_fails_loudly_with_the_known_ones(tmp_path):
    with pytest.raises(BackendError, match="unknown decoder backend 'tflite'(.|\n)*executorch, ort"):
        get_decoder_backend("tflite")
    with pytest.raises(ConfigError, match="unknown decoder backend 'tflite'(.|\n)*executorch, ort"):
        _load(tmp_path, {"backend": "tflite"})


def test_declarations_name_what_the_code_implements():
    from edgevlm.export.decoder.graph import ATTENTION_STRATEGIES
    from edgevlm.export.decoder.kv_cache import FORMATS
    from edgevlm.export.decoder.onnx_graph import DecoderOnnxSpec

    for name in DECODER_BACKENDS:
        support = get_decoder_backend(name).support
        assert get_decoder_backend(name).name == name
        assert set(support.attention) <= set(ATTENTION_STRATEGIES) and set(support.kv_formats) <= set(FORMATS)
    ort = get_decoder_backend("ort").support
    assert {k: getattr(DecoderOnnxSpec(), k) for k in ort.options} == ort.options


def test_recipe_defaults_and_options_come_from_the_declarations(tmp_path):
    for name in DECODER_BACKENDS:
        support = get_decoder_backend(name).support
        weights = support.weights[-1]
        assert _load(tmp_path, {"backend": name, "weights": weights}).decoder[0].attention == support.default_attention
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['colour'\](.|\n)*symmetric, accuracy_level"):
        _load(tmp_path, {"backend": "ort", "weights": "int4", "options": {"colour": 1}})
    with pytest.raises(ConfigError, match="unknown weight_format 'gptq'(.|\n)*matmulnbits, qdq"):
        _load(tmp_path, {"backend": "ort", "weights": "int4", "options": {"weight_format": "gptq"}})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['threads'\](.|\n)*allowed: none"):
        _load(tmp_path, {"backend": "executorch", "options": {"threads": 2}})
    with pytest.raises(ConfigError, match="unknown decoder kv_cache 'int3'(.|\n)*fp32, fp16, int8, int4"):
        _load(tmp_path, {"backend": "executorch", "kv_cache": "int3"})


def test_onnx_spec_takes_declared_defaults_under_the_targets_options():
    from edgevlm.export.decoder.onnx_artifact import onnx_spec

    target = dataclasses.replace(load_recipe("ort").decoder[0], options={"weight_format": "qdq"})
    spec = onnx_spec(target)
    assert (spec.weight_format, spec.accuracy_level, spec.symmetric) == ("qdq", 4, False)


def test_sessions_open_through_the_registry(tmp_path):
    from edgevlm.errors import EdgeVLMError
    from edgevlm.export.decoder.session import open_decoder

    with pytest.raises(EdgeVLMError, match="target 'tflite', which `run` cannot execute(.|\n)*executorch, ort"):
        open_decoder(tmp_path, {"target": "tflite", "file": "x"})
