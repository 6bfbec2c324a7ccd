"""`edgevlm ci`: the CI export job in one place (the GitHub workflow and its test both run it).

Per recipe: export -> verify -> bench on the host; then one `quality` run over every exported recipe
(one eager reference, the recipes' accuracy gates). Each step is the real subcommand, run in this
process through the same parser and `run_handler`, so its exit code is the one a shell would see.
A failed gate does not stop the job: every result is collected. The job's exit code is the first
step's code that is not a gate (2 input, 3 environment, 70 a bug: never passed off as "a gate
failed"), else 1 if any gate failed, else 0.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = "edgevlm.ci/1"
GATE_FAILED = 1


@dataclass(frozen=True)
class CIPlan:
    checkpoint: Path
    recipes: tuple[str, ...]  # names or recipe YAML paths, as `export --recipe` takes them
    out: Path
    overrides: tuple[str, ...] = ()  # `--set` for export and quality alike
    samples: int = 300  # quality's held-out samples (300 is the standard set)
    max_patches: int | None = None
    bench_runs: int = 10
    bench_warmup: int = 3
    overwrite: bool = False
    quality: bool = True


@dataclass
class StepResult:
    step: str  # export | verify | bench | quality
    recipe: str | None
    argv: list[str]
    exit_code: int | None  # None: skipped
    seconds: float = 0.0
    json: str | None = None
    reason: str | None = None  # why it was skipped

    def to_dict(self) -> dict:
        return {"step": self.step, "recipe": self.recipe, "command": "edgevlm " + shlex.join(self.argv),
                "exit_code": self.exit_code, "status": status_of(self.exit_code), "seconds": round(self.seconds, 1),
                "json": self.json, **({"reason": self.reason} if self.reason else {})}


@dataclass
class CIResult:
    plan: CIPlan
    steps: list[StepResult] = field(default_factory=list)

    def exit_code(self) -> int:
        codes = [s.exit_code for s in self.steps if s.exit_code not in (None, 0)]
        other = [c for c in codes if c != GATE_FAILED]
        return other[0] if other else (GATE_FAILED if codes else 0)


def status_of(code: int | None) -> str:
    return {None: "skipped", 0: "pass", GATE_FAILED: "gate failed", 2: "input error", 3: "environment"}.get(
        code, "error")


def check_plan(plan: CIPlan) -> list:
    """Everything refusable before minutes of exporting: the checkpoint, every recipe (with --set),
    the options. Returns the loaded recipes."""
    from edgevlm.errors import ConfigError
    from edgevlm.export.recipes import load_recipe

    if not (plan.checkpoint / "config.json").is_file():
        raise ConfigError(f"{plan.checkpoint} is not a checkpoint folder (no config.json)",
                          "pass the folder of an official MiniCPM-V checkpoint or one written by "
                          "`edgevlm checkpoint --preset NAME --out DIR`")
    if not plan.recipes:
        raise ConfigError("no recipes given", "e.g. --recipes ort,android-sd8g3 (`edgevlm recipes` lists them)")
    if plan.samples < 1 or plan.bench_runs < 1 or plan.bench_warmup < 0:
        raise ConfigError("--samples and --bench-runs must be at least 1, --bench-warmup at least 0",
                          "e.g. --samples 300 --bench-runs 10 --bench-warmup 3")
    recipes = [load_recipe(r, list(plan.overrides)) for r in plan.recipes]
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise ConfigError(f"two recipes share a name ({', '.join(names)}): their exports would share a folder",
                          "give each recipe YAML its own `name:`")
    if "results" in names:  # OUT/results/ holds the steps' JSON
        raise ConfigError("a recipe named `results` would export into the job's results folder",
                          "rename the recipe (its YAML `name:`)")
    return recipes


def run_ci(plan: CIPlan, run_step=None) -> CIResult:
    """Run the job; `run_step(argv) -> exit code` defaults to the real subcommands in this process."""
    run_step = run_step or run_subcommand
    recipes = check_plan(plan)
    result = CIResult(plan)
    results_dir = plan.out / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    sets = [a for o in plan.overrides for a in ("--set", o)]
    patches = ["--max-patches", str(plan.max_patches)] if plan.max_patches is not None else []
    exported = []
    for given, recipe in zip(plan.recipes, recipes):
        folder = plan.out / recipe.name
        export_json = results_dir / f"export-{recipe.name}.json"
        export = _run(run_step, result, "export", recipe.name, export_json,
                      ["export", "--model", str(plan.checkpoint), "--recipe", given, "--out", str(folder),
                       *sets, *patches, *(["--overwrite"] if plan.overwrite else []), "--json", str(export_json)])
        if export.exit_code != 0:
            for step in ("verify", "bench"):
                result.steps.append(StepResult(step, recipe.name, [], None, reason="the export failed"))
            continue
        exported.append(given)
        verify_json = results_dir / f"verify-{recipe.name}.json"
        _run(run_step, result, "verify", recipe.name, verify_json,
             ["verify", str(folder), "--json", str(verify_json)])
        bench_json = results_dir / f"bench-{recipe.name}.json"
        _run(run_step, result, "bench", recipe.name, bench_json,
             ["bench", str(folder), "--json", str(bench_json), "--runs", str(plan.bench_runs),
              "--warmup", str(plan.bench_warmup)])
    if not plan.quality:
        result.steps.append(StepResult("quality", None, [], None, reason="--no-quality"))
    elif not exported:
        result.steps.append(StepResult("quality", None, [], None, reason="no recipe exported"))
    else:
        # --reuse: quality scores the exports above (OUT/<recipe name>) instead of exporting again
        quality_json = results_dir / "quality.json"
        _run(run_step, result, "quality", None, quality_json,
             ["quality", "--model", str(plan.checkpoint), *[a for r in exported for a in ("--recipe", r)],
              *sets, *patches, "--out", str(plan.out), "--reuse", "--samples", str(plan.samples),
              "--no-ablation", "--no-kv-error", "--json", str(quality_json)])
    return result


def _run(run_step, result: CIResult, step: str, recipe: str | None, json_path: Path | None,
         argv: list[str]) -> StepResult:
    if json_path is not None:  # a JSON left by an earlier job must not pass for this step's
        json_path.unlink(missing_ok=True)
    start = time.perf_counter()
    code = run_step(argv)
    done = StepResult(step, recipe, argv, code, time.perf_counter() - start,
                      str(json_path) if json_path is not None and json_path.is_file() else None)
    result.steps.append(done)
    return done


def run_subcommand(argv: list[str]) -> int:
    from edgevlm.cli.exit_codes import run_handler
    from edgevlm.cli.main import build_parser

    print(f"[edgevlm ci] edgevlm {shlex.join(argv)}", flush=True)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse: a usage error in what this job built
        return int(e.code or 0)
    return run_handler(args.handler, args)


def failed_gates(result: CIResult) -> list[dict]:
    """Each failed gate, named: the verify check or the quality row that failed, with its detail."""
    failed = []
    for step in result.steps:
        if step.exit_code != GATE_FAILED or step.json is None:
            continue
        data = json.loads(Path(step.json).read_text())
        if step.step == "verify":
            failed += [{"step": "verify", "recipe": step.recipe, "artifact": r["artifact"], "check": r["check"],
                        "detail": r["detail"]} for r in data if r["status"] == "fail"]
        elif step.step == "quality":
            failed += [{"step": "quality", "recipe": r["recipe"], "component": r["component"], "artifact": r["artifact"],
                        "drop_points": r["drop_points"], "gate": r["gate"]["describe"]}
                       for r in data["rows"] if r.get("status") == "fail"]
    for step in result.steps:  # a gate failure with no JSON to name it (e.g. bench refused a changed file)
        if step.exit_code == GATE_FAILED and step.json is None:
            failed.append({"step": step.step, "recipe": step.recipe, "detail": "see the step's log"})
    return failed


def summary(result: CIResult) -> dict:
    plan, code = result.plan, result.exit_code()
    return {"schema": SCHEMA, "checkpoint": str(plan.checkpoint), "out": str(plan.out),
            "recipes": list(plan.recipes), "overrides": list(plan.overrides), "samples": plan.samples,
            "exit_code": code, "status": status_of(code), "failed_gates": failed_gates(result),
            "steps": [s.to_dict() for s in result.steps]}
