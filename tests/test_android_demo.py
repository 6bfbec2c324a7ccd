"""android_demo/ checked as far as a Linux machine without the Android SDK can: every Kotlin source
of the app (the activity included) compiled with EdgeVLM.kt against a declared subset of the Android
API (tests/platforms/android_sdk_subset/, which a misspelt call fails against); the app's plain-Kotlin
logic (manifest, HTP -> CPU fallback, streaming, stats line, bench mode) run on the host JVM over the
real libedgevlm, its bench JSON validated against edgevlm.bench/2; and the adb commands that start the
bench mode and read its JSON back. android_demo/README.md says what this leaves unexercised."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.test_device_adb import fake_adb  # noqa: F401 (fixture)
from tests.test_runtime_platforms import FIXTURES, ANDROID, java_home, jni_library, kotlinc, oracle_export, run  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "android_demo" / "app"
SOURCES = sorted((APP / "src" / "main" / "java").rglob("*.kt"))
SDK_SUBSET = FIXTURES / "android_sdk_subset"
SCHEMA = REPO / "device_tests" / "schemas" / "bench-v2.schema.json"


def compiler() -> str:
    found = kotlinc()
    if found is None or not shutil.which("java"):
        pytest.skip("needs kotlinc and java (npm install -g kotlin-compiler, apt-get install openjdk-17-jdk-headless; "
                    "scripts/system-deps.sh installs both)")
    return found


@pytest.fixture(scope="module")
def demo_jar(tmp_path_factory) -> Path:
    """The app's sources + EdgeVLM.kt + the host harness in one jar (the SDK subset is only read:
    kotlinc resolves against Java sources without compiling them, so no android.* class is in it)."""
    jar = tmp_path_factory.mktemp("demo") / "demo.jar"
    proc = run([compiler(), *SOURCES, ANDROID / "EdgeVLM.kt", FIXTURES / "AndroidDemoHarness.kt", SDK_SUBSET,
                "-Werror", "-include-runtime", "-d", jar])
    assert proc.returncode == 0 and jar.is_file(), proc.stdout + proc.stderr
    return jar


def test_app_sources_compile_against_the_android_api_subset(demo_jar):
    javap = run(["javap", "-p", "-cp", demo_jar, "ai.edgevlm.demo.MainActivity"])
    assert javap.returncode == 0, javap.stderr
    assert "class ai.edgevlm.demo.MainActivity extends android.app.Activity" in javap.stdout
    for member in ("void onCreate(android.os.Bundle)", "void onActivityResult(int, int, android.content.Intent)"):
        assert member in javap.stdout, javap.stdout


def test_the_api_subset_rejects_misspelt_calls(tmp_path):
    snippet = tmp_path / "Misspelt.kt"
    snippet.write_text(
        "import android.app.Activity\nimport android.graphics.Bitmap\n"
        "class Misspelt : Activity() {\n"
        "    fun a(): String? = intent.getStringExtras(\"mode\")\n"               # the real one: getStringExtra
        "    fun b(bitmap: Bitmap, out: IntArray) = bitmap.getPixels(out, 0, 0, 0, bitmap.width, bitmap.height)\n"
        "}\n")
    proc = run([compiler(), snippet, SDK_SUBSET, "-d", tmp_path / "out"])
    message = proc.stdout + proc.stderr
    assert proc.returncode != 0, message
    assert re.search(r"Misspelt\.kt:4:\d+: error: unresolved reference.*getStringExtras", message, re.I), message
    assert re.search(r"Misspelt\.kt:5:\d+: error: no value passed for parameter 'height'", message, re.I), message


@pytest.mark.slow
def test_app_logic_runs_over_the_real_runtime(demo_jar, oracle_export, runtime_home, tmp_path):
    """Manifest -> fallback from an HTP encoder that does not open -> streamed answer -> stats line ->
    bench JSON, with the real runtime behind EdgeVLM.kt."""
    jsonschema = pytest.importorskip("jsonschema")
    from edgevlm.runtime.build import build_runtime

    home = java_home()
    if home is None or not shutil.which("g++"):
        pytest.skip("needs a JDK with include/jni.h and g++ (apt-get install openjdk-17-jdk-headless)")
    library = jni_library(home, build_runtime(home=runtime_home), tmp_path)
    out = tmp_path / "bench.json"
    proc = run(["java", f"-Djava.library.path={library.parent}", "-cp", demo_jar, "edgevlm.test.AndroidDemoHarnessKt",
                oracle_export, out])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)

    manifest = json.loads((oracle_export / "manifest.json").read_text())
    vision = next(a for a in manifest["artifacts"] if a["part"] == "vision")
    decoder = next(a for a in manifest["artifacts"] if a["part"] == "decoder")
    assert lines["CHOICES"] == f"{vision['file']}=CPU"
    assert lines["INDICATOR"].startswith("vision: CPU fallback (--vision absent.qnn-htp.onnx is not a vision artifact")
    assert lines["STREAMED"] == lines["TEXT"] and lines["TEXT"].strip()
    result = json.loads(lines["RESULT"])
    assert re.fullmatch(r"vision \d+ ms \(CPU\) · prefill \d+ tok/s · decode \d+\.\d tok/s · first token \d+ ms",
                        lines["STATS"]), lines["STATS"]
    assert f"vision {result['stats']['vision_ms']:.0f} ms" in lines["STATS"]
    assert lines["OPTIONS"] == "bench extra runs=five is not a number"

    document = json.loads(out.read_text())
    jsonschema.validate(document, json.loads(SCHEMA.read_text()))
    assert document["artifacts"] == {"manifest_sha256": hashlib.sha256((oracle_export / "manifest.json").read_bytes()).hexdigest(),
                                     "files": {a["file"]: a["sha256"] for a in manifest["artifacts"]}}
    skipped, encoder, text = document["results"]
    assert skipped["status"] == "not run" and skipped["artifact"] == "absent.qnn-htp.onnx" and skipped["sha256"] is None
    assert "is not a vision artifact" in skipped["reason"]
    assert encoder["status"] == "ok" and encoder["artifact"] == vision["file"] and encoder["sha256"] == vision["sha256"]
    assert encoder["runtime"] == result["stats"]["vision_runtime"]
    assert encoder["metrics"]["runs"] == 3 and encoder["metrics"]["warmup"] == 1
    assert encoder["metrics"]["min_ms"] <= encoder["metrics"]["median_ms"] <= encoder["metrics"]["max_ms"]
    assert encoder["peak_memory_bytes"] > 50 << 20  # the JVM + the model: VmHWM read from /proc/self/status
    assert text["artifact"] == decoder["file"] and text["runtime"] == decoder["runtime"]
    prompt_tokens = list(text["decoder"]["prefill"])
    assert len(prompt_tokens) == 1 and int(prompt_tokens[0]) > 64  # the image's query tokens are in the prompt
    assert document["device"]["soc"] == {"unavailable": "android.os.Build.SOC_MODEL needs Android 12 (API 31)"}
    assert document["model"] == {"id": manifest["model"]["id"], "version": manifest["model"]["version"]}


@pytest.mark.slow
def test_the_gradle_project_finds_what_edgevlm_bundle_lays_out(oracle_export, tmp_path):
    from edgevlm.app_bundle import plan_bundle, write_bundle

    manifest = json.loads((oracle_export / "manifest.json").read_text())
    project = tmp_path / "android_demo"  # the README's `edgevlm bundle ... --out android_demo/bundle`
    write_bundle(plan_bundle(oracle_export, manifest, "android"), project / "bundle")
    app = project / "app"
    app.mkdir()  # the module folder the Gradle paths are relative to ("../bundle" needs it to exist)
    gradle = (APP / "build.gradle.kts").read_text()
    bundle_dir = app / re.search(r'val bundleDir = "([^"]+)"', gradle)[1]
    runtime = Path(re.search(r'val runtimeDir = "([^"]+)"', gradle)[1].replace("$bundleDir", str(bundle_dir)))
    assert (runtime / "platforms" / "android" / "CMakeLists.txt").is_file()  # externalNativeBuild's path
    assert (runtime / "platforms" / "android" / "EdgeVLM.kt").is_file()      # the extra Kotlin source folder
    kernels = re.search(r'-DEDGEVLM_KERNEL_DIR=\$\{file\("\$bundleDir/([^"]+)"\)\}', gradle)[1]
    assert any((bundle_dir / kernels).iterdir())
    assert 'assets.srcDir("$bundleDir/assets")' in gradle
    assets = re.search(r'const val ASSET_DIR = "([^"]+)"', (APP / "src/main/java/ai/edgevlm/demo/AssetInstaller.kt").read_text())[1]
    assert (bundle_dir / "assets" / assets / "manifest.json").is_file()


# ---- the adb side: device_tests/devices/android_app.py --------------------------------------------

FAKE_RUN_AS = """#!/bin/sh
# run-as PACKAGE CMD...: CMD in the app's data folder (the fake phone's /data/data/PACKAGE)
[ -d "$FAKE_ADB_STATE/phone/data/data/$1" ] || { echo "run-as: unknown package: $1" >&2; exit 1; }
cd "$FAKE_ADB_STATE/phone/data/data/$1" && shift && exec "$@"
"""
FAKE_AM = """#!PYTHON
import json, os, sys
state = os.environ["FAKE_ADB_STATE"]
open(os.path.join(state, "am.log"), "a").write(json.dumps(sys.argv[1:]) + "\\n")
files = os.path.join(state, "phone/data/data/ai.edgevlm.demo/files")
name, text = ("edgevlm-bench.error", os.environ["FAKE_APP_ERROR"]) if "FAKE_APP_ERROR" in os.environ else \\
             ("edgevlm-bench.json", json.dumps({"schema": "edgevlm.bench/2", "argv": sys.argv[1:]}))
