"""The phone build files of the native runtime (runtime/platforms/, runtime/cmake/), checked as far as
a Linux machine without the Android NDK or Xcode can: the ExecuTorch CMake package module against the
executorch wheel's package and a stand-in of a source build's install, the Android and Apple build scripts (syntax, shellcheck, refusals), the
JNI bridge and Kotlin class compiled and run together on the host JVM over the real libedgevlm, and
vision_coreml.mm type-checked against a declared subset of Apple's API. runtime/platforms/README.md
says what this leaves unexercised."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "runtime"
ANDROID = RUNTIME / "platforms" / "android"
APPLE = RUNTIME / "platforms" / "apple"
FIXTURES = Path(__file__).resolve().parent / "platforms"
SCRIPTS = (ANDROID / "build.sh", APPLE / "build.sh")


def run(command, **kwargs):
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600, **kwargs)


def java_home() -> Path | None:
    """A JDK with jni.h: JAVA_HOME, else the one javac belongs to."""
    candidates = [os.environ.get("JAVA_HOME")]
    if shutil.which("javac"):
        candidates.append(str(Path(os.path.realpath(shutil.which("javac"))).parents[1]))
    for home in filter(None, candidates):
        if (Path(home) / "include" / "jni.h").is_file():
            return Path(home)
    return None


def kotlinc() -> str | None:
    """kotlinc on PATH, else npm's kotlin-compiler package (npm install -g kotlin-compiler)."""
    if shutil.which("kotlinc"):
        return shutil.which("kotlinc")
    if shutil.which("npm"):
        root = run(["npm", "root", "-g"]).stdout.strip()
        candidate = Path(root) / "kotlin-compiler" / "bin" / "kotlinc"
        if root and candidate.is_file():
            return str(candidate)
    return None


def jni_includes(home: Path) -> list[str]:
    return [f"-I{home / 'include'}", f"-I{home / 'include' / 'linux'}"]


# ---- build scripts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.parent.name)
def test_build_script_parses(script):
    proc = run(["bash", "-n", script])
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.parent.name)
def test_build_script_passes_shellcheck(script):
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; scripts/system-deps.sh does)")
    proc = run(["shellcheck", script])
    assert proc.returncode == 0, proc.stdout


def android_build(tmp_path, *args, ndk: str | None = None):
    env = {k: v for k, v in os.environ.items() if k not in ("ANDROID_NDK", "ANDROID_NDK_HOME", "EXECUTORCH_ANDROID")}
    if ndk is not None:
        env["ANDROID_NDK"] = ndk
    return run(["bash", ANDROID / "build.sh", "--build-dir", tmp_path / "build", *args], env=env, cwd=tmp_path)


def fake_ndk(tmp_path) -> Path:
    """A folder shaped like an NDK root as far as build.sh looks before it needs the compilers."""
    ndk = tmp_path / "ndk"
    (ndk / "build" / "cmake").mkdir(parents=True)
    (ndk / "build" / "cmake" / "android.toolchain.cmake").write_text("# stand-in\n")
    return ndk


def test_android_build_refuses_without_ndk(tmp_path):
    proc = android_build(tmp_path, "--executorch", tmp_path)
    assert proc.returncode == 2
    assert "ANDROID_NDK is not set" in proc.stderr and "fix: install NDK" in proc.stderr
    assert not (tmp_path / "build").exists()


def test_android_build_refuses_an_ndk_without_its_toolchain_file(tmp_path):
    proc = android_build(tmp_path, "--executorch", tmp_path, ndk=str(tmp_path))
    assert proc.returncode == 2
    assert "has no build/cmake/android.toolchain.cmake" in proc.stderr and "fix:" in proc.stderr


def test_android_build_refuses_without_executorch_install(tmp_path):
    ndk = str(fake_ndk(tmp_path))
    proc = android_build(tmp_path, ndk=ndk)
    assert proc.returncode == 2 and "no ExecuTorch Android install given" in proc.stderr, proc.stderr
    proc = android_build(tmp_path, "--executorch", tmp_path / "nowhere", ndk=ndk)
    assert proc.returncode == 2
    assert "is not an ExecuTorch install" in proc.stderr and "lib/cmake/ExecuTorch/executorch-config.cmake" in proc.stderr


def test_android_build_refuses_without_onnxruntime(tmp_path):
    install = tmp_path / "et"
    (install / "lib" / "cmake" / "ExecuTorch").mkdir(parents=True)
    (install / "lib" / "cmake" / "ExecuTorch" / "executorch-config.cmake").write_text("# stand-in\n")
    proc = android_build(tmp_path, "--executorch", install, ndk=str(fake_ndk(tmp_path)))
    assert proc.returncode == 2
    assert "no ONNX Runtime for Android given" in proc.stderr and "--no-ort" in proc.stderr


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS the script goes on to look for Xcode")
def test_apple_build_refuses_off_macos(tmp_path):
    proc = run(["bash", APPLE / "build.sh", "--platform", "ios", "--xcframeworks", tmp_path])
    assert proc.returncode == 2
    assert "need a Mac with Xcode" in proc.stderr and "fix:" in proc.stderr


