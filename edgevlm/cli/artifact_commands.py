"""`export`, `verify` and `bench`: the artifact side of the CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def artifacts_arg(p: argparse.ArgumentParser, what: str = "export folder (with manifest.json)") -> None:
    """The artifact folder, named the same way by every command: `edgevlm CMD OUT` (`--artifacts OUT`
    is kept as the older spelling)."""
    p.add_argument("artifacts", type=Path, nargs="?", metavar="ARTIFACTS", help=what)
    p.add_argument("--artifacts", dest="artifacts_option", type=Path, metavar="ARTIFACTS",
                   help="the same folder, as an option")


def artifacts_dir(args) -> Path:
    """The folder given positionally or by --artifacts (exactly one)."""
    from edgevlm.errors import ConfigError

    given = [p for p in (args.artifacts, getattr(args, "artifacts_option", None)) if p is not None]
    if len(given) != 1:
        raise ConfigError(f"`edgevlm {args.command}` needs one export folder" if not given else
                          f"two export folders given ({given[0]} and {given[1]})",
                          f"e.g. `edgevlm {args.command} ./out` (the --out of `edgevlm export`)")
    return given[0]


def export_args(p: argparse.ArgumentParser) -> None:
    from edgevlm.cli.recipe_commands import recipe_help, set_arg

    p.add_argument("--model", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--recipe", required=True, help=recipe_help())
    set_arg(p)
    p.add_argument("--out", type=Path, required=True, help="artifact directory to create")
    p.add_argument("--part", default="all", choices=["vision", "decoder", "all"])
    p.add_argument("--max-patches", type=int, help="override the recipe's static patch count per slice")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json", type=Path, help="also write the result (schema edgevlm.export-result/1: artifacts, "
                                             "files, bytes, sha256, seconds, peak RSS) here")


def export(args) -> int:
    import dataclasses

    from edgevlm.export.host import check_max_patches
    from edgevlm.export.recipes import RANGES, load_recipe
    from edgevlm.outputs import check_output

    # Everything that can be refused is refused here, before the model loads (seconds to minutes).
    recipe = load_recipe(args.recipe, args.overrides)
    if args.max_patches is not None:
        check_option_range("--max-patches", args.max_patches, RANGES["max_patches"])
        recipe = dataclasses.replace(recipe, vision=tuple(dataclasses.replace(v, max_patches=args.max_patches)
                                                          for v in recipe.vision))
    check_output(args.out, args.overwrite)
    if args.part in ("vision", "all"):
        check_max_patches(args.model, recipe)
    from edgevlm.export.driver import export_model
    from edgevlm.progress import print_stage

    out = export_model(args.model, recipe, args.out, part=args.part, overwrite=args.overwrite,
                       on_stage=print_stage)
    from edgevlm.cli.export_summary import next_steps, summary_lines

    manifest = json.loads((out / "manifest.json").read_text())
    resources = manifest["export"]["resources"]
    print(f"exported {manifest['recipe']['name']} in {resources['seconds']:.0f} s "
          f"(peak RSS {resources['peak_rss_bytes'] / 2**30:.2f} GiB):")
    for line in summary_lines(out, manifest):
        print("  " + line)
    print("next:")
    for step in next_steps(out, manifest):
        print("  " + step)
    if args.json:
        from edgevlm.cli.json_result import sha256_file, write_json

        write_json(args.json, {
            "schema": "edgevlm.export-result/1", "recipe": manifest["recipe"]["name"], "out": str(out),
            "part": args.part, "seconds": resources["seconds"], "peak_rss_bytes": resources["peak_rss_bytes"],
            "artifacts": [{k: a[k] for k in ("file", "part", "target", "precision", "bytes", "sha256")}
                          for a in manifest["artifacts"]],
            "files": manifest.get("files", []), "manifest_sha256": sha256_file(out / "manifest.json")})
    return 0


def check_option_range(option: str, value: int, bounds: tuple[int, int]) -> None:
    from edgevlm.errors import ConfigError

    low, high = bounds
    if not low <= value <= high:
        raise ConfigError(f"{option} {value} is out of range", f"use a value from {low} to {high}")


def no_verify_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-verify", action="store_true",
                   help="development only: load artifacts without checking their sha256 against the manifest "
                        "(logged as a warning)")


def verify_args(p: argparse.ArgumentParser) -> None:
    artifacts_arg(p)
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--all-slices", action="store_true",
                   help="run every verification slice on emulated runtimes too (QNN HTP emulation: slow)")


def verify(args) -> int:
    from dataclasses import asdict

    from edgevlm.reports.verify_table import print_verify_results
    from edgevlm.export.verify import FAIL, verify_artifacts

    folder = artifacts_dir(args)
    from edgevlm.progress import print_stage

    results = verify_artifacts(folder, all_slices=args.all_slices, on_stage=print_stage)
    print_verify_results(results, f"verify {folder}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 1 if any(r.status == FAIL for r in results) else 0


def bench_args(p: argparse.ArgumentParser) -> None:
    artifacts_arg(p)
    p.add_argument("--json", type=Path, help="write the results (JSON, bench schema v1) here")
    p.add_argument("--runs", type=int, default=10, help="timed runs per runtime (after warm-up)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--include-emulators", action="store_true", help="also time the QNN HTP emulator")
    no_verify_arg(p)


def bench(args) -> int:
    from edgevlm.device_tests.host_bench import bench_vision
    from edgevlm.export.integrity import check_files
    from edgevlm.export.manifest import read_manifest
    from edgevlm.reports.bench_tables import print_vision_bench

    folder = artifacts_dir(args)
    manifest = read_manifest(folder)  # before any artifact is loaded: every file it will time
    check_files(folder, manifest, manifest["artifacts"], prefixes=("verification/",),
                verify=not args.no_verify)
    report = bench_vision(folder, warmup=args.warmup, runs=args.runs, include_emulators=args.include_emulators)
    print_vision_bench(report)
    decoders = _bench_decoders(folder)
    if args.json:
        args.json.write_text(json.dumps(report if decoders is None else [report, decoders], indent=2) + "\n")
    return 0


def _bench_decoders(artifacts: Path):
    """The manifest's decoder artifacts, timed by the decoder harness (None when there are none)."""
    from edgevlm.export.manifest import read_manifest

    if not any(a["part"] == "decoder" for a in read_manifest(artifacts)["artifacts"]):
        return None
    from edgevlm.device_tests.decoder_bench import bench_manifest_decoders
    from edgevlm.reports.decoder_tables import print_manifest_decoders

    report = bench_manifest_decoders(artifacts)
    print_manifest_decoders(report)
    return report


