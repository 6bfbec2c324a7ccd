"""The native runner's decoder (runtime/src/decoder.cpp over ExecuTorch's prebuilt runtime, with
edgevlm's INT4 kernels compiled in) against the Python .pte session `edgevlm run` uses: the same
greedy tokens from the same prompt ids, for the INT4 custom-kernel cache and static caches, built
for this host and cross-built for aarch64 Linux (run under qemu-aarch64 from its packed folder)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from edgevlm.export.decoder.session import open_decoder
from edgevlm.export.driver import export_model
from edgevlm.export.recipes import load_recipe

PROMPT = [5, 17, 33, 2, 99, 150, 7, 8, 41, 3]
DECODERS = {  # name -> recipe decoder entry
    # the recipes' table: int4 embedding, ExecuTorch's embedding_4bit kernel (kernels_quantized)
    "8da4w-int4-custom": {"backend": "executorch", "weights": "8da4w", "kv_cache": "int4", "max_seq_len": 64,
                          "embedding": "int4"},
    "fp32-fp32-static": {"backend": "executorch", "weights": "fp32", "kv_cache": "fp32", "attention": "static",
                         "max_seq_len": 64},
    "8da4w-int8-static": {"backend": "executorch", "weights": "8da4w", "kv_cache": "int8", "attention": "static",
                          "max_seq_len": 64, "embedding": "int8"},  # embedding_byte
}


CROSS_TOOLS = ("aarch64-linux-gnu-g++", "qemu-aarch64")  # .ci/run installs them (scripts/system-deps.sh)


@pytest.fixture(scope="module")
def runner(runtime_home):
    from edgevlm.runtime.build import build_runtime

    return build_runtime(home=runtime_home) / "edgevlm-runner"


@pytest.fixture(scope="module")
def runners(runtime_home, runner):
    """target -> argv prefix that runs edgevlm-runner built for it."""
    from edgevlm.runtime.build import build_runtime
    from edgevlm.runtime.bundle import command

    out = {"host": [str(runner)]}
    if all(shutil.which(tool) for tool in CROSS_TOOLS):
        out["aarch64-linux"] = command(build_runtime("aarch64-linux", home=runtime_home), "edgevlm-runner", "qemu-aarch64")
    return out


@pytest.fixture(scope="module")
def exports(tiny_checkpoints, tmp_path_factory):
    """decoder name -> (export folder, manifest entry), exported once for both targets."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = export_decoder(tiny_checkpoints["minicpmv-2.6-tiny"], tmp_path_factory.mktemp(name),
                                         DECODERS[name])
        return cache[name]
    return get


def export_decoder(checkpoint, tmp_path, entry: dict):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "native", "decoder": [entry]}))
    out = export_model(checkpoint, load_recipe(str(recipe)), tmp_path / "out", part="decoder")
    manifest = json.loads((out / "manifest.json").read_text())
    return out, next(a for a in manifest["artifacts"] if a["part"] == "decoder")


def python_greedy(root, artifact, prompt, steps):
    session = open_decoder(root, artifact)
    stop = set()  # compare whole runs: the random tiny model may emit a stop id anywhere
    tokens = []
    with session.running():
        logits, position = session.step(session.embed(prompt), 0), len(prompt)
        for _ in range(steps):
            tokens.append(int(logits.argmax()))
            if tokens[-1] in stop:
                break
            logits, position = session.step(session.embed([tokens[-1]]), position), position + 1
    return tokens