# ---- the ExecuTorch CMake package module ------------------------------------------------------------

def cmake_for_package(minimum=(3, 28), why="the executorch wheel's CMake package defines targets only under "
                      "CMake >= 3.28") -> str:
    from edgevlm.runtime.build import which

    cmake = which("cmake")
    if cmake is None or not shutil.which("g++"):
        pytest.skip("needs cmake and g++ (pip install -e '.[test]' brings cmake)")
    version = re.search(r"(\d+)\.(\d+)", run([cmake, "--version"]).stdout)
    if (int(version[1]), int(version[2])) < minimum:
        pytest.skip(f"{why}; {cmake} is older")
    return cmake


def package_project(tmp_path, check="executorch_package_check.cpp") -> Path:
    """A consumer of the module: one program linked to executorch_prebuilt."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.24)\nproject(package_check CXX)\nset(CMAKE_CXX_STANDARD 17)\n"
        f"include({(RUNTIME / 'cmake' / 'executorch_package.cmake').as_posix()})\n"
        f"add_executable(check {(FIXTURES / check).as_posix()})\n"
        "target_link_libraries(check PRIVATE executorch_prebuilt)\n")
    return project


def stub_install(cmake, folder: Path, *options) -> Path:
    """The stand-in ExecuTorch install (tests/platforms/executorch_install_stub), built and installed."""
    for step in ([cmake, "-S", FIXTURES / "executorch_install_stub", "-B", folder / "build",
                  f"-DCMAKE_INSTALL_PREFIX={folder / 'install'}", *options],
                 [cmake, "--build", folder / "build", "--parallel", "2"], [cmake, "--install", folder / "build"]):
        proc = run(step)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return folder / "install" / "lib" / "cmake" / "ExecuTorch"


def test_executorch_package_module_keeps_a_source_installs_registration_libraries_once(tmp_path):
    # ExecuTorch's archives carry their own --whole-archive option (one stub here does not): adding a
    # second would define their symbols twice (a link error), leaving one off drops a registration
    cmake = cmake_for_package((3, 24), "the module needs CMake >= 3.24")
    config = stub_install(cmake, tmp_path / "et")
    build = tmp_path / "consumer"
    configure = run([cmake, "-S", package_project(tmp_path, "executorch_install_check.cpp"), "-B", build,
                     f"-Dexecutorch_DIR={config}"])
    assert configure.returncode == 0, configure.stdout + configure.stderr
    assert "edgevlm: ExecuTorch from the ExecuTorch install" in configure.stdout
    link = run([cmake, "--build", build])
    assert link.returncode == 0, link.stdout[-3000:] + link.stderr[-3000:]
    proc = run([build / "check"])
    assert proc.returncode == 0 and "0 missing" in proc.stdout, proc.stdout


def test_executorch_package_module_names_what_a_source_install_lacks(tmp_path):
    cmake = cmake_for_package((3, 24), "the module needs CMake >= 3.24")
    config = stub_install(cmake, tmp_path / "et", "-DSTUB_WITHOUT=quantized_ops_lib")
    configure = run([cmake, "-S", package_project(tmp_path, "executorch_install_check.cpp"), "-B",
                     tmp_path / "consumer", f"-Dexecutorch_DIR={config}"])
    assert configure.returncode != 0
    message = " ".join(configure.stderr.split())
    assert f"the ExecuTorch package at {config} has no quantized_ops_lib: configure ExecuTorch with" in message, message


def test_executorch_package_module_links_the_wheels_package(tmp_path):
    cmake = cmake_for_package()
    from edgevlm.runtime.targets import installed_executorch

    wheel = installed_executorch()[0]
    project, build = package_project(tmp_path), tmp_path / "build"
    configure = run([cmake, "-S", project, "-B", build, f"-DCMAKE_PREFIX_PATH={wheel}", "-DCMAKE_BUILD_TYPE=Release"])
    assert configure.returncode == 0, configure.stdout + configure.stderr
    assert "edgevlm: ExecuTorch from the executorch wheel package" in configure.stdout
    compile_ = run([cmake, "--build", build, "--parallel", "2"])
    assert compile_.returncode == 0, compile_.stdout[-3000:] + compile_.stderr[-3000:]
    proc = run([build / "check"])
    # registration-only libraries dropped by the linker read as xnnpack=0 quantized=0 optimized=0
    assert proc.returncode == 0 and "xnnpack=1 quantized=1 optimized=1" in proc.stdout, proc.stdout + proc.stderr


def test_executorch_package_module_says_what_is_missing(tmp_path):
    cmake = cmake_for_package()
    configure = run([cmake, "-S", package_project(tmp_path), "-B", tmp_path / "build",
                     f"-DCMAKE_PREFIX_PATH={tmp_path / 'nowhere'}", "-Dexecutorch_DIR=executorch_DIR-NOTFOUND"])
    assert configure.returncode != 0
    message = " ".join(configure.stderr.split())
    assert "no ExecuTorch CMake package found" in message and "-Dexecutorch_DIR=<install>/lib/cmake/ExecuTorch" in message


# ---- JNI bridge and Kotlin class --------------------------------------------------------------------

def test_jni_bridge_compiles_against_jni_h():
    home = java_home()
    if home is None or not shutil.which("g++"):
        pytest.skip("needs a JDK with include/jni.h and g++ (apt-get install openjdk-17-jdk-headless)")
    proc = run(["g++", "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", *jni_includes(home),
                f"-I{RUNTIME / 'include'}", ANDROID / "edgevlm_jni.cpp"])
    assert proc.returncode == 0, proc.stderr


def jni_library(home: Path, build: Path, out: Path) -> Path:
    """libedgevlm_jni.so from the bridge, linked to the host build's libedgevlm, in out/."""
    library = run(["g++", "-std=c++17", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", *jni_includes(home),
                   f"-I{RUNTIME / 'include'}", ANDROID / "edgevlm_jni.cpp", f"-L{build}", "-ledgevlm",
                   f"-Wl,-rpath,{build}", "-o", out / "libedgevlm_jni.so"])
    assert library.returncode == 0, library.stderr
    return out / "libedgevlm_jni.so"


