"""`edgevlm quality`: score recipes on the quality oracle's held-out set; JSON + markdown report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def quality_args(p: argparse.ArgumentParser) -> None:
    from edgevlm.calibration.options import QualityOptions

    d = QualityOptions()
    p.add_argument("--model", type=Path, help="checkpoint directory (default: the shipped edgevlm-tiny oracle)")
    from edgevlm.cli.recipe_commands import recipe_help, set_arg

    p.add_argument("--recipe", action="append", default=[],
                   help=recipe_help() + " (repeat; default: every one)")
    set_arg(p)
    p.add_argument("--out", type=Path, required=True,
                   help="report directory: quality.json, quality.md and one export per recipe")
    p.add_argument("--samples", type=int, default=d.samples, help="held-out samples (the standard set is 300)")
    p.add_argument("--min-kind-margin", type=float, default=d.min_kind_margin,
                   help="leave out question kinds the eager oracle answers less than this far above chance "
                        "(its guesses flip under any perturbation); 0 keeps every kind")
    p.add_argument("--no-ablation", action="store_true", help="skip the eager decoder ablation (weights x cache)")
    p.add_argument("--no-layer-sqnr", action="store_true", help="skip the per-layer SQNR of the vision artifacts")
    p.add_argument("--no-kv-error", action="store_true", help="skip the KV-cache attention-error table")
    p.add_argument("--reuse", action="store_true", help="reuse exports already in OUT/<recipe> (no re-export)")
    p.add_argument("--emulated-samples", type=int, default=d.emulated_samples,
                   help="held-out samples the QNN HTP emulator scores (judged by agreement with the artifact's QDQ "
                   "model, which scores every sample and takes the accuracy gates); 0 for all")
    p.add_argument("--max-patches", type=int, help="static patch count of the vision artifacts (default: the "
                   "recipe's); the oracle's slices need 72, and the HTP emulator's time grows with it")
    p.add_argument("--json", type=Path, help="also write the report (schema edgevlm.quality/1, as OUT/quality.json) here")


def quality(args) -> int:
    from edgevlm import defaults
    from edgevlm.calibration.quality import QualityOptions, quality_report
    from edgevlm.errors import ConfigError
    from edgevlm.export.recipes import known_recipes, load_recipe
    from edgevlm.progress import print_stage
    from edgevlm.reports.quality import to_markdown, validate

    if args.samples < 1:
        raise ConfigError("--samples must be at least 1", "e.g. --samples 300 (the standard held-out set)")
    recipes = [load_recipe(r, args.overrides) for r in (args.recipe or sorted(known_recipes()))]
    if args.max_patches is not None:  # refused before any model loads or export starts
        import dataclasses

        from edgevlm.cli.artifact_commands import check_option_range
        from edgevlm.export.host import check_max_patches
        from edgevlm.export.recipes import RANGES

        check_option_range("--max-patches", args.max_patches, RANGES["max_patches"])
        for recipe in recipes:
            check_max_patches(args.model or defaults.oracle_model_dir(), dataclasses.replace(
                recipe, vision=tuple(dataclasses.replace(v, max_patches=args.max_patches) for v in recipe.vision)))
    options = QualityOptions(samples=args.samples, min_kind_margin=args.min_kind_margin, ablation=not args.no_ablation,
                             layer_sqnr=not args.no_layer_sqnr, kv_error=not args.no_kv_error, reuse=args.reuse,
                             max_patches=args.max_patches, emulated_samples=args.emulated_samples or None,
                             on_stage=print_stage)
    report = quality_report(args.model or defaults.oracle_model_dir(), recipes, args.out, options)
    validate(report)
    (args.out / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = to_markdown(report)
    (args.out / "quality.md").write_text(markdown)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown)
    print(f"wrote {args.out / 'quality.json'} and {args.out / 'quality.md'}", file=sys.stderr)
    return 0 if report["status"] == "pass" else 1
