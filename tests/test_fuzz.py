"""A bounded fuzz pass (hypothesis) over the recipe, manifest and config parsers: whatever the input,
the result is a parsed value or an EdgeVLMError (one message, exit code 1, 2 or 3), never another
exception, and the CLI never exits outside {0, 1, 2, 3}.

Runs are derandomized (the same examples every time) and bounded by max_examples; set
EDGEVLM_FUZZ_EXAMPLES to run longer locally, and EDGEVLM_FUZZ_RANDOM=1 to draw new examples.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgevlm.errors import EdgeVLMError  # noqa: E402

EXAMPLES = int(os.environ.get("EDGEVLM_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("EDGEVLM_FUZZ_RANDOM"),
                database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

EDGE_INTS = st.sampled_from([0, 1, -1, 2, 3, 7, 64, 127, 128, 1024, 2 ** 31, 10 ** 6, 10 ** 12, -(2 ** 63)])
SCALARS = (st.none() | st.booleans() | EDGE_INTS | st.integers(-(2 ** 40), 2 ** 40)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def _paths(value, prefix=()):
    """Every (path) into a nested dict/list, for choosing what to mutate."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value[:3]):
            yield from _paths(child, prefix + (i,))


@st.composite
def mutated(draw, base: dict, extra_keys=("visoin", "x", "")):
    """`base` with 1-3 values replaced, deleted or added at random paths."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(extra_keys) | st.text(max_size=6))] = draw(VALUES)
        else:
            parent[path[-1]] = draw(VALUES)
    return doc


def _expect_clean(fn, *args):
    """fn(*args) returns, or raises an EdgeVLMError with an exit code in {1, 2, 3}."""
    try:
        return fn(*args)
    except EdgeVLMError as err:
        assert err.exit_code in (1, 2, 3) and str(err).strip()
        return None


# ---- recipes ---------------------------------------------------------------------------------------

def _recipe_base() -> dict:
    from edgevlm.export.recipes import BUILTIN_DIR

    return yaml.safe_load((BUILTIN_DIR / "ort.yaml").read_text())


def _dump(doc) -> str:
    def clean(v):  # YAML has no NaN/inf literal PyYAML reads back as such in every position: keep them as text
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    return yaml.safe_dump(clean(doc))


@FUZZ
@given(doc=mutated(_recipe_base()))
def test_recipe_parser_mutated_documents(doc, tmp_path):
    from edgevlm.export.recipes import load_recipe

    path = tmp_path / "fuzz.yaml"
    path.write_text(_dump(doc))
    _expect_clean(load_recipe, str(path))


@FUZZ
@given(text=st.text(max_size=200) | st.builds(lambda a, b: a + b, st.sampled_from(
    ["name: x\n", "name: x\nvision:\n  - ", "&a [1]\n", "name: !!python/object:os.system x\n", "{", "- - - -"]),
    st.text(max_size=60)))
def test_recipe_parser_arbitrary_text(text, tmp_path):
    from edgevlm.export.recipes import load_recipe

    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _expect_clean(load_recipe, str(path))


# ---- configs ---------------------------------------------------------------------------------------

def _config_base() -> dict:
    from edgevlm.presets import get_preset

    return get_preset("minicpmv-2.6-tiny").build_config().to_dict()


@FUZZ
@given(doc=mutated(_config_base(), extra_keys=("head_dim", "rope_scaling", "eos_token_id", "vision_config")))
def test_config_parser_mutated_documents(doc):
    from edgevlm.checkpoint.layout import expected_parameters
    from edgevlm.config import MiniCPMVConfig

    config = _expect_clean(MiniCPMVConfig.from_dict, doc)
    if config is not None:  # accepted: building the model from it must not fail either
        _expect_clean(expected_parameters, config)


@pytest.fixture(scope="module")
def checkpoint_copy(tiny_checkpoints, tmp_path_factory):
    return Path(shutil.copytree(tiny_checkpoints["minicpmv-2.6-tiny"], tmp_path_factory.mktemp("fuzz") / "model"))


@settings(FUZZ, max_examples=max(10, EXAMPLES // 4))
@given(doc=mutated(_config_base(), extra_keys=("head_dim", "rope_scaling", "eos_token_id")))
def test_inspect_exit_codes_on_mutated_configs(doc, checkpoint_copy, capsys):
    from edgevlm.cli.main import main

    (checkpoint_copy / "config.json").write_text(json.dumps(doc))
    code = main(["inspect", str(checkpoint_copy), "--json"])
    err = capsys.readouterr().err
    assert code in (0, 1, 2, 3) and "Traceback" not in err, err


# ---- manifests -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifest_base(int4_kv_export):
    return json.loads((int4_kv_export / "manifest.json").read_text())


@FUZZ
@given(data=st.data())
def test_manifest_parser_mutated_documents(data, manifest_base, int4_kv_export, tmp_path):
    from edgevlm.export.manifest import read_manifest

    doc = data.draw(mutated(manifest_base))
    folder = tmp_path / "art"
    folder.mkdir(exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(doc))
    _expect_clean(read_manifest, folder)


@FUZZ
@given(text=st.text(max_size=300) | st.sampled_from(['{"schema_version": 1}', "[]", "null", '{"a": NaN}', "\ufeff{}"]))
def test_manifest_parser_arbitrary_text(text, tmp_path):
    from edgevlm.export.manifest import read_manifest

    (tmp_path / "manifest.json").write_text(text, encoding="utf-8", errors="surrogatepass")
    _expect_clean(read_manifest, tmp_path)


@pytest.fixture(scope="module")
def artifacts_copy(int4_kv_export, tmp_path_factory):
    return Path(shutil.copytree(int4_kv_export, tmp_path_factory.mktemp("fuzz") / "art"))


@settings(FUZZ, max_examples=max(10, EXAMPLES // 5))
@given(data=st.data())
def test_verify_exit_codes_on_mutated_manifests(data, manifest_base, artifacts_copy, capsys):
    """What read_manifest accepts, verify must be able to act on: exit 0 or 1 (a check failed), or an
    input error; never a traceback."""
    from edgevlm.cli.main import main

    (artifacts_copy / "manifest.json").write_text(json.dumps(data.draw(mutated(manifest_base))))
    code = main(["verify", str(artifacts_copy)])
    err = capsys.readouterr().err
    assert code in (0, 1, 2, 3) and "Traceback" not in err, err
