"""`edgevlm ci`: the CI export job (edgevlm/ci_job.py) as a command; .github/workflows/edgevlm-export.yml runs it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def ci_args(p: argparse.ArgumentParser) -> None:
    from edgevlm.cli.recipe_commands import recipe_help, set_arg

    p.add_argument("checkpoint", type=Path, help="checkpoint directory")
    p.add_argument("--recipes", required=True,
                   help="comma-separated; each a " + recipe_help())
    set_arg(p)
    p.add_argument("--out", type=Path, required=True,
                   help="job folder: OUT/<recipe> exports, OUT/results/*.json, OUT/quality.json, OUT/ci-summary.json")
    p.add_argument("--json", type=Path, help="also write the summary (schema edgevlm.ci/1) here")
    p.add_argument("--samples", type=int, default=300, help="quality's held-out samples (the standard set is 300)")
    p.add_argument("--max-patches", type=int, help="static patch count of the vision artifacts (default: the recipe's)")
    p.add_argument("--bench-runs", type=int, default=10, help="timed runs per runtime in the host bench")
    p.add_argument("--bench-warmup", type=int, default=3)
    p.add_argument("--no-quality", action="store_true", help="skip the quality step (its accuracy gates too)")
    p.add_argument("--overwrite", action="store_true", help="replace exports an earlier job left in OUT")


def ci(args) -> int:
    from edgevlm.ci_job import CIPlan, run_ci, summary

    plan = CIPlan(checkpoint=args.checkpoint, recipes=tuple(r.strip() for r in args.recipes.split(",") if r.strip()),
                  out=args.out, overrides=tuple(args.overrides), samples=args.samples, max_patches=args.max_patches,
                  bench_runs=args.bench_runs, bench_warmup=args.bench_warmup, overwrite=args.overwrite,
                  quality=not args.no_quality)
    result = summary(run_ci(plan))
    text = json.dumps(result, indent=2) + "\n"
    (args.out / "ci-summary.json").write_text(text)
    if args.json:
        args.json.write_text(text)
    print(f"\nedgevlm ci: {result['status']} (exit {result['exit_code']})")
    for step in result["steps"]:
        where = f" {step['recipe']}" if step["recipe"] else ""
        print(f"  {step['status']:<12} {step['step']}{where}  {step['seconds']:.0f} s"
              + (f"  ({step['reason']})" if "reason" in step else ""))
    for gate in result["failed_gates"]:
        print("  failed gate: " + ", ".join(f"{k}={v}" for k, v in gate.items()), file=sys.stderr)
    print(f"wrote {args.out / 'ci-summary.json'}", file=sys.stderr)
    return result["exit_code"]