@pytest.fixture(scope="module")
def jvm_harness(tmp_path_factory, runtime_home):
    """EdgeVLM.kt + the harness compiled into one jar, and libedgevlm_jni.so built from the bridge and
    linked to the real libedgevlm (the C API over the whole pipeline): (jar, library folder, runtime build)."""
    home, compiler = java_home(), kotlinc()
    if home is None or not shutil.which("g++") or not shutil.which("java"):
        pytest.skip("needs a JDK (java, jni.h) and g++ (apt-get install openjdk-17-jdk-headless)")
    if compiler is None:
        pytest.skip("needs kotlinc (npm install -g kotlin-compiler; scripts/system-deps.sh does)")
    from edgevlm.runtime.build import build_runtime

    build = build_runtime(home=runtime_home)
    out = tmp_path_factory.mktemp("jvm")
    jni_library(home, build, out)
    jar = out / "harness.jar"
    kotlin = run([compiler, ANDROID / "EdgeVLM.kt", FIXTURES / "JniHarness.kt", "-include-runtime", "-d", jar])
    assert kotlin.returncode == 0 and jar.is_file(), kotlin.stdout + kotlin.stderr
    return jar, out, build


@pytest.fixture(scope="module")
def oracle_export(tmp_path_factory):
    """The shipped edgevlm-tiny (trained: it answers in words, so text streams) exported with an ONNX
    vision artifact and an INT4-cache decoder."""
    import yaml

    from edgevlm.defaults import oracle_model_dir
    from edgevlm.export.driver import export_model
    from edgevlm.export.recipes import load_recipe

    root = tmp_path_factory.mktemp("oracle")
    (root / "recipe.yaml").write_text(yaml.safe_dump({
        "name": "jni", "vision": [{"backend": "ort", "precision": "fp32", "max_patches": 1120}],
        "decoder": [{"backend": "executorch", "weights": "fp32", "kv_cache": "int4", "max_seq_len": 1024}]}))
    return export_model(oracle_model_dir(), load_recipe(str(root / "recipe.yaml")), root / "out")


JNI_TYPES = {"Z": "jboolean", "B": "jbyte", "C": "jchar", "S": "jshort", "I": "jint", "J": "jlong", "F": "jfloat",
             "D": "jdouble", "V": "void", "[I": "jintArray", "[B": "jbyteArray", "[F": "jfloatArray",
             "Ljava/lang/String;": "jstring"}


def jni_types(descriptor: str) -> tuple[list[str], str]:
    """JVM method descriptor -> (C parameter types, C return type) as JNI declares them."""
    params, returns = descriptor[1:].split(")")
    types = [JNI_TYPES.get(token, "jobjectArray" if token.startswith("[") else "jobject")
             for token in re.findall(r"\[?(?:L[^;]+;|[ZBCSIJFD])", params)]
    return types, JNI_TYPES.get(returns, "jobject")


