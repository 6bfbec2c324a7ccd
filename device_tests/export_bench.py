"""`edgevlm bench-export`: export a checkpoint under a CI runner's memory cap, then `verify` and `run`
the result, and report wall time and peak memory per stage, artifact sizes and run timings.

Each step runs in its own process under device_tests/memory_cap.py (a memory cgroup where one can
be made): the export's own stage table (manifest `export.resources`: wall time and VmHWM per stage)
sits beside the cap's measurements of the whole process (cgroup peak charge, sampled peak RSS and
anonymous memory), so page cache (shards, parked codes) and private memory can be told apart.
A checkpoint is written once per preset (seeded, bf16 for real sizes) into the work folder.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from edgevlm.device_tests.memory_cap import run_capped

GIB = 1 << 30
SCHEMA = "edgevlm.export-bench/1"


def ensure_checkpoint(preset_name: str, work: Path, layers: int | None = None) -> Path:
    """The preset's seeded checkpoint in work/checkpoints (written once; `layers` keeps the first N
    decoder layers: a real-width proxy)."""
    import dataclasses

    from edgevlm.checkpoint.writer import write_checkpoint
    from edgevlm.presets import get_preset

    preset = get_preset(preset_name)
    config = preset.build_config()
    if layers:
        config = dataclasses.replace(config, llm=dataclasses.replace(config.llm, num_hidden_layers=layers))
    from edgevlm.checkpoint.writer import RANDOM_WEIGHTS_KEY

    path = work / "checkpoints" / (preset_name + (f"-{layers}l" if layers else ""))
    written = config.to_dict() | {RANDOM_WEIGHTS_KEY: {"seed": 0}}  # what write_checkpoint records
    if not (path / "config.json").is_file() or json.loads((path / "config.json").read_text()) != written:
        write_checkpoint(config, path, seed=0, dtype=preset.dtype, overwrite=True)
    return path


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgevlm.cli.main", *args]


def _step(name: str, cmd: list[str], cap: int, timeout: float | None) -> dict:
    print(f"[bench-export] {name}: {' '.join(cmd[3:])}", file=sys.stderr, flush=True)
    run = run_capped(cmd, cap, timeout=timeout, echo_stderr=True)
    result = run.to_dict() | {"step": name, "ok": run.returncode == 0, "stdout_tail": run.stdout[-4000:],
                              "stderr_tail": run.stderr[-4000:]}
    print(f"[bench-export] {name}: exit {run.returncode} in {run.seconds:.0f} s, peak {run.peak_bytes / GIB:.2f} GiB "
          f"({run.method}), anon {run.peak_anon_bytes / GIB:.2f} GiB", file=sys.stderr, flush=True)
    return result


def bench_export(model: Path, recipe: str, out: Path, part: str = "all", cap_gb: float = 16.0,
                 verify: bool = True, run: bool = True, timeout: float | None = None,
                 overrides: tuple[str, ...] = ()) -> dict:
    """overrides: `--set section.field=value` strings, passed on to `edgevlm export`."""
    cap = int(cap_gb * GIB)
    started = time.time()
    sets = [arg for text in overrides for arg in ("--set", text)]
    steps = [_step("export", _cli("export", "--model", str(model), "--recipe", recipe, "--out", str(out),
                                  "--part", part, "--overwrite", *sets), cap, timeout)]
    report = {"schema": SCHEMA, "model": str(model), "recipe": recipe, "overrides": list(overrides), "part": part,
              "cap_bytes": cap, "started": started, "steps": steps}
    if not steps[0]["ok"]:
        return report
    manifest = json.loads((out / "manifest.json").read_text())
    report["export"] = manifest["export"]
    report["artifacts"] = [{"file": a["file"], "bytes": a["bytes"] + sum(e["bytes"] for e in a.get("extra_files", []))}
                           for a in manifest["artifacts"]]
    if verify:
        steps.append(_step("verify", _cli("verify", str(out), "--json", str(out / "verify.json")), cap, timeout))
        if (out / "verify.json").is_file():
            results = json.loads((out / "verify.json").read_text())
            report["verify"] = {"statuses": sorted({r["status"] for r in results}),
                                "failed": [f"{r['artifact']}: {r['check']}" for r in results if r["status"] == "fail"],
                                "numerics": [f"{r['artifact']}: {r['detail']}" for r in results
                                             if r["check"] == "numerics"]}
    if run and any(a["part"] == "decoder" for a in manifest["artifacts"]):
        from edgevlm import defaults

        prompt = ["--prompt", "Describe a sunny day.", "--max-new-tokens", "16"]
        if any(a["part"] == "vision" for a in manifest["artifacts"]):
            image = out.parent / "bench-export-demo.png"
            defaults.demo_image().save(image)
            prompt = ["--image", str(image), "--prompt", "What is in the picture?", *prompt[2:]]
        # a --part decoder export has no vision artifact: run it on text alone
        step = _step("run", _cli("run", "--artifacts", str(out), *prompt), cap, timeout)
        steps.append(step)
        report["run"] = {"text": step["stdout_tail"].strip()[-500:],
                         "speed": next((line for line in step["stderr_tail"].splitlines()[::-1]
                                        if line.startswith("[vision")), None)}
    return report


def table(report: dict):
    from rich.table import Table

    t = Table(title=f"{Path(report['model']).name} / {report['recipe']} / --part {report['part']} under "
                    f"{report['cap_bytes'] / GIB:.0f} GiB")
    for column in ("stage", "seconds", "peak RSS GiB"):
        t.add_column(column)
    for stage in report.get("export", {}).get("resources", {}).get("stages", []):
        t.add_row(stage["name"], f"{stage['seconds']:.1f}", f"{stage['peak_rss_bytes'] / GIB:.2f}")
    for step in report["steps"]:
        t.add_row(f"[b]{step['step']} (process)[/]", f"{step['seconds']:.1f}",
                  f"{step['peak_bytes'] / GIB:.2f} ({step['method']}; anon {step['peak_anon_bytes'] / GIB:.2f})"
                  + ("" if step["ok"] else " FAILED"))
    for artifact in report.get("artifacts", []):
        t.add_row(f"[dim]{artifact['file']}[/]", "", f"{artifact['bytes'] / GIB:.3f} GiB on disk")
    return t
