"""`bench-decoder`, `profile-decoder` and `kv-compare`: the decoder side of the host benchmark."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _ints(text: str) -> tuple[int, ...]:
    from edgevlm.errors import ConfigError

    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise ConfigError(f"expected a comma-separated list of positive integers, got {text!r}", "e.g. 128,1024,4096")
    return values


def bench_decoder_args(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="checkpoint directory")
    source.add_argument("--preset", help="write (once, into --work) and benchmark this preset's seeded checkpoint "
                                         "(`edgevlm checkpoint --list`)")
    p.add_argument("--work", type=Path, help="where exports are written and reused (default: MODEL.bench-decoder; "
                                             "with --preset: runs/bench-decoder)")
    p.add_argument("--prompts", type=_ints, default=(128, 1024), help="prefill prompt lengths")
    p.add_argument("--contexts", type=_ints, default=(128, 1024, 4096), help="decode contexts")
    p.add_argument("--seq-len", type=int, help="cache length of the exports (default: longest prompt/context)")
    p.add_argument("--caches", default="fp32,int4",
                   help="our .pte KV-cache formats (fp32, fp16, int8, int4; empty for none)")
    from edgevlm.backends.executorch_decoder import ExecuTorchDecoderBackend

    pte = ExecuTorchDecoderBackend.support
    p.add_argument("--attention", choices=pte.attention, default=pte.default_attention, help=".pte attention strategy")
    p.add_argument("--decode-runs", type=int, default=8)
    p.add_argument("--prefill-runs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2,
                   help="time every runtime this many times, round-robin; each keeps its fastest round")
    p.add_argument("--prefill-warmup", type=int, default=1)
    p.add_argument("--with-optimum", action="store_true",
                   help="also time an optimum-executorch export of the same LLM (opt-in: installs optimum-executorch "
                        "once into its own venv under $EDGEVLM_HOME, from PyPI)")
    p.add_argument("--no-eager", action="store_true", help="skip eager PyTorch")
    p.add_argument("--json", type=Path, help="write the results (bench schema v1, kind decoder) here")


def bench_decoder(args) -> int:
    from edgevlm.device_tests.decoder_bench import BenchPlan, bench_decoder as run
    from edgevlm.reports.decoder_tables import print_decoder_report

    from edgevlm.errors import ConfigError
    from edgevlm.export.decoder.kv_formats import FORMATS

    caches = tuple(c.strip() for c in args.caches.split(",") if c.strip())
    if set(caches) - set(FORMATS):  # empty: only the peers (eager, optimum-executorch)
        raise ConfigError(f"unknown KV-cache format in --caches {args.caches!r}", f"use some of {', '.join(FORMATS)}")
    plan = BenchPlan(caches=caches, prompts=args.prompts, contexts=args.contexts, attention=args.attention,
                     seq_len=args.seq_len,
                     decode_runs=args.decode_runs, prefill_runs=args.prefill_runs, rounds=max(1, args.rounds),
                     prefill_warmup=args.prefill_warmup, optimum=args.with_optimum,
                     eager=not args.no_eager)
    if args.preset:
        from edgevlm.device_tests.export_bench import ensure_checkpoint

        work = args.work or Path("runs/bench-decoder")
        model = ensure_checkpoint(args.preset, work)
    else:
        model, work = args.model, args.work or args.model.with_name(args.model.name + ".bench-decoder")
    report = run(model, work, plan)
    print_decoder_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def kv_compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, help="checkpoint directory (default: the default model, as `edgevlm` "
                                              "with no command uses)")
    p.add_argument("--prompt", action="append", help="prompt (repeatable; default: three built-in questions)")
    p.add_argument("--json", type=Path, help="write the comparison as JSON here")


def kv_compare(args) -> int:
    from edgevlm import defaults
    from edgevlm.checkpoint.loader import load_model
    from edgevlm.reports.decoder_tables import print_kv_report
    from edgevlm.device_tests.kv_compare import PROMPTS, compare_caches

    report = compare_caches(load_model(args.model or defaults.ensure_default_model()), tuple(args.prompt or PROMPTS))
    print_kv_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def profile_decoder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", type=Path, nargs="?", metavar="ARTIFACT",
                   help="decoder .pte (ours or a text-runner one), or an export folder with one")
    p.add_argument("--artifact", dest="artifact_option", type=Path, help="the same, as an option")
    p.add_argument("--context", type=int, default=128, help="decode at this context (position context-1)")
    p.add_argument("--steps", type=int, default=20, help="profiled decode steps (after 3 warm-up steps)")
    p.add_argument("--json", type=Path, help="write the profile as JSON here")


def profile_decoder(args) -> int:
    from edgevlm.device_tests.decoder_profile import profile_decode
    from edgevlm.reports.decoder_tables import print_profile
    from edgevlm.errors import ConfigError

    if args.context < 1 or args.steps < 1:
        raise ConfigError("--context and --steps must be positive", "e.g. --context 128 --steps 20")
    report = profile_decode(_pte_of(args.artifact or args.artifact_option), args.context, args.steps)
    print_profile(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _pte_of(path: Path | None) -> Path:
    """A decoder .pte given directly, or the one in an export folder's manifest."""
    from edgevlm.errors import ConfigError

    if path is None:
        raise ConfigError("`edgevlm profile-decoder` needs a decoder .pte or an export folder",
                          "e.g. `edgevlm profile-decoder ./out` (the --out of `edgevlm export --recipe ios-m4`)")
    if path.is_dir():
        from edgevlm.export.integrity import check_files
        from edgevlm.export.manifest import read_manifest

        manifest = read_manifest(path)
        ptes = [a for a in manifest["artifacts"] if a["file"].endswith(".pte")]
        if len(ptes) != 1:
            raise ConfigError(f"{path} has {len(ptes)} decoder .pte files "
                              f"({', '.join(a['file'] for a in ptes) or 'none'})", "pass the .pte itself")
        check_files(path, manifest, ptes, prefixes=())  # like run and bench: the bytes the manifest names
        return path / ptes[0]["file"]
    if not path.is_file():
        raise ConfigError(f"no .pte at {path}", "pass a decoder .pte or an export folder, e.g. from `edgevlm export`")
    return path
