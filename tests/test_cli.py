"""The command line as a new user meets it: --version, `recipes`, `--set`, inputs checked before a
model loads, readable verify output at 80 columns, a complete export summary, labelled emulated
timings, a note on random weights, and other packages' warnings counted instead of printed."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

import pytest

from edgevlm.cli.main import main

REPO = Path(__file__).resolve().parents[1]


def _words(text: str) -> str:
    """Text with line wrapping undone (argparse and rich wrap at the terminal width)."""
    return " ".join(text.split())


# ---- discovery ---------------------------------------------------------------------------------------

def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"edgevlm {version('edgevlm')}"


def test_the_parser_is_built_without_importing_torch():
    """`edgevlm --help` and every subcommand's --help: no torch, transformers or coremltools import."""
    probe = ("import sys; from edgevlm.cli.main import build_parser; build_parser(); "
             "print(sorted(m for m in ('torch', 'transformers', 'coremltools', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_recipes_lists_every_shipped_recipe_and_export_help_names_them(tmp_path, capsys):
    shipped = sorted(p.stem for p in (REPO / "export" / "recipes").glob("*.yaml"))
    assert main(["recipes", "--json", str(tmp_path / "recipes.json")]) == 0
    out = capsys.readouterr().out
    listed = json.loads((tmp_path / "recipes.json").read_text())
    assert [entry["name"] for entry in listed] == shipped
    for entry in listed:
        assert entry["description"] and entry["vision"]
        assert re.search(rf"^{re.escape(entry['name'])}$", out, re.M)
        assert _words(entry["description"]) in _words(out)
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    help_text = _words(capsys.readouterr().out)
    for name in shipped:
        assert re.search(rf"[(, ]{re.escape(name)}[,;]", help_text), name


def test_recipes_names_a_broken_user_recipe_instead_of_failing(tmp_path, monkeypatch, capsys):
    (tmp_path / "mine.yaml").write_text("name: mine\nvisoin: []\n")
    monkeypatch.setenv("EDGEVLM_RECIPES", str(tmp_path))
    assert main(["recipes"]) == 0
    assert "cannot be read: recipe" in capsys.readouterr().out


# ---- --set -------------------------------------------------------------------------------------------

def test_set_overrides_are_typed_and_reach_only_the_chosen_target():
    from edgevlm.export.recipes import load_recipe

    recipe = load_recipe("ort", ["decoder.kv_cache=int8", "decoder.max_seq_len=512", "vision[1].max_patches=256",
                                 "calibration.images=4"])
    assert recipe.decoder[0].kv_cache == "int8" and recipe.decoder[0].max_seq_len == 512
    assert [v.max_patches for v in recipe.vision] == [1120, 256, 1120]
    assert recipe.calibration.images == 4
    assert "--set decoder.kv_cache=int8" in recipe.description  # recorded in the manifest's recipe block
    assert load_recipe("ort").decoder[0].kv_cache == "int4"


@pytest.mark.parametrize("override, message", [
    ("decoder.kv_cach=int8", "decoder has no field 'kv_cach' (did you mean 'kv_cache'?)"),
    ("decodr.kv_cache=int8", "unknown recipe section 'decodr' (did you mean 'decoder'?)"),
    ("kv_cache=int8", "is not `section.field=value`"),
    ("decoder[4].max_seq_len=64", "the recipe has 1 decoder target(s)"),
    ("decoder.max_seq_len=abc", "max_seq_len is 'abc' (str); expected an integer (after --set"),
    ("decoder.kv_cache=int3", "unknown decoder kv_cache 'int3' (after --set"),
    ("vision.max_patches=0", "expected from 1 to 4096"),
])
def test_bad_set_overrides_are_refused_before_the_model_loads(override, message, tmp_path, capsys):
    # --model does not exist: the override must be refused first, and nothing written
    code = main(["export", "--model", str(tmp_path / "no-model"), "--recipe", "ios-m4", "--out",
                 str(tmp_path / "out"), "--set", override])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bench_export_takes_set_overrides_and_refuses_a_bad_one_before_writing_a_checkpoint(tmp_path, capsys):
    code = main(["bench-export", "--preset", "minicpmv-2.6-tiny", "--recipe", "ort", "--work", str(tmp_path / "w"),
                 "--set", "decoder.kv_cache=int3"])
    assert code == 2
    assert "unknown decoder kv_cache 'int3' (after --set" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


# ---- inputs before models ----------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["run", "no-such-export"], ["generate", "--model", "no-such-model"]])
def test_a_bad_image_or_prompt_is_reported_before_anything_loads(command, tmp_path, capsys):
    # the artifact folder / checkpoint does not exist either: the input error must come first
    assert main(command + ["--image", str(tmp_path / "missing.jpg"), "--prompt", "hi"]) == 2
    assert f"image {tmp_path / 'missing.jpg'} does not exist" in capsys.readouterr().err
    assert main(command + ["--prompt", "  "]) == 2
    assert "the prompt is empty" in capsys.readouterr().err


def test_one_artifact_folder_argument_everywhere(tmp_path, capsys):
    assert main(["bench"]) == 2
    assert "`edgevlm bench` needs one export folder" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "a"), "--artifacts", str(tmp_path / "b")]) == 2
    assert "two export folders given" in capsys.readouterr().err
    for command in ("verify", "bench", "run", "aihub"):  # positional and --artifacts reach the same check
        extra = ["--prompt", "hi"] if command == "run" else []
        for form in ([str(tmp_path / "none")], ["--artifacts", str(tmp_path / "none")]):
            assert main([command, *form, *extra]) == 2, (command, form)
            assert "manifest.json" in capsys.readouterr().err


