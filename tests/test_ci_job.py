"""The CI export job: the workflow template is valid and pins its actions, and the command sequence its
`run:` steps hold runs end to end on a tiny checkpoint (exit 0); a real failing gate makes it exit 1,
naming the gate, after every step still ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "edgevlm-export.yml"
PINNED = {"actions/checkout@v4", "actions/setup-python@v5", "actions/cache@v4", "actions/upload-artifact@v4"}
# The smallest recipe with both parts: fp32 ONNX vision, INT4 ONNX decoder.
TINY_RECIPE = {"name": "ci-tiny", "description": "CI test recipe",
               "vision": [{"backend": "ort", "precision": "fp32", "options": {"execution_provider": "CPUExecutionProvider"}}],
               "decoder": [{"backend": "ort", "weights": "int4", "group_size": 32, "kv_cache": "int4", "max_seq_len": 256,
                            "options": {"symmetric": False, "accuracy_level": 4, "weight_format": "matmulnbits"}}]}
# int4 weights under every weighted op of an int8 encoder: a real export whose SQNR (about 10 dB on the
# tiny model) is far below the quantized vision gate (25 dB), so `verify` fails it.
LOSSY_RECIPE = {"name": "ci-int4-vision", "description": "fails the quantized vision gate",
                "vision": [{"backend": "ort", "precision": "int8", "options": {
                    "execution_provider": "CPUExecutionProvider",
                    "quantization": {"op_types": {"MatMul": "int4", "Gemm": "int4", "Conv": "int4"}}}}],
                "decoder": []}


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps() -> list[dict]:
    return _workflow()["jobs"]["export"]["steps"]


def test_workflow_is_valid_yaml_with_pinned_actions_and_caches():
    workflow = _workflow()
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    # manual only: edgevlm's own repository holds no checkpoint, so a push trigger would fail every push
    assert set(triggers) == {"workflow_dispatch"}
    assert {"checkpoint", "recipes"} <= set(triggers["workflow_dispatch"]["inputs"])
    used = {s["uses"] for s in _steps() if "uses" in s}
    assert used == PINNED
    setup = next(s for s in _steps() if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["python-version"] == "3.11" and setup["with"]["cache"] == "pip"
    cache = next(s for s in _steps() if s.get("uses", "").startswith("actions/cache"))
    assert "EDGEVLM_HOME }}/kernels" in cache["with"]["path"]  # export/kernel_cache.py's folder
    installs = " ".join(s.get("run", "") for s in _steps())
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in installs
    assert "scripts/system-deps.sh" in installs and (ROOT / "scripts" / "system-deps.sh").is_file()
    results = next(s for s in _steps() if s.get("with", {}).get("name") == "edgevlm-results")
    assert results["if"] == "always()"  # results of a failed gate are uploaded too


def _edgevlm_script() -> str:
    """The `run:` steps that call edgevlm: the job's command sequence, as the runner executes it."""
    runs = [s["run"] for s in _steps() if "run" in s and "edgevlm " in s["run"] and "pip install" not in s["run"]]
    assert runs, "no edgevlm step in the workflow"
    return "\n".join(runs)


def _run_workflow_steps(workdir: Path, env: dict) -> subprocess.CompletedProcess:
    workflow_env = {k: str(v) for k, v in _workflow()["env"].items() if "${{" not in str(v)}
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # this venv's `edgevlm`
    return subprocess.run(["bash", "-eo", "pipefail", "-c", _edgevlm_script()], cwd=workdir, text=True,
                          capture_output=True, env=os.environ | workflow_env | env | {"PATH": path}, timeout=1500)


@pytest.fixture(scope="module")
def workflow_run(tiny_checkpoints, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ci-job")
    (workdir / "ci-tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    proc = _run_workflow_steps(workdir, {"CHECKPOINT": str(tiny_checkpoints["minicpmv-2.6-tiny"]),
                                         "RECIPES": "ci-tiny.yaml", "SAMPLES": "4", "BENCH_RUNS": "2"})
    return workdir, proc