def run_native(runner, *args):
    return subprocess.run([str(runner), *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("target", ["host", "aarch64-linux"])
@pytest.mark.parametrize("name", list(DECODERS))
def test_native_runner_generates_the_tokens_of_the_python_session(runners, exports, tmp_path, name, target):
    if target not in runners:
        pytest.skip(f"cross tools missing ({', '.join(CROSS_TOOLS)}): run scripts/system-deps.sh")
    root, artifact = exports(name)
    want = python_greedy(root, artifact, PROMPT, 24)
    proc = subprocess.run([*runners[target], "--pte", str(root / artifact["file"]), "--tokens",
                           ",".join(map(str, PROMPT)), "--max-new-tokens", "24", "--json", str(tmp_path / "s.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = json.loads((tmp_path / "s.json").read_text())
    stop_ids = set(artifact.get("runner_metadata", {}).get("get_eos_ids", []))
    got = stats["tokens"]
    # the native loop stops at a stop id like `edgevlm run`; Python above ran on past it
    cut = next((i + 1 for i, t in enumerate(want) if t in stop_ids), len(want))
    assert got == want[:cut], (got, want)
    assert stats["stopped_by"] == ("stop_token" if got[-1] in stop_ids else "max_new_tokens")
    assert json.loads(proc.stdout) == got
    assert stats["prompt_tokens"] == len(PROMPT)
    assert stats["decode_steps"] == len(got) - (stats["stopped_by"] == "stop_token")


def test_a_program_with_llama_custom_ops_is_refused_with_the_recipe_field_to_change(runner, tiny_checkpoints,
                                                                                    tmp_path):
    entry = {"backend": "executorch", "weights": "fp32", "kv_cache": "fp32", "attention": "custom", "max_seq_len": 64}
    root, artifact = export_decoder(tiny_checkpoints["minicpmv-2.6-tiny"], tmp_path, entry)
    proc = run_native(runner, "--pte", root / artifact["file"], "--tokens", "1,2,3")
    assert proc.returncode == 1
    assert "attention: static" in proc.stderr and "llama::" in proc.stderr, proc.stderr[-2000:]


def test_prompt_past_the_cache_and_bad_ids_are_clear_errors(runner, exports, tmp_path):
    root, artifact = exports("8da4w-int4-custom")
    pte = root / artifact["file"]
    long = run_native(runner, "--pte", pte, "--tokens", ",".join(["5"] * 64))
    assert long.returncode == 1 and "the prompt is 64 tokens and the decoder's cache holds 64" in long.stderr
    vocab = run_native(runner, "--pte", pte, "--tokens", "1,99999999")
    assert vocab.returncode == 1 and "token id 99999999 is outside the vocabulary" in vocab.stderr
    missing = run_native(runner, "--pte", tmp_path / "nope.pte", "--tokens", "1")
    assert missing.returncode == 1 and "cannot load" in missing.stderr and "nope.pte" in missing.stderr
    junk = tmp_path / "junk.pte"
    junk.write_bytes(b"not a program" * 10)
    assert run_native(runner, "--pte", junk, "--tokens", "1").returncode == 1
    assert run_native(runner, "--tokens", "1").returncode == 2  # usage
    assert run_native(runner, "--pte", pte, "--tokens", "1,x").returncode == 2


def test_build_runner_command_copies_working_executables(tmp_path, monkeypatch, capsys):
    from edgevlm.cli.main import main

    monkeypatch.setenv("EDGEVLM_HOME", str(tmp_path / "home"))
    assert main(["build-runner", "--out", str(tmp_path / "bin"), "--json", str(tmp_path / "build.json")]) == 0
    assert "edgevlm-runner" in capsys.readouterr().out
    result = json.loads((tmp_path / "build.json").read_text())
    assert result["schema"] == "edgevlm.build-runner/1" and result["target"] == "host"
    from edgevlm.runtime.build import EXECUTABLES

    assert {f["file"] for f in result["files"]} == {*EXECUTABLES, "libedgevlm.so"}
    assert all(f["bytes"] == (tmp_path / "bin" / f["file"]).stat().st_size for f in result["files"])
    usage = subprocess.run([str(tmp_path / "bin" / "edgevlm-runner")], capture_output=True, text=True)
    assert usage.returncode == 2 and "give either --artifacts DIR or --pte FILE" in usage.stderr
    assert (tmp_path / "bin" / "libedgevlm.so").is_file()
    for tool in ("edgevlm-bench", "edgevlm-power-sampler"):  # the device benchmark's tools, copied working
        usage = subprocess.run([str(tmp_path / "bin" / tool), "--bogus", "1"], capture_output=True, text=True)
        assert usage.returncode == 2 and "unknown option --bogus" in usage.stderr, tool


def test_bench_runner_reports_both_paths_on_the_same_tokens(runner, exports):
    from edgevlm.device_tests.runner_bench import SCHEMA, bench_runner

    root, artifact = exports("8da4w-int4-custom")
    report = bench_runner(root / artifact["file"], [str(runner)], prompt_len=12, new_tokens=8, rounds=1, vocab=900)
    assert report["schema"] == SCHEMA and report["same_tokens"]
    for name in ("python-pte", "native-runner", "native-runner-read"):
        row = report["best"][name]
        assert row["decode_steps"] == 8 and row["decode_tokens_per_s"] > 0 and row["peak_rss_bytes"] > 0
    # the Python path carries torch and the pybind; the runner only libexecutorch and the program
    assert report["best"]["native-runner"]["peak_rss_bytes"] < report["best"]["python-pte"]["peak_rss_bytes"]