# ---- verify output -----------------------------------------------------------------------------------

def test_verify_table_keeps_full_artifact_names_at_80_columns():
    from rich.console import Console

    from edgevlm.reports.verify_table import print_verify_results
    from edgevlm.export.verify import CheckResult

    names = ["minicpmv-2.6.decoder.xnnpack.8da4w-kvint4.pte", "minicpmv-2.6.decoder.xnnpack.8da4w-kvint8.pte",
             "minicpmv-4.5.vision.qnn-htp-sm8650.w8a16.ctx.onnx"]
    detail = "prefill of 34 tokens vs the eager model: sqnr_db=28.39 (gate sqnr_db >= 21.522), top-1 matches"
    results = [CheckResult(n, check, status, detail) for n in names
               for check, status in (("checksum", "pass"), ("numerics", "fail"))]
    buffer = io.StringIO()
    print_verify_results(results, "verify ./out", Console(file=buffer, width=80, color_system=None))
    lines = buffer.getvalue().splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    for name in names:
        assert name in lines  # the heading: the whole name on its own line
    assert _words(buffer.getvalue()).count(detail) == len(names) * 2  # wrapped, never cut
    assert lines[-1] == "3 pass, 3 fail"


def test_verify_cli_names_every_artifact_whole_with_a_stage_line_each(int4_kv_export, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["verify", str(int4_kv_export)]) == 0
    out, err = capsys.readouterr()
    manifest = json.loads((int4_kv_export / "manifest.json").read_text())
    for artifact in manifest["artifacts"]:
        assert artifact["file"] in out.splitlines()
        # a stage line per artifact on stderr while it is checked
        assert re.search(rf"\[edgevlm\] verify {re.escape(artifact['file'])}: [\d.]+ s, peak RSS", err)
    assert "fail" not in out and re.search(r"^\d+ pass$", out, re.M)


# ---- export summary ----------------------------------------------------------------------------------

