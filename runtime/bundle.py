"""A cross-built runtime packed to run from one folder, as the Android harness pushes it:

    bundle/edgevlm-runner, bundle/edgevlm-preprocess-dump
    bundle/ld-linux-aarch64.so.1       the target's glibc loader
    bundle/lib/                        ExecuTorch's and ONNX Runtime's libraries + the glibc /
                                       libstdc++ they need
    bundle/qemu-root/proc/cpuinfo      an Arm /proc/cpuinfo for running it under qemu-aarch64

run as `./ld-linux-aarch64.so.1 --library-path lib ./edgevlm-runner ...` (on this x86 machine,
under `qemu-aarch64 -L qemu-root`, see QEMU_ROOT). Every library is found by following DT_NEEDED
from the executables; ExecuTorch's kernel and backend libraries register themselves and are linked
--no-as-needed, so they appear there too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.targets import BuildTarget

LOADERS = {"aarch64": "ld-linux-aarch64.so.1"}
# For emulation only: qemu-user (7.x) shows an aarch64 program the x86 host's /proc/cpuinfo, with no
# Arm MIDR fields, and ONNX Runtime's cpuinfo crashes at load without them. `qemu-aarch64 -L
# qemu-root` opens qemu-root/proc/cpuinfo instead: Arm cores of a part cpuinfo does not know (0xfff),
# so kernels still pick no core-specific variant, as with the host's file.
QEMU_ROOT = "qemu-root"
ARM_CPUINFO = ("processor\t: {index}\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
               "CPU part\t: 0xfff\nCPU revision\t: 0\n")


def dynamic_entries(binary: Path, tag: str) -> list[str]:
    """The `tag` entries (NEEDED, SONAME) of an ELF file's dynamic section (binutils' readelf reads
    any architecture)."""
    readelf = shutil.which("readelf") or shutil.which("aarch64-linux-gnu-readelf")
    if readelf is None:
        raise EdgeVLMError("building the runtime needs `readelf`", "apt-get install binutils")
    out = subprocess.run([readelf, "-d", str(binary)], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines() if f"({tag})" in line]


def needed(binary: Path) -> list[str]:
    return dynamic_entries(binary, "NEEDED")


def pack(target: BuildTarget, build: Path, libraries: list[Path], bundle: Path, executables) -> Path:
    """libraries: the folders of the prebuilt libraries (ExecuTorch's, ONNX Runtime's) to take
    what the executables need from, before the target's system libraries."""
    search = [build, *libraries, target.sysroot_lib]  # build: libedgevlm.so (the C API)
    staging = bundle.with_name(bundle.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "lib").mkdir(parents=True)
    pending = []
    for name in executables:
        shutil.copy2(build / name, staging / name)
        pending += needed(build / name)
    copied = set()
    while pending:
        name = pending.pop()
        if name in copied:
            continue
        source = next((folder / name for folder in search if (folder / name).exists()), None)
        if source is None:
            raise EdgeVLMError(f"packing the {target.name} runtime: no {name} in {', '.join(map(str, search))}",
                               f"install the target's libraries (apt-get install {target.apt_package})")
        shutil.copy2(source.resolve(), staging / "lib" / name)
        copied.add(name)
        pending += needed(staging / "lib" / name)
    loader = LOADERS[target.processor]
    shutil.copy2((target.sysroot_lib / loader).resolve(), staging / loader)
    (staging / QEMU_ROOT / "proc").mkdir(parents=True)
    cpus = "\n".join(ARM_CPUINFO.format(index=i) for i in range(os.cpu_count() or 1))
    (staging / QEMU_ROOT / "proc" / "cpuinfo").write_text(cpus)
    shutil.rmtree(bundle, ignore_errors=True)
    staging.rename(bundle)
    return bundle


def command(bundle: Path, executable: str, emulator: str | None = None) -> list[str]:
    """argv that runs a bundled executable (through `emulator`, e.g. qemu-aarch64, off-target)."""
    loader = next(bundle / name for name in LOADERS.values() if (bundle / name).exists())
    argv = [str(loader), "--library-path", str(bundle / "lib"), str(bundle / executable)]
    if not emulator:
        return argv
    root = bundle / QEMU_ROOT
    return [emulator, *(["-L", str(root)] if root.is_dir() else []), *argv]
