"""Build the native runtime (runtime/CMakeLists.txt) with CMake, once per source tree.

The build folder is <EDGEVLM_HOME>/runtime/<key>/, private to this user (its binaries are run);
the key hashes every source file, the target and the compiler, so an edited source or another
compiler builds anew. Builders of one key are serialised by a lock.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from edgevlm.backends.base import MissingTool
from edgevlm.errors import EdgeVLMError

SOURCE_DIR = Path(__file__).resolve().parent
PURPOSE = "native runtime build"
TARGETS = ("host",)  # aarch64-linux joins with the cross toolchain


def source_files() -> list[Path]:
    return sorted(p for pattern in ("CMakeLists.txt", "include/**/*.h", "src/*.h", "src/*.cpp", "tools/*.cpp")
                  for p in SOURCE_DIR.glob(pattern))


def _which(name: str) -> str | None:
    # this interpreter's bin first: `pip install 'edgevlm[runtime]'` puts cmake and ninja there
    return shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def _tool(name: str, package: str) -> str:
    path = _which(name)
    if path is None:
        raise MissingTool(f"building the native runtime needs `{name}`, which is not on PATH",
                          f"install it (pip install 'edgevlm[runtime]' brings cmake and ninja; Debian/Ubuntu: "
                          f"apt-get install {package})")
    return path


def build_key(target: str, compiler: str) -> str:
    digest = hashlib.sha256(target.encode() + b"\0")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    digest.update(version.encode() + b"\0")
    for path in source_files():
        digest.update(path.relative_to(SOURCE_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def build_runtime(target: str = "host", home: Path | None = None) -> Path:
    """The folder holding the built executables (edgevlm-preprocess-dump, ...) for `target`."""
    from edgevlm.defaults import home as edgevlm_home
    from edgevlm.export.kernel_cache import build_lock
    from edgevlm.safety import private_directory

    if target not in TARGETS:
        raise EdgeVLMError(f"unknown runtime build target {target!r}", f"use one of {', '.join(TARGETS)}")
    cmake = _tool("cmake", "cmake")
    compiler = _tool("g++", "g++")
    ninja = _which("ninja")
    generator = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"] if ninja else []
    root = private_directory((home or edgevlm_home()) / "runtime", PURPOSE)
    folder = private_directory(root / build_key(target, compiler), PURPOSE)
    done = folder / "build.ok"
    with build_lock(folder):
        if not done.exists():
            build = folder / "build"
            shutil.rmtree(build, ignore_errors=True)  # a killed build's leftovers
            for step in ([cmake, "-S", str(SOURCE_DIR), "-B", str(build), *generator,
                          f"-DCMAKE_CXX_COMPILER={compiler}", "-DCMAKE_BUILD_TYPE=Release"],
                         [cmake, "--build", str(build), "--parallel", "2"]):
                proc = subprocess.run(step, capture_output=True, text=True)
                if proc.returncode:
                    raise EdgeVLMError(f"native runtime build failed ({' '.join(step[:2])} ...):\n"
                                       f"{(proc.stdout + proc.stderr)[-3000:]}",
                                       "fix the compiler error above; the sources are in " + str(SOURCE_DIR))
            done.write_text("ok\n")
    return folder / "build"