def test_export_summary_lists_every_file_written_with_sizes(int4_kv_export):
    from edgevlm.cli.export_summary import human_bytes, next_steps, summary_lines
    from edgevlm.outputs import MARKER

    manifest = json.loads((int4_kv_export / "manifest.json").read_text())
    text = "\n".join(summary_lines(int4_kv_export, manifest))
    on_disk = [p for p in int4_kv_export.rglob("*") if p.is_file() and p.name != MARKER]
    for path in on_disk:
        name = path.relative_to(int4_kv_export).as_posix()
        assert re.search(rf"^\s*{re.escape(name)}\s+{re.escape(human_bytes(path.stat().st_size))}\s", text, re.M), name
    assert f"{len(on_disk)} files in {int4_kv_export}" in text
    steps = next_steps(int4_kv_export, manifest)
    assert steps[0] == f"edgevlm verify {int4_kv_export}" and steps[1].startswith(f"edgevlm run {int4_kv_export} ")


def test_export_summary_names_files_the_manifest_does_not(int4_kv_export, tmp_path):
    from edgevlm.cli.export_summary import summary_lines

    copy = Path(shutil.copytree(int4_kv_export, tmp_path / "copy"))
    (copy / "stray.bin").write_bytes(b"x" * 3)
    manifest = json.loads((copy / "manifest.json").read_text())
    assert any(line.split()[:4] == ["stray.bin", "3", "B", "not"] for line in summary_lines(copy, manifest))


# ---- run: timings and notes --------------------------------------------------------------------------

def test_emulated_vision_timings_are_labelled():
    from edgevlm.backends.base import get_vision_backend
    from edgevlm.cli.inputs import vision_timing_label
    from edgevlm.export.run import ArtifactGeneration

    assert "QNN HTP emulator on x86: emulated, not device latency" == vision_timing_label(get_vision_backend("qnn"))
    assert vision_timing_label(get_vision_backend("ort")) is None  # ONNX Runtime on this CPU: a host timing
    coreml = get_vision_backend("coreml")
    assert (vision_timing_label(coreml) is None) == (not coreml.emulated)
    generation = ArtifactGeneration(prompt_tokens=10, timings={"vision_ms": 800.0, "prefill_ms": 10.0,
                                                               "decode_ms": 0.0, "decode_steps": 0})
    assert generation.speed_line("QNN HTP emulator on x86: emulated, not device latency").startswith(
        "vision 800 ms (QNN HTP emulator on x86: emulated, not device latency), prefill 10 ms")