open(os.path.join(files, name), "w").write(text)
print("Starting: Intent { cmp=ai.edgevlm.demo/.MainActivity (has extras) }\\nStatus: ok")
"""


@pytest.fixture
def phone_app(fake_adb, tmp_path, monkeypatch):  # noqa: F811
    """The fake phone with android_demo installed: `am` and `run-as` on the PATH its shell uses."""
    bindir = tmp_path / "phone-bin"
    bindir.mkdir()
    (bindir / "run-as").write_text(FAKE_RUN_AS)
    (bindir / "am").write_text(FAKE_AM.replace("PYTHON", sys.executable))
    for tool in ("run-as", "am"):
        (bindir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    files = fake_adb.phone / "data/data/ai.edgevlm.demo/files"
    files.mkdir(parents=True)
    (files / "edgevlm-bench.json").write_text("stale")  # a previous run's: removed before the start
    return fake_adb


def test_app_bench_issues_the_documented_adb_commands(phone_app, tmp_path):
    from edgevlm.device_tests.devices.adb import AdbDevice
    from edgevlm.device_tests.devices.android_app import run_app_bench

    document = run_app_bench(AdbDevice("adb:R5CX21ABCDE"), tmp_path / "pulled" / "bench.json", runs=3,
                             prompt="What's on the table?", sleep=lambda s: None)
    assert phone_app.calls() == [
        ["-s", "R5CX21ABCDE", "shell", "run-as ai.edgevlm.demo rm -f files/edgevlm-bench.json files/edgevlm-bench.error"],
        ["-s", "R5CX21ABCDE", "shell", "am start -W -S -n ai.edgevlm.demo/.MainActivity --es mode bench --es runs 3 "
                                       "--es warmup 1 --es max_new_tokens 32 --es prompt 'What'\"'\"'s on the table?'"],
        ["-s", "R5CX21ABCDE", "shell", "run-as ai.edgevlm.demo cat files/edgevlm-bench.json"]]
    # the phone's shell handed am the prompt as one argument, quote included
    am = [json.loads(x) for x in (phone_app.root / "am.log").read_text().splitlines()]
    assert am == [["start", "-W", "-S", "-n", "ai.edgevlm.demo/.MainActivity", "--es", "mode", "bench", "--es", "runs",
                   "3", "--es", "warmup", "1", "--es", "max_new_tokens", "32", "--es", "prompt", "What's on the table?"]]
    assert document["argv"] == am[0] and json.loads((tmp_path / "pulled" / "bench.json").read_text()) == document


def test_app_bench_reports_the_apps_error(phone_app, tmp_path, monkeypatch):
    from edgevlm.device_tests.devices.adb import AdbDevice
    from edgevlm.device_tests.devices.android_app import run_app_bench
    from edgevlm.errors import EdgeVLMError

    monkeypatch.setenv("FAKE_APP_ERROR", "no vision encoder opened: model.qnn.onnx (HTP): QNN HTP backend failed\n")
    with pytest.raises(EdgeVLMError, match="bench failed on the phone: no vision encoder opened: model.qnn.onnx"):
        run_app_bench(AdbDevice("adb:R5CX21ABCDE"), tmp_path / "bench.json", sleep=lambda s: None)
    assert not (tmp_path / "bench.json").exists()


def test_app_bench_says_to_install_the_app(fake_adb, tmp_path, monkeypatch):  # noqa: F811
    from edgevlm.device_tests.devices.adb import AdbDevice
    from edgevlm.device_tests.devices.android_app import run_app_bench
    from edgevlm.errors import EdgeVLMError

    bindir = tmp_path / "phone-bin"
    bindir.mkdir()
    (bindir / "run-as").write_text(FAKE_RUN_AS)
    (bindir / "run-as").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(EdgeVLMError, match="run-as ai.edgevlm.demo` failed: run-as: unknown package") as error:
        run_app_bench(AdbDevice("adb:R5CX21ABCDE"), tmp_path / "bench.json", sleep=lambda s: None)
    assert "installDebug" in error.value.fix
    assert len(fake_adb.calls()) == 1  # nothing started