def aihub_args(p: argparse.ArgumentParser) -> None:
    artifacts_arg(p, "export folder of an android-sd8g3 recipe (with manifest.json)")
    p.add_argument("--device", default="Samsung Galaxy S24 (Family)", help="AI Hub device name")
    p.add_argument("--no-wait", action="store_true", help="submit the compile job and return its id")
    p.add_argument("--json", type=Path, help="write the profile as a bench/2 report here (as device-bench --device aihub)")


def aihub(args) -> int:
    from edgevlm.backends import aihub as hub
    from edgevlm.device_tests.devices.farms import aihub_report
    from edgevlm.device_tests.schema import validate_bench
    from edgevlm.export.integrity import check_files
    from edgevlm.export.manifest import read_manifest

    folder = artifacts_dir(args)
    manifest = read_manifest(folder)
    artifact, _ = hub.qnn_source(manifest, folder)
    hub.preflight()  # client, token, network: each named before the artifact is hashed and uploaded
    check_files(folder, manifest, [artifact], prefixes=())  # upload only the exported bytes
    result = hub.submit(folder, manifest, args.device, wait=not args.no_wait)
    print(f"AI Hub jobs: {result['jobs']}")
    if result["profile"] is None:
        return 0
    entry = hub.aihub_vision_entry(result["profile"], artifact, args.device)
    report = aihub_report(manifest, folder, args.device, result["jobs"], entry)
    validate_bench(report)
    print(f"{args.device}: median {entry['metrics']['median_ms']:.2f} ms, "
          f"layers by compute unit {entry['compute_units']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def run_args(p: argparse.ArgumentParser) -> None:
    artifacts_arg(p, "export folder with manifest.json and a decoder .pte or .onnx")
    p.add_argument("--image", type=Path, action="append", default=[], help="image file (repeat for several)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--vision", default="auto", metavar="auto|pte|FILE",
                   help="vision encoder: auto (the most faithful runnable vision artifact, else the decoder .pte's "
                        "vision_encoder), pte (that method), or a vision artifact's file name")
    p.add_argument("--reference", action="store_true",
                   help="also run the eager model (manifest's model.source) and report where the tokens diverge")
    p.add_argument("--json", type=Path, help="also write tokens, text and timings as JSON here")
    no_verify_arg(p)


def run(args) -> int:
    import sys

    from edgevlm.cli.inputs import load_inputs, print_note, random_weights_note, vision_timing_label
    from edgevlm.export.run import ArtifactRunner, first_divergence

    folder = artifacts_dir(args)
    images = load_inputs(args.image, args.prompt)  # before the artifacts load
    runner = ArtifactRunner(folder, verify=not args.no_verify, vision=args.vision)
    result = runner.generate(images, args.prompt, args.max_new_tokens,
                             on_token=lambda piece: print(piece, end="", flush=True))
    print()
    print(f"[{result.prompt_tokens} prompt tokens, {len(result.tokens)} generated, stopped by {result.stopped_by}; "
          f"vision {result.vision_artifact}, decoder {runner.decoder['file']}]", file=sys.stderr)
    vision_label = vision_timing_label(runner.vision_backend) if runner.vision else None
    print(f"[{result.speed_line(vision_label)}]", file=sys.stderr)
    if result.stopped_by == "max_seq_len":
        print(f"note: generation reached the end of the decoder's cache ({runner.max_seq_len} positions)",
              file=sys.stderr)
    print_note(random_weights_note(runner.manifest["config"], runner.manifest["model"]["id"]))
    if args.json:
        args.json.write_text(json.dumps({"tokens": result.tokens, "text": result.text, "stopped_by": result.stopped_by,
                                         "prompt_tokens": result.prompt_tokens, "timings": result.timings,
                                         "vision_timing": vision_label or "host runtime"}, indent=2) + "\n")
    if args.reference:
        _compare_with_reference(runner, images, args, result, first_divergence)
    return 0


def _compare_with_reference(runner, images, args, result, first_divergence) -> None:
    from edgevlm.checkpoint.loader import load_model
    from edgevlm.generate import generate
    from edgevlm.preprocess import preprocess

    loaded = load_model(Path(runner.manifest["model"]["source"]))
    inputs = preprocess(images, args.prompt, loaded.tokenizer, loaded.config, loaded.processor_config)
    reference = generate(loaded, inputs, max_new_tokens=args.max_new_tokens)
    at = first_divergence(reference.tokens, result.tokens)
    if at is None:
        print(f"reference: identical ({len(result.tokens)} tokens)")
    else:
        gap = (reference.step_logits[at] - result.step_logits[at]).abs().max().item() \
            if at < min(len(reference.step_logits), len(result.step_logits)) else float("nan")
        print(f"reference: diverges at generated token {at} (reference {reference.tokens[at:at + 1]}, "
              f"artifacts {result.tokens[at:at + 1]}; max logit gap there {gap:.4g}); "
              f"reference text {reference.text!r}")


def bench_export_args(p: argparse.ArgumentParser) -> None:
    from edgevlm.cli.recipe_commands import set_arg

    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="checkpoint directory")
    source.add_argument("--preset", help="write (once, into --work) and export this preset's seeded checkpoint")
    p.add_argument("--layers", type=int, help="with --preset: keep the first N decoder layers (a real-width proxy)")
    p.add_argument("--recipe", required=True)
    set_arg(p)
    p.add_argument("--part", default="all", choices=["vision", "decoder", "all"])
    p.add_argument("--cap-gb", type=float, default=16.0, help="memory cap of every step (default: a 16 GB CI runner)")
    p.add_argument("--work", type=Path, default=Path("runs/bench-export"), help="checkpoints and exports go here")
    p.add_argument("--no-verify", action="store_true")
    p.add_argument("--no-run", action="store_true")
    p.add_argument("--timeout", type=float, help="seconds per step")
    p.add_argument("--json", type=Path, help="write the report (schema edgevlm.export-bench/1) here")


def bench_export(args) -> int:
    from rich.console import Console

    from edgevlm.device_tests.export_bench import bench_export as run_bench, ensure_checkpoint, table
    from edgevlm.export.recipes import load_recipe

    load_recipe(args.recipe, args.overrides)  # a bad recipe or --set fails now, not after a checkpoint is written
    model = args.model or ensure_checkpoint(args.preset, args.work, args.layers)
    out = args.work / "exports" / f"{model.name}.{Path(args.recipe).stem}.{args.part}"
    report = run_bench(model, args.recipe, out, args.part, args.cap_gb, verify=not args.no_verify,
                       run=not args.no_run, timeout=args.timeout, overrides=tuple(args.overrides))
    Console().print(table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = [s for s in report["steps"] if not s["ok"]]
    for step in failed:
        print(f"{step['step']} failed (exit {step['returncode']}"
              + (", killed at the memory cap" if step["killed_for_memory"] else "") + "):\n"
              + step["stderr_tail"][-1500:])
    return 1 if failed else 0