def test_run_notes_random_weights_and_writes_json(int4_kv_export, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "red.png"
    Image.new("RGB", (64, 48), (200, 10, 10)).save(image)
    code = main(["run", str(int4_kv_export), "--image", str(image), "--prompt", "What is it?",
                 "--max-new-tokens", "3", "--json", str(tmp_path / "run.json")])
    assert code == 0
    err = capsys.readouterr().err
    assert "has random weights (`edgevlm checkpoint`, seed 0)" in err
    assert "emulated" not in err  # the fixture's vision artifact is ONNX Runtime on this CPU
    result = json.loads((tmp_path / "run.json").read_text())
    assert len(result["tokens"]) == 3 and result["vision_timing"] == "host runtime"


def test_checkpoint_records_random_weights_in_its_config(tiny_checkpoints):
    from edgevlm.checkpoint.writer import RANDOM_WEIGHTS_KEY
    from edgevlm.cli.inputs import random_weights_note

    config = json.loads((tiny_checkpoints["minicpmv-2.6-tiny"] / "config.json").read_text())
    assert config[RANDOM_WEIGHTS_KEY] == {"seed": 0}
    assert "seed 0" in random_weights_note(config, "tiny")
    trained = json.loads((REPO / "edgevlm" / "assets" / "edgevlm-tiny" / "config.json").read_text())
    assert random_weights_note(trained, "edgevlm-tiny") is None


# ---- inspect -----------------------------------------------------------------------------------------

def test_inspect_reads_headers_without_building_the_model(tiny_checkpoints, tmp_path):
    model = tiny_checkpoints["minicpmv-2.6-tiny"]
    probe = ("import sys; from edgevlm.summary import inspect_checkpoint; "
             f"info = inspect_checkpoint({str(model)!r}); "
             "print(info['parameters']['total'], 'edgevlm.model.minicpmv' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    from edgevlm.checkpoint.layout import expected_parameters
    from edgevlm.checkpoint.loader import load_config
    import math

    expected = sum(math.prod(shape) for shape, _ in expected_parameters(load_config(model)).values())
    assert out == [str(expected), "False"]


def test_inspect_check_finds_what_the_header_read_does_not(tiny_checkpoints, tmp_path, capsys):
    model = Path(shutil.copytree(tiny_checkpoints["minicpmv-2.6-tiny"], tmp_path / "model"))
    config = json.loads((model / "config.json").read_text())
    config["num_hidden_layers"] += 1  # in range, but the weights have one layer fewer
    (model / "config.json").write_text(json.dumps(config))
    assert main(["inspect", str(model), "--json", str(tmp_path / "info.json")]) == 0
    assert json.loads((tmp_path / "info.json").read_text())["llm"]["layers"] == config["num_hidden_layers"]
    capsys.readouterr()
    assert main(["inspect", str(model), "--check"]) == 2
    assert "missing key(s)" in capsys.readouterr().err


# ---- third-party output ------------------------------------------------------------------------------

def test_third_party_warnings_are_counted_not_printed(capfd):
    from edgevlm.third_party import capture_third_party, native_stderr

    own_handler_logger = logging.getLogger("someframework.internal")  # prints itself, like torch
    own_handler_logger.addHandler(logging.StreamHandler(sys.stderr))
    own_handler_logger.propagate = False
    try:
        with capture_third_party() as hidden:
            warnings.warn_explicit("old API", FutureWarning, "/x/site-packages/coremltools/a.py", 1)
            logging.getLogger("coremltools").warning("Torch version has not been tested")
            own_handler_logger.warning("deprecated")
            logging.getLogger("late.created.logger").warning("late")
            with native_stderr("executorch"):
                os.write(2, b"[cpuinfo_utils.cpp:71] Reading file\n")
            own_handler_logger.error("a real error still prints")
        captured = capfd.readouterr()
        assert hidden.summary() == ("[edgevlm] 5 third-party warnings hidden (coremltools 2, someframework 1, "
                                    "late 1, executorch 1); --log-level debug shows them")
        assert "old API" not in captured.err and "cpuinfo" not in captured.err and "deprecated" not in captured.err
        assert "a real error still prints" in captured.err
        own_handler_logger.warning("after the command")  # everything restored
        assert "after the command" in capfd.readouterr().err
    finally:
        own_handler_logger.handlers.clear()


def test_debug_log_level_shows_third_party_output(capfd):
    from edgevlm.third_party import capture_third_party

    logger = logging.getLogger("coremltools.debug_probe")  # its own handler: pytest holds the root's
    logger.addHandler(logging.StreamHandler(sys.stderr))
    logger.propagate = False
    try:
        with capture_third_party(show=True) as hidden:
            logger.warning("Torch version has not been tested")
        assert hidden.summary() is None
        assert "Torch version has not been tested" in capfd.readouterr().err
    finally:
        logger.handlers.clear()


def test_library_code_never_changes_other_packages_loggers_for_the_process():
    """Only the CLI's per-command capture and `quiet_loggers` (restored on exit) touch them."""
    offenders = []
    for folder in ("edgevlm", "export", "backends", "calibration", "reports", "device_tests"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text()
            for match in re.finditer(r"getLogger\(([^)]*)\)\.setLevel|filterwarnings\(|logging\.disable\(", text):
                if path.name != "progress.py":  # progress.py sets the level of edgevlm's own logger
                    offenders.append(f"{path.relative_to(REPO)}: {match.group(0)}")
    assert offenders == []


def test_quiet_loggers_restores_the_level():
    from edgevlm.third_party import quiet_loggers

    logger = logging.getLogger("torch.onnx.test_probe")
    logger.setLevel(logging.INFO)
    with quiet_loggers("torch.onnx.test_probe"):
        assert logger.level == logging.ERROR
    assert logger.level == logging.INFO


# ---- decoder commands --------------------------------------------------------------------------------

def test_profile_decoder_takes_an_export_folder(int4_kv_export, tmp_path):
    from edgevlm.cli.decoder_commands import _pte_of
    from edgevlm.errors import ConfigError

    manifest = json.loads((int4_kv_export / "manifest.json").read_text())
    (pte,) = [a["file"] for a in manifest["artifacts"] if a["file"].endswith(".pte")]
    assert _pte_of(int4_kv_export) == int4_kv_export / pte
    assert _pte_of(int4_kv_export / pte) == int4_kv_export / pte
    with pytest.raises(ConfigError, match="no .pte at"):
        _pte_of(tmp_path / "x.pte")


def test_bench_decoder_preset_writes_the_checkpoint_once_and_benchmarks_it(tmp_path, monkeypatch):
    from edgevlm.device_tests import decoder_bench
    from edgevlm.reports import decoder_tables as decoder_table

    benchmarked = []
    monkeypatch.setattr(decoder_bench, "bench_decoder",
                        lambda model, work, plan: benchmarked.append((model, plan.optimum)) or {})
    monkeypatch.setattr(decoder_table, "print_decoder_report", lambda report: None)
    argv = ["bench-decoder", "--preset", "minicpmv-2.6-tiny", "--work", str(tmp_path)]  # optimum: opt-in
    assert main(argv) == 0
    checkpoint = tmp_path / "checkpoints" / "minicpmv-2.6-tiny"
    written = (checkpoint / "config.json").stat().st_mtime_ns
    assert main(argv + ["--with-optimum"]) == 0
    assert benchmarked == [(checkpoint, False), (checkpoint, True)]  # the optimum-executorch peer is opt-in
    assert (checkpoint / "config.json").stat().st_mtime_ns == written  # reused, not written again


def test_a_warning_from_outside_site_packages_is_counted_by_its_category(capfd):
    from edgevlm.third_party import capture_third_party

    with capture_third_party() as hidden:
        warnings.warn_explicit("_check_is_size will be removed", FutureWarning, str(REPO / "export" / "x.py"), 1)
    assert "(FutureWarning 1)" in hidden.summary() and "_check_is_size" not in capfd.readouterr().err


# ---- device_tests tools as commands ------------------------------------------------------------------

@pytest.mark.parametrize("command", ["gemv-stream", "bench-decoder-onnx"])
def test_device_test_tools_are_edgevlm_commands(command, capsys):
    # an unknown preset reaches the tool itself and is refused there, before anything is built
    assert main([command, "--preset", "no-such-preset"]) == 2
    assert "no-such-preset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--preset" in capsys.readouterr().out


def test_checkpoint_json_lists_every_written_file_with_its_hash(tmp_path):
    import hashlib
    import json

    from edgevlm.cli.main import main

    out = tmp_path / "ckpt"
    assert main(["checkpoint", "--preset", "minicpmv-2.6-tiny", "--out", str(out), "--seed", "3",
                 "--json", str(tmp_path / "result.json")]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["schema"] == "edgevlm.checkpoint-result/1" and result["preset"] == "minicpmv-2.6-tiny"
    assert result["seed"] == 3 and result["out"] == str(out) and result["seconds"] > 0
    files = {f["file"]: f for f in result["files"]}
    assert "config.json" in files and any(name.endswith(".safetensors") for name in files)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert set(files) == on_disk
    weights = next(f for name, f in files.items() if name.endswith(".safetensors"))
    assert weights["sha256"] == hashlib.sha256((out / weights["file"]).read_bytes()).hexdigest()
    assert weights["bytes"] == (out / weights["file"]).stat().st_size
