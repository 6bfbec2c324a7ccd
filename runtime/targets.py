"""What differs between the machines the native runtime is built for: the compiler, the CPU flags
of edgevlm's kernels, and where that machine's ExecuTorch libraries come from (the installed
executorch wheel for the host; the same release's aarch64 manylinux wheel, downloaded from PyPI,
for aarch64 Linux: the Android harness pushes that build with its glibc loader)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgevlm.errors import EdgeVLMError


@dataclass(frozen=True)
class BuildTarget:
    name: str
    compiler: str
    apt_package: str  # where the compiler comes from on Debian/Ubuntu
    processor: str | None  # CMAKE_SYSTEM_PROCESSOR for a cross build; None builds for this machine
    kernel_arch: str  # -march of the kernels (the Python path builds them -march=native on the host)
    wheel_platform: str | None  # pip --platform of the target's executorch wheel; None: the installed one
    sysroot_lib: Path | None = None  # the target's glibc and libstdc++, packed beside a cross build

    @property
    def cross(self) -> bool:
        return self.processor is not None


TARGETS = {
    "host": BuildTarget("host", "g++", "g++", None, "native", None),
    # armv8.2-a + dotprod + fp16: every phone core since the Snapdragon 855 (Cortex-A76), the
    # Snapdragon 8 Gen 3 included; qemu-aarch64 emulates all of it
    "aarch64-linux": BuildTarget("aarch64-linux", "aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu", "aarch64",
                                 "armv8.2-a+dotprod+fp16", "manylinux_2_28_aarch64",
                                 Path("/usr/aarch64-linux-gnu/lib")),
}


def get_target(name: str) -> BuildTarget:
    try:
        return TARGETS[name]
    except KeyError:
        raise EdgeVLMError(f"unknown runtime build target {name!r}", f"use one of {', '.join(TARGETS)}") from None


def installed_executorch() -> tuple[Path, str]:
    """(package folder, version) of the executorch wheel this Python runs."""
    import executorch.version

    from edgevlm.export.kernel_cache import executorch_root

    return executorch_root(), executorch.version.__version__


def executorch_for(target: BuildTarget, cache: Path) -> Path:
    """The executorch package folder (include/, lib/) to build `target` against."""
    import subprocess
    import sys

    root, version = installed_executorch()
    if target.wheel_platform is None:
        return root
    version = version.split("+")[0]  # 1.5.1+cpu: the local label names the host build, not the release
    unpacked = cache / f"executorch-{version}-{target.wheel_platform}"
    if (unpacked / "executorch" / "lib" / "libexecutorch.so").is_file():
        return unpacked / "executorch"
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    wheel = next(wheels.glob(f"executorch-{version}-*{target.wheel_platform}.whl"), None)
    if wheel is None:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", f"executorch=={version}", "--platform",
                               target.wheel_platform, "--only-binary", ":all:", "--no-deps", "-d", str(wheels),
                               "-q"], capture_output=True, text=True)
        wheel = next(wheels.glob(f"executorch-{version}-*{target.wheel_platform}.whl"), None)
        if proc.returncode or wheel is None:
            raise EdgeVLMError(f"could not download executorch=={version} for {target.wheel_platform}: "
                               f"{proc.stderr.strip()[-800:]}",
                               "check network access to PyPI, or put the wheel into " + str(wheels))
    staging = unpacked.with_name(unpacked.name + ".partial")
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.namelist() if m.startswith(("executorch/include/", "executorch/lib/"))]
        archive.extractall(staging, members)
    staging.rename(unpacked)
    return unpacked / "executorch"
