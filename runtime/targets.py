"""What differs between the machines the native runtime is built for: the compiler, the CPU flags
of edgevlm's kernels, and where that machine's ExecuTorch and ONNX Runtime libraries come from (the
installed executorch / onnxruntime wheels for the host; the same releases' aarch64 manylinux wheels,
downloaded from PyPI, for aarch64 Linux: the Android harness pushes that build with its glibc loader)."""

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


def platform_wheel(package: str, version: str, platform: str, cache: Path) -> Path:
    """`package==version`'s wheel for `platform`, from cache/wheels or downloaded from PyPI."""
    import subprocess
    import sys

    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pattern = f"{package}-{version}-*{platform}.whl"
    wheel = next(wheels.glob(pattern), None)
    if wheel is None:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", f"{package}=={version}", "--platform",
                               platform, "--only-binary", ":all:", "--no-deps", "-d", str(wheels), "-q"],
                              capture_output=True, text=True)
        wheel = next(wheels.glob(pattern), None)
        if proc.returncode or wheel is None:
            raise EdgeVLMError(f"could not download {package}=={version} for {platform}: {proc.stderr.strip()[-800:]}",
                               "check network access to PyPI, or put the wheel into " + str(wheels))
    return wheel


def unpack_wheel(wheel: Path, members, folder: Path) -> None:
    """Extract the wheel's files whose names start with one of `members` into folder (made whole
    or not at all)."""
    staging = folder.with_name(folder.name + ".partial")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(staging, [m for m in archive.namelist() if m.startswith(tuple(members))])
    staging.rename(folder)


def executorch_for(target: BuildTarget, cache: Path) -> Path:
    """The executorch package folder (include/, lib/) to build `target` against."""
    root, version = installed_executorch()
    if target.wheel_platform is None:
        return root
    version = version.split("+")[0]  # 1.5.1+cpu: the local label names the host build, not the release
    unpacked = cache / f"executorch-{version}-{target.wheel_platform}"
    if not (unpacked / "executorch" / "lib" / "libexecutorch.so").is_file():
        unpack_wheel(platform_wheel("executorch", version, target.wheel_platform, cache),
                     ("executorch/include/", "executorch/lib/"), unpacked)
    return unpacked / "executorch"


def onnxruntime_for(target: BuildTarget, cache: Path) -> Path | None:
    """libonnxruntime.so.<version> to build `target` with (its ONNX vision encoders run through it):
    the installed onnxruntime wheel's, or the same release's wheel for the target's platform. None,
    with a log line, where there is none: the runtime then builds without ONNX Runtime."""
    from edgevlm.progress import log

    try:
        import onnxruntime
    except ImportError:
        log.warning("building the native runtime without ONNX Runtime: onnxruntime is not installed "
                    "(pip install onnxruntime, then rebuild, to run ONNX vision artifacts natively)")
        return None
    capi = Path(onnxruntime.__file__).parent / "capi"
    version = onnxruntime.__version__.split("+")[0]
    if target.wheel_platform is None:
        library = next(iter(sorted(capi.glob("libonnxruntime.so.*"))), None)
        if library is None:
            log.warning("building the native runtime without ONNX Runtime: %s has no libonnxruntime.so.*", capi)
        return library
    unpacked = cache / f"onnxruntime-{version}-{target.wheel_platform}"
    try:
        if not unpacked.is_dir():
            unpack_wheel(platform_wheel("onnxruntime", version, target.wheel_platform, cache),
                         ("onnxruntime/capi/libonnxruntime.so.",), unpacked)
    except EdgeVLMError as e:
        log.warning("building the %s runtime without ONNX Runtime: %s", target.name, e)
        return None
    return next(iter(sorted((unpacked / "onnxruntime" / "capi").glob("libonnxruntime.so.*"))), None)
