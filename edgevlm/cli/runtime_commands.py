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


def build_runner(args) -> int:
    from edgevlm.runtime.build import EXECUTABLES, build_runtime
    from edgevlm.runtime.bundle import command

    built = build_runtime(args.target)
    if args.target == "host":
        folder = built
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            for name in EXECUTABLES:
                shutil.copy2(built / name, args.out / name)
            folder = args.out
        print(f"built {', '.join(EXECUTABLES)} in {folder}")
        print(f"run: {folder / 'edgevlm-runner'} --pte DECODER.pte --tokens 1,2,3")
        return 0
    folder = built
    if args.out:
        shutil.copytree(built, args.out, dirs_exist_ok=True)
        folder = args.out
    print(f"packed the {args.target} runtime in {folder} (executables, ld-linux loader, lib/)")
    print("run on the device:  ./ld-linux-aarch64.so.1 --library-path lib ./edgevlm-runner --pte ... --tokens ...")
    print("run here:           " + " ".join(command(folder, "edgevlm-runner", "qemu-aarch64")) + " --pte ...")
    return 0
