"""`edgevlm device-bench`: one benchmark command for every device kind, one result schema."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgevlm.cli.artifact_commands import artifacts_arg, artifacts_dir


def _contexts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--contexts takes lengths like 128,1024,4096, got `{text}`") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--contexts takes positive lengths, got `{text}`")
    return values


def device_bench_args(p: argparse.ArgumentParser) -> None:
    artifacts_arg(p, "export folder (manifest.json, decoder .pte, vision artifacts)")
    p.add_argument("--device", default="host", metavar="SPEC",
                   help="host | qemu-aarch64 | adb[:SERIAL] | macos | aihub[:DEVICE NAME] | "
                        "aws-device-farm:PROJECT_ARN")
    p.add_argument("--contexts", type=_contexts, default=(128, 1024, 4096),
                   help="prompt lengths / contexts for prefill and decode (comma-separated)")
    p.add_argument("--runs", type=int, default=10, help="timed vision encodes per round, after warm-up (10)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--decode-tokens", type=int, default=32, help="decode steps timed at each context")
    p.add_argument("--max-new-tokens", type=int, default=32, help="length of the end-to-end answer")
    p.add_argument("--rounds", type=int, default=1, help="rounds, each after cooling down to the start temperature")
    p.add_argument("--image", type=Path, help="image for the vision and end-to-end runs (default: the demo scene)")
    p.add_argument("--prompt", default="What is in the picture?")
    p.add_argument("--vision", default="auto", metavar="auto|pte|FILE", help="which vision encoder the runtime uses")
    p.add_argument("--threads", type=int, default=0, help="the runtime's CPU threads (0: its default)")
    p.add_argument("--idle-seconds", type=float, default=5.0, help="idle power window before each round")
    p.add_argument("--sample-hz", type=int, default=20, help="power samples per second (at least 10 is useful)")
    p.add_argument("--allow-charging", action="store_true",
                   help="report power even while the phone charges (the numbers then mix in the charger)")
    p.add_argument("--perfetto", action="store_true",
                   help="Android: also record a Perfetto trace (android.power: power rails, battery counters)")
    p.add_argument("--battery-root", help="the battery's sysfs folder on the device, when discovery picks wrong")
    p.add_argument("--json", type=Path, default=Path("device-bench.json"),
                   help="result file (schema edgevlm.bench/2); raw files go beside it in NAME.raw/")


def device_bench(args) -> int:
    from edgevlm.device_tests.device_bench import DeviceBenchPlan, bench_device
    from edgevlm.reports.bench_tables import print_device_report
    from edgevlm.device_tests.schema import validate_bench

    plan = DeviceBenchPlan(contexts=args.contexts, runs=args.runs, warmup=args.warmup,
                           decode_tokens=args.decode_tokens, max_new_tokens=args.max_new_tokens, rounds=args.rounds, prompt=args.prompt, image=args.image,
                           vision=args.vision, threads=args.threads, idle_s=args.idle_seconds,
                           sample_hz=args.sample_hz, allow_charging=args.allow_charging,
                           battery_root=args.battery_root, perfetto=args.perfetto)
    report = bench_device(artifacts_dir(args), args.device, plan, args.json)
    validate_bench(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_device_report(report)
    print(f"wrote {args.json} (raw samples and device outputs in {args.json.stem}.raw/)")
    return 0
