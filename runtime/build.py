"""Build the native runtime (runtime/CMakeLists.txt) with CMake, once per source tree and target.

The build folder is <EDGEVLM_HOME>/runtime/<key>/, private to this user (its binaries are run);
the key hashes every source file (edgevlm's kernels included), the target, the compiler, the
ExecuTorch release, the ONNX Runtime library (or its absence) and the host CPU's flags (host kernels
build -march=native), so any change builds anew. Builders of one key are serialised by a lock. A
cross build is packed into one folder with the target's glibc loader and libraries
(runtime/bundle.py).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from edgevlm.backends.base import MissingTool
from edgevlm.errors import EdgeVLMError
from edgevlm.export.kernel_cache import cpu_signature
from edgevlm.runtime.targets import BuildTarget, executorch_for, get_target, installed_executorch, onnxruntime_for

SOURCE_DIR = Path(__file__).resolve().parent
KERNEL_DIR = SOURCE_DIR.parent / "export" / "kernels"  # edgevlm's ExecuTorch kernels, built in too
PURPOSE = "native runtime build"
EXECUTABLES = ("edgevlm-runner", "edgevlm-bench", "edgevlm-power-sampler", "edgevlm-c-api-demo", "edgevlm-preprocess-dump", "edgevlm-tokenizer-dump",
               "edgevlm-prompt-dump", "edgevlm-vision-dump")


def source_files() -> list[Path]:
    return sorted([p for pattern in ("CMakeLists.txt", "cmake/*.cmake", "include/**/*.h", "src/*.h", "src/*.cpp",
                                                 "src/*.mm", "tools/*.h", "tools/*.cpp", "tools/*.c")
                   for p in SOURCE_DIR.glob(pattern)] + list(KERNEL_DIR.glob("*")))


def which(name: str) -> str | None:
    # this interpreter's bin first: `pip install 'edgevlm[runtime]'` puts cmake and ninja there
    return shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def require_tool(name: str, package: str) -> str:
    path = which(name)
    if path is None:
        raise MissingTool(f"building the native runtime needs `{name}`, which is not on PATH",
                          f"install it (pip install 'edgevlm[runtime]' brings cmake and ninja; Debian/Ubuntu: "
                          f"apt-get install {package})")
    return path


def build_key(target: BuildTarget, compiler: str, onnxruntime: Path | None) -> str:
    digest = hashlib.sha256(target.name.encode() + b"\0" + target.kernel_arch.encode() + b"\0")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    digest.update(version.encode() + b"\0" + installed_executorch()[1].encode() + b"\0")
    # the build links a symlink to this very file: its place and its bytes
    ort = f"{onnxruntime.resolve()} {file_digest(onnxruntime)}" if onnxruntime else "none"
    digest.update(b"onnxruntime " + ort.encode() + b"\0")
    if target.kernel_arch == "native":
        digest.update(cpu_signature().encode() + b"\0")
    for path in source_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file, read once per version of it (a 27 MB libonnxruntime per build_runtime call)."""
    stat = path.stat()
    return _file_digest(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def link_onnxruntime(library: Path, folder: Path) -> Path:
    """folder/onnxruntime/<SONAME> -> library: the name the linker records and the loader then looks
    for (the wheel's file is libonnxruntime.so.1.32.0; its SONAME, libonnxruntime.so.1)."""
    from edgevlm.runtime.bundle import dynamic_entries

    sonames = dynamic_entries(library, "SONAME")
    link = folder / "onnxruntime" / (sonames[0] if sonames else library.name)
    link.parent.mkdir(exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(library.resolve())
    return link


def _configure_command(cmake: str, target: BuildTarget, compiler: str, build: Path, executorch: Path,
                       onnxruntime: Path | None) -> list[str]:
    c_compiler = which(Path(compiler).name.replace("g++", "gcc")) or compiler  # the C API demo is C
    command = [cmake, "-S", str(SOURCE_DIR), "-B", str(build), f"-DCMAKE_CXX_COMPILER={compiler}",
               f"-DCMAKE_C_COMPILER={c_compiler}",
               "-DCMAKE_BUILD_TYPE=Release", f"-DEXECUTORCH_ROOT={executorch}",
               f"-DEDGEVLM_KERNEL_ARCH={target.kernel_arch}"]
    ort = ["-DEDGEVLM_WITH_ORT=ON", f"-DONNXRUNTIME_LIB={onnxruntime}"] if onnxruntime else ["-DEDGEVLM_WITH_ORT=OFF"]
    command += ort
    ninja = which("ninja")
    if ninja:
        command += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    if target.cross:
        command += ["-DCMAKE_SYSTEM_NAME=Linux", f"-DCMAKE_SYSTEM_PROCESSOR={target.processor}"]
    return command


def build_errors(output: str, limit: int = 3000) -> str:
    """The lines that say what failed (a compiler's or linker's `error`), else the output's end:
    a page of warnings must not push the error out of the message."""
    signs = ("error", "undefined reference", "multiple definition", "no such file")
    errors = [line for line in output.splitlines() if any(sign in line.lower() for sign in signs)]
    return ("\n".join(errors) if errors else output)[-limit:]


def build_runtime(target: str = "host", home: Path | None = None) -> Path:
    """The folder holding the built executables (EXECUTABLES); for a cross target, the packed bundle
    folder (see runtime/bundle.py for how to run it)."""
    from edgevlm.defaults import home as edgevlm_home
    from edgevlm.export.kernel_cache import build_lock
    from edgevlm.runtime.bundle import pack
    from edgevlm.safety import private_directory

    spec = get_target(target)
    cmake = require_tool("cmake", "cmake")
    compiler = require_tool(spec.compiler, spec.apt_package)
    root = private_directory((home or edgevlm_home()) / "runtime", PURPOSE)
    with build_lock(root):  # one download of a target's onnxruntime wheel at a time
        onnxruntime = onnxruntime_for(spec, root)
    folder = private_directory(root / build_key(spec, compiler, onnxruntime), PURPOSE)
    done = folder / "build.ok"
    with build_lock(folder):
        if not done.exists():
            build = folder / "build"
            shutil.rmtree(build, ignore_errors=True)  # a killed build's leftovers
            executorch = executorch_for(spec, root)
            ort_link = link_onnxruntime(onnxruntime, folder) if onnxruntime else None
            for step in (_configure_command(cmake, spec, compiler, build, executorch, ort_link),
                         [cmake, "--build", str(build), "--parallel", "2"]):
                proc = subprocess.run(step, capture_output=True, text=True)
                if proc.returncode:
                    raise EdgeVLMError(f"native runtime build ({spec.name}) failed at `{' '.join(step[:3])} ...`:\n"
                                       f"{build_errors(proc.stdout + proc.stderr)}",
                                       "fix the compiler error above; the sources are in " + str(SOURCE_DIR))
            if spec.cross:
                libraries = [executorch / "lib"] + ([ort_link.parent] if ort_link else [])
                pack(spec, build, libraries, folder / "bundle", EXECUTABLES)
            done.write_text("ok\n")
    return folder / ("bundle" if spec.cross else "build")
