"""Subcommands. Each is a small object with `register(subparsers)`; COMMANDS is the registry."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgevlm import defaults


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]

    def register(self, sub) -> None:
        parser = sub.add_parser(self.name, help=self.help, description=self.help)
        self.add_arguments(parser)
        parser.set_defaults(handler=self.run)


# ---- checkpoint -----------------------------------------------------------------------------------


def _checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="preset name (see --list)")
    p.add_argument("--out", type=Path, help="directory to write (must not exist or be empty)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="default: the preset's")
    p.add_argument("--shard-mb", type=int, default=2048, help="maximum shard size in MiB")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--list", action="store_true", help="list presets and exit")
    p.add_argument("--json", type=Path, help="also write the result (schema edgevlm.checkpoint-result/1: files, "
                                             "bytes, sha256, seconds) here")


def _checkpoint(args) -> int:
    from edgevlm.checkpoint.writer import write_checkpoint
    from edgevlm.errors import ConfigError
    from edgevlm.presets import PRESETS, get_preset

    if args.list:
        width = max(map(len, PRESETS))
        for name, preset in PRESETS.items():
            print(f"{name:<{width}}  {preset.description}")
        return 0
    if not args.preset or not args.out:
        raise ConfigError("`edgevlm checkpoint` needs --preset and --out",
                          "e.g. `edgevlm checkpoint --preset minicpmv-2.6-tiny --out ./tiny` (see --list)")
    import time

    from edgevlm.cli.json_result import files_written, write_json

    preset = get_preset(args.preset)
    start = time.perf_counter()
    write_checkpoint(preset.build_config(), args.out, seed=args.seed, dtype=args.dtype or preset.dtype,
                     shard_bytes=args.shard_mb * 1024 ** 2, overwrite=args.overwrite)
    print(f"wrote {preset.name} (seed {args.seed}) to {args.out}")
    if args.json:
        write_json(args.json, {"schema": "edgevlm.checkpoint-result/1", "preset": preset.name, "seed": args.seed,
                               "dtype": args.dtype or preset.dtype, "out": str(args.out),
                               "seconds": round(time.perf_counter() - start, 2), "files": files_written(args.out)})
    return 0


# ---- inspect --------------------------------------------------------------------------------------


def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="checkpoint directory")
    p.add_argument("--json", type=Path, nargs="?", const=Path("-"), metavar="PATH",
                   help="also write the summary as JSON here (`--json` alone: print JSON instead of the table)")
    p.add_argument("--check", action="store_true",
                   help="also check every weight's name and shape against the model config.json describes "
                        "(builds the model on the meta device: seconds)")


def _inspect(args) -> int:
    from edgevlm.summary import inspect_checkpoint

    info = inspect_checkpoint(args.model, check=args.check)
    if args.json == Path("-"):
        print(json.dumps(info, indent=2))
        return 0
    print_summary(info)
    if args.json:
        args.json.write_text(json.dumps(info, indent=2) + "\n")
    return 0


def print_summary(info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"MiniCPM-V {info['version']} ({info['llm_family']})  {info['path']}", show_header=False)
    for section in ("parameters", "weights", "vision", "resampler", "llm", "tokenizer", "slicing"):
        value = info[section]
        text = ", ".join(f"{k}={_human(v) if section == 'parameters' else v}" for k, v in value.items())
        table.add_row(section, text)
    Console().print(table)


def _human(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


# ---- generate -------------------------------------------------------------------------------------


def _generate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--image", type=Path, action="append", default=[], help="image file (repeatable)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--json", type=Path, help="also write tokens and text as JSON here")


def _generate(args) -> int:
    from edgevlm.checkpoint.loader import load_model
    from edgevlm.cli.inputs import load_inputs, print_note, random_weights_note
    from edgevlm.generate import generate
    from edgevlm.preprocess import preprocess

    images = load_inputs(args.image, args.prompt)  # before the model loads
    loaded = load_model(args.model, dtype=args.dtype)
    inputs = preprocess(images, args.prompt, loaded.tokenizer, loaded.config, processor_config=loaded.processor_config)
    trace = generate(loaded, inputs, max_new_tokens=args.max_new_tokens,
                     on_token=lambda piece: print(piece, end="", flush=True))
    print()
    print(f"[{len(inputs.input_ids)} prompt tokens, {len(inputs.pixel_values)} slices, "
          f"{len(trace.tokens)} new tokens, stopped by {trace.stopped_by}]", file=sys.stderr)
    print_note(random_weights_note(loaded.config.extra, str(args.model)))
    if args.json:
        args.json.write_text(json.dumps({"tokens": trace.tokens, "text": trace.text,
                                         "stopped_by": trace.stopped_by}, indent=2) + "\n")
    return 0


# ---- the default job ------------------------------------------------------------------------------


def default_job(args) -> int:
    """No command given: the main job (edgevlm/cli/default_job.py)."""
    from edgevlm.cli.default_job import default_job as main_job

    return main_job(args)


from edgevlm.cli import artifact_commands as _artifacts  # noqa: E402  (after Command is defined)
from edgevlm.cli import bundle_commands as _bundle  # noqa: E402
from edgevlm.cli import ci_commands as _ci  # noqa: E402
from edgevlm.cli import decoder_commands as _decoder  # noqa: E402
from edgevlm.cli import device_commands as _device  # noqa: E402
from edgevlm.cli import oracle_commands as _oracle  # noqa: E402
from edgevlm.cli import quality_commands as _quality  # noqa: E402
from edgevlm.cli import recipe_commands as _recipes  # noqa: E402
from edgevlm.cli import report_commands as _report  # noqa: E402
from edgevlm.cli import runtime_commands as _runtime  # noqa: E402
from edgevlm.cli import tool_commands as _tools  # noqa: E402

COMMANDS = [
    Command("checkpoint", "write a seeded random checkpoint of a preset in the official layout",
            _checkpoint_args, _checkpoint),
    Command("inspect", "summarise a checkpoint directory from its file headers (no weights loaded; --check validates every name and shape)", _inspect_args, _inspect),
    Command("generate", "reference greedy generation with the eager model", _generate_args, _generate),
    Command("recipes", "list the export recipes (built-in and $EDGEVLM_RECIPES) with their targets",
            _recipes.recipes_args, _recipes.recipes),
    Command("export", "export artifacts + manifest.json for a recipe (atomic: all or nothing)",
            _artifacts.export_args, _artifacts.export),
    Command("bench-export", "export under a memory cap (default 16 GB), then verify and run: wall time and peak "
            "memory per stage, artifact sizes (JSON report)", _artifacts.bench_export_args, _artifacts.bench_export),
    Command("verify", "check every artifact of a manifest: checksums, I/O contract, numerics vs the eager model",
            _artifacts.verify_args, _artifacts.verify),
    Command("bundle", "copy a verified export into an Android or iOS app's layout (assets, native sources, "
                      "INTEGRATION.md) with sizes against the stores' limits", _bundle.bundle_args, _bundle.bundle),
    Command("bench", "benchmark the artifacts on this host beside eager PyTorch (JSON results)",
            _artifacts.bench_args, _artifacts.bench),
    Command("bench-decoder", "decoder benchmark: eager PyTorch, our .pte (fp32 and INT4 KV), optimum-executorch "
            "8da4w, side by side (JSON results)", _decoder.bench_decoder_args, _decoder.bench_decoder),
    Command("profile-decoder", "where a decode step of a .pte goes (ExecuTorch ETDump): XNNPACK GEMMs, other "
            "delegate time, ExecuTorch kernels, call counts", _decoder.profile_decoder_args, _decoder.profile_decoder),
    Command("kv-compare", "KV-cache formats (ours and ExecuTorch's) on real activations: attention error, bytes/token",
            _decoder.kv_compare_args, _decoder.kv_compare),
    Command("gemv-stream", "how fast XNNPACK's INT4 GEMVs read weights here (a decode step's layer GEMMs, the "
            "lm_head, one cache-resident GEMM) beside the host's read bandwidth", _tools.gemv_stream_args,
            _tools.gemv_stream),
    Command("bench-decoder-onnx", "ONNX decoder variants (fp32 / INT4 MatMulNBits / QDQ weights x fp32 / INT4 "
            "cache) on ONNX Runtime's CPU EP: sizes, prefill and decode times", _tools.decoder_onnx_bench_args,
            _tools.decoder_onnx_bench),
    Command("run", "image + prompt -> text using only the exported artifacts (manifest, vision artifact, decoder .pte or .onnx)",
            _artifacts.run_args, _artifacts.run),
    Command("build-runner", "build the native runtime (edgevlm-runner: runs artifacts without Python) for this host "
            "or aarch64 Linux", _runtime.build_runner_args, _runtime.build_runner),
    Command("bench-runner", "the native runner beside the Python .pte path on one decoder: decode tok/s, prefill, "
            "peak RSS, same tokens (JSON results)", _runtime.bench_runner_args, _runtime.bench_runner),
    Command("device-bench", "benchmark an export on a device (host, qemu-aarch64, adb phone, macos, AI Hub, AWS Device "
            "Farm): vision ms, prefill/decode tok/s per context, memory, power and energy (schema edgevlm.bench/2)",
            _device.device_bench_args, _device.device_bench),
    Command("aihub", "compile and profile the QNN vision artifact on a Qualcomm AI Hub device (token + network)",
            _artifacts.aihub_args, _artifacts.aihub),
    Command("train-oracle", "train edgevlm-tiny, the quality-oracle model, on synthetic VQA on the CPU (seeded)",
            _oracle.train_oracle_args, _oracle.train_oracle),
    Command("oracle-eval", "held-out exact-match accuracy and answer perplexity of a checkpoint on synthetic VQA",
            _oracle.oracle_eval_args, _oracle.oracle_eval),
    Command("quality", "score recipes on the oracle's held-out VQA (accuracy drop, perplexity, per-layer SQNR, "
            "KV error) against their gates; JSON + markdown", _quality.quality_args, _quality.quality),
    Command("report", "HTML (inline plots), Markdown and JSON from bench / quality / verify results, gated against "
            "--baseline: exit 1 on a regression beyond the runs' own noise", _report.report_args, _report.report),
    Command("ci", "the CI export job: export each recipe, verify, bench on the host, quality with its gates; one "
            "summary JSON with every step's exit code (1 if any gate failed)", _ci.ci_args, _ci.ci),
]