def test_workflow_command_sequence_runs_end_to_end(workflow_run):
    workdir, proc = workflow_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((workdir / "ci-summary.json").read_text())
    assert summary["schema"] == "edgevlm.ci/1" and summary["status"] == "pass" and summary["exit_code"] == 0
    assert [(s["step"], s["exit_code"]) for s in summary["steps"]] == \
        [("export", 0), ("verify", 0), ("bench", 0), ("quality", 0)]
    assert summary["failed_gates"] == []
    out = workdir / "edgevlm-ci"
    assert (out / "ci-tiny" / "manifest.json").is_file()
    export = json.loads((out / "results" / "export-ci-tiny.json").read_text())  # `export --json`
    assert export["schema"] == "edgevlm.export-result/1" and export["recipe"] == "ci-tiny"
    assert {a["part"] for a in export["artifacts"]} == {"vision", "decoder"}
    for artifact in export["artifacts"]:
        assert (out / "ci-tiny" / artifact["file"]).is_file() and len(artifact["sha256"]) == 64
    verify = json.loads((out / "results" / "verify-ci-tiny.json").read_text())
    assert verify and all(r["status"] == "pass" for r in verify)
    bench = json.loads((out / "results" / "bench-ci-tiny.json").read_text())  # one report per part
    vision = next(r for r in bench if r["kind"] == "vision_encoder")
    assert {(r["runtime"], r["status"]) for r in vision["results"]} >= {("ort:fp32", "ok")}
    assert all(r["metrics"]["runs"] == 2 for r in vision["results"])
    quality = json.loads((out / "results" / "quality.json").read_text())  # `quality --json`
    assert quality == json.loads((out / "quality.json").read_text())
    assert quality["status"] == "pass" and quality["heldout"]["samples"] == 4
    assert {r["recipe"] for r in quality["rows"]} == {"ci-tiny"}
    assert json.loads((out / "ci-summary.json").read_text()) == summary


def test_a_failed_gate_exits_1_naming_it_after_every_step_ran(tiny_checkpoints, tmp_path):
    from edgevlm.cli.main import main

    (tmp_path / "lossy.yaml").write_text(yaml.safe_dump(LOSSY_RECIPE))
    code = main(["ci", str(tiny_checkpoints["minicpmv-2.6-tiny"]), "--recipes", str(tmp_path / "lossy.yaml"),
                 "--out", str(tmp_path / "out"), "--no-quality", "--bench-runs", "1", "--bench-warmup", "0",
                 "--json", str(tmp_path / "summary.json")])
    assert code == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "gate failed"
    assert [(s["step"], s["exit_code"]) for s in summary["steps"]] == \
        [("export", 0), ("verify", 1), ("bench", 0), ("quality", None)]  # bench still ran
    [gate] = summary["failed_gates"]
    assert gate["step"] == "verify" and gate["check"] == "numerics" and "gate sqnr_db >= 25" in gate["detail"]
    assert gate["artifact"].endswith(".vision.ort.int8.onnx")


def test_bad_input_exits_2_before_any_export(tiny_checkpoints, tmp_path, capsys):
    from edgevlm.cli.main import main

    assert main(["ci", str(tmp_path / "missing"), "--recipes", "ort", "--out", str(tmp_path / "out")]) == 2
    assert "not a checkpoint folder" in capsys.readouterr().err
    assert main(["ci", str(tiny_checkpoints["minicpmv-2.6-tiny"]), "--recipes", "ort,no-such-recipe",
                 "--out", str(tmp_path / "out")]) == 2
    assert "unknown recipe 'no-such-recipe'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_exit_code_an_error_is_never_passed_off_as_a_gate_and_a_failed_export_skips_its_recipe(
        tiny_checkpoints, tmp_path):
    """The job's bookkeeping, with each subcommand's exit code given (the real steps run above)."""
    from edgevlm.ci_job import CIPlan, run_ci, summary

    codes = {"export": {"ort": 0, "ios-m4": 3}, "verify": 1, "bench": 70, "quality": 1}

    def run_step(argv):
        step = argv[0]
        if step == "export":
            return codes["export"][argv[argv.index("--recipe") + 1]]
        return codes[step]

    plan = CIPlan(tiny_checkpoints["minicpmv-2.6-tiny"], ("ort", "ios-m4"), tmp_path / "out")
    result = summary(run_ci(plan, run_step))
    assert result["exit_code"] == 70 and result["status"] == "error"
    assert [(s["step"], s["recipe"], s["exit_code"]) for s in result["steps"]] == [
        ("export", "ort", 0), ("verify", "ort", 1), ("bench", "ort", 70),
        ("export", "ios-m4", 3), ("verify", "ios-m4", None), ("bench", "ios-m4", None), ("quality", None, 1)]
    quality = result["steps"][-1]["command"]
    assert "--recipe ort" in quality and "ios-m4" not in quality and "--reuse" in quality  # only what exported
    codes.update(bench=0, export={"ort": 0, "ios-m4": 0})
    assert summary(run_ci(plan, run_step))["exit_code"] == 1