def test_jni_exports_match_the_kotlin_natives(jvm_harness):
    jar, _, _ = jvm_harness
    javap = run(["javap", "-s", "-p", "-cp", jar, "ai.edgevlm.EdgeVLM", "ai.edgevlm.EdgeVLMException",
                 "ai.edgevlm.TextCallback"])
    assert javap.returncode == 0, javap.stderr
    natives = re.findall(r"^\s.*\bnative\b.*?(\w+)\(.*\);\n\s+descriptor: (\S+)", javap.stdout, re.M)
    statics = set(re.findall(r"static\b.*\bnative\b.*?(\w+)\(", javap.stdout))
    assert {name for name, _ in natives} == {"nativeOpen", "nativeRun", "nativeClose"}, javap.stdout
    source = (ANDROID / "edgevlm_jni.cpp").read_text()
    for name, descriptor in natives:
        match = re.search(rf"JNIEXPORT (\w+) JNICALL Java_ai_edgevlm_EdgeVLM_{name}\(([^)]*)\)", source)
        assert match, f"edgevlm_jni.cpp exports no Java_ai_edgevlm_EdgeVLM_{name}"
        declared = [re.sub(r"\s*\b\w+$", "", p.strip()) if " " in p.strip() else p.strip()
                    for p in match[2].split(",")]
        params, returns = jni_types(descriptor)
        assert declared == ["JNIEnv*", "jclass" if name in statics else "jobject", *params], (name, declared)
        assert match[1] == returns, (name, match[1], returns)
    # what the bridge looks up by name: the exception's constructor and the callback
    assert "ai.edgevlm.EdgeVLMException(int, java.lang.String);\n    descriptor: (ILjava/lang/String;)V" in javap.stdout
    assert '"<init>", "(ILjava/lang/String;)V"' in source
    assert re.search(r"void onText\(java\.lang\.String\);\n\s+descriptor: \(Ljava/lang/String;\)V", javap.stdout)
    assert '"onText", "(Ljava/lang/String;)V"' in source


@pytest.mark.slow
def test_jni_bridge_runs_on_the_jvm(jvm_harness, oracle_export, tmp_path):
    """Kotlin -> JNI -> libedgevlm on a real export: ARGB ints and RGBA bytes give the tokens
    edgevlm-runner gives for the same pixels, text streams through the callback, and every refusal
    arrives as the right exception."""
    import json

    import numpy as np
    from PIL import Image, ImageDraw

    jar, library, build = jvm_harness
    image = Image.new("RGB", (448, 448), "white")
    ImageDraw.Draw(image).ellipse((100, 120, 330, 350), fill=(220, 30, 40))
    image.save(tmp_path / "shape.ppm")
    rgb = np.asarray(image).astype(np.uint32)
    argb = (0x80 << 24) | (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # half alpha: dropped
    (tmp_path / "argb.bin").write_bytes(argb.astype(">u4").tobytes())
    prompt = "What colour is the shape?"
    proc = run(["java", f"-Djava.library.path={library}", "-cp", jar, "edgevlm.test.JniHarnessKt", oracle_export,
                tmp_path / "argb.bin", 448, 448, prompt])
    assert proc.returncode == 0 and ", 0 failed" in proc.stdout, proc.stdout + proc.stderr
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] if " " in line else "" for line in proc.stdout.splitlines()}
    argb_result, rgba_result = json.loads(lines["ARGB"]), json.loads(lines["RGBA"])
    native = run([build / "edgevlm-runner", "--artifacts", oracle_export, "--image", tmp_path / "shape.ppm",
                  "--prompt", prompt, "--max-new-tokens", "8", "--json", tmp_path / "runner.json"])
    assert native.returncode == 0, native.stderr
    expected = json.loads((tmp_path / "runner.json").read_text())
    assert argb_result["tokens"] == rgba_result["tokens"] == expected["tokens"]
    assert expected["text"].strip() and lines["STREAMED"] == expected["text"].replace("\n", "\\n")


# ---- Core ML vision encoder -------------------------------------------------------------------------

def test_coreml_vision_type_checks_against_the_declared_apple_api():
    # aarch64: clang has _Float16 there; the cross g++ brings that target's C++ headers
    if not shutil.which("clang++") or not shutil.which("aarch64-linux-gnu-g++"):
        pytest.skip("needs clang++ and g++-aarch64-linux-gnu (apt-get install clang g++-aarch64-linux-gnu)")
    proc = run(["clang++", "--target=aarch64-linux-gnu", "-fsyntax-only", "-x", "objective-c++", "-std=c++17",
                "-fobjc-arc", "-fblocks", "-fobjc-runtime=macosx-14.0", "-fconstant-string-class=NSConstantString",
                "-Wall", "-Wextra", "-Werror",
                "-Dst_mtimespec=st_mtim",  # Darwin's name for struct stat's modification time
                "-DEDGEVLM_WITH_COREML", f"-I{FIXTURES / 'apple_sdk_subset'}", f"-I{RUNTIME / 'include'}",
                RUNTIME / "src" / "vision_coreml.mm"])
    assert proc.returncode == 0, proc.stderr
