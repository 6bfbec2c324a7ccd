"""A cross-built runtime packed to run from one folder, as the Android harness pushes it:

    bundle/edgevlm-runner, bundle/edgevlm-preprocess-dump
    bundle/ld-linux-aarch64.so.1       the target's glibc loader
    bundle/lib/                        ExecuTorch's libraries + the glibc / libstdc++ they need

run as `./ld-linux-aarch64.so.1 --library-path lib ./edgevlm-runner ...` (on this x86 machine,
under `qemu-aarch64`). Every library is found by following DT_NEEDED from the executables;
ExecuTorch's kernel and backend libraries register themselves and are linked --no-as-needed, so
they appear there too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.targets import BuildTarget

LOADERS = {"aarch64": "ld-linux-aarch64.so.1"}


def needed(binary: Path) -> list[str]:
    """DT_NEEDED entries of an ELF file (binutils' readelf reads any architecture)."""
    readelf = shutil.which("readelf") or shutil.which("aarch64-linux-gnu-readelf")
    if readelf is None:
        raise EdgeVLMError("packing the runtime needs `readelf`", "apt-get install binutils")
    out = subprocess.run([readelf, "-d", str(binary)], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines() if "(NEEDED)" in line]


def pack(target: BuildTarget, build: Path, executorch_lib: Path, bundle: Path, executables) -> Path:
    search = [build, executorch_lib, target.sysroot_lib]  # build: libedgevlm.so (the C API)
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
    shutil.rmtree(bundle, ignore_errors=True)
    staging.rename(bundle)
    return bundle


def command(bundle: Path, executable: str, emulator: str | None = None) -> list[str]:
    """argv that runs a bundled executable (through `emulator`, e.g. qemu-aarch64, off-target)."""
    loader = next(bundle / name for name in LOADERS.values() if (bundle / name).exists())
    argv = [str(loader), "--library-path", str(bundle / "lib"), str(bundle / executable)]
    return ([emulator] if emulator else []) + argv
