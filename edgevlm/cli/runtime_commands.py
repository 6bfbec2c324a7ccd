"""`edgevlm build-runner`: build the native runtime (runtime/) for this host or cross-build it for
aarch64 Linux, and copy the result where the user wants it."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def build_runner_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default="host", choices=["host", "aarch64-linux"],
                   help="host: this machine; aarch64-linux: cross-built with g++-aarch64-linux-gnu against the "
                        "executorch aarch64 wheel, packed with its glibc loader (what the Android harness pushes)")
    p.add_argument("--out", type=Path, help="copy the executables (or the packed folder) here")
    p.add_argument("--json", type=Path, help="also write the result (schema edgevlm.build-runner/1: target, folder, "
                                             "files with bytes and sha256, seconds) here")


def build_runner(args) -> int:
    from edgevlm.runtime.build import EXECUTABLES, build_runtime
    from edgevlm.runtime.bundle import command

    import time

    start = time.perf_counter()
    built = build_runtime(args.target)
    seconds = time.perf_counter() - start
    if args.target == "host":
        folder = built
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            for name in EXECUTABLES + ("libedgevlm.so",):  # the C API library beside the runner
                shutil.copy2(built / name, args.out / name)
            folder = args.out
        print(f"built {', '.join(EXECUTABLES)} and libedgevlm.so (C API: runtime/include/edgevlm/c_api.h) in {folder}")
        print(f"run: {folder / 'edgevlm-runner'} --artifacts EXPORT_DIR --image PHOTO.ppm --prompt 'What is in the picture?'")
        _write_result(args, folder, seconds, [folder / n for n in EXECUTABLES + ("libedgevlm.so",)])
        return 0
    folder = built
    if args.out:
        shutil.copytree(built, args.out, dirs_exist_ok=True)
        folder = args.out
    print(f"packed the {args.target} runtime in {folder} (executables, ld-linux loader, lib/)")
    print("run on the device:  ./ld-linux-aarch64.so.1 --library-path lib ./edgevlm-runner --artifacts DIR --image F.ppm "
          "--prompt ...")
    print("run here:           " + " ".join(command(folder, "edgevlm-runner", "qemu-aarch64")) + " --artifacts ...")
    print("device benchmark:   ... ./edgevlm-bench --artifacts DIR --image F.ppm --prompt ... --json bench.json, beside "
          "./edgevlm-power-sampler --root /sys/class/power_supply/battery --out power.csv")
    _write_result(args, folder, seconds, sorted(p for p in folder.rglob("*") if p.is_file()))
    return 0


def _write_result(args, folder: Path, seconds: float, files: list[Path]) -> None:
    from edgevlm.cli.json_result import sha256_file, write_json

    if args.json:  # seconds: 0-ish when the build came from the cache (<EDGEVLM_HOME>/runtime/<key>/)
        write_json(args.json, {"schema": "edgevlm.build-runner/1", "target": args.target, "folder": str(folder),
                               "seconds": round(seconds, 2),
                               "files": [{"file": p.relative_to(folder).as_posix(), "bytes": p.stat().st_size,
                                          "sha256": sha256_file(p)} for p in files]})


def bench_runner_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pte", type=Path, help="a decoder .pte (e.g. from `edgevlm export --part decoder`)")
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; each runtime keeps its best")
    p.add_argument("--threads", type=int, default=0, help="the runner's ExecuTorch threadpool size (0: its default)")
    p.add_argument("--json", type=Path, help="write the results (schema edgevlm.runner-bench/1) here")


def bench_runner(args) -> int:
    import json

    from edgevlm.device_tests.runner_bench import bench_runner as run
    from edgevlm.errors import ConfigError
    from edgevlm.runtime.build import build_runtime

    if not args.pte.is_file():
        raise ConfigError(f"no .pte at {args.pte}", "pass a decoder .pte file")
    report = run(args.pte, [str(build_runtime() / "edgevlm-runner")], args.prompt_tokens, args.new_tokens,
                 args.rounds, threads=args.threads)
    for name, row in report["best"].items():
        print(f"{name:18s} decode {row['decode_tokens_per_s']:7.1f} tok/s, prefill {row['prefill_ms']:8.1f} ms, "
              f"load {row['model_load_ms']:7.1f} ms, peak RSS {row['peak_rss_bytes'] / 2**20:7.1f} MiB")
    print(f"runner / python decode: {report['runner_vs_python_decode']:.2f}x; same tokens: {report['same_tokens']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0
