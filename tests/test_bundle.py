"""`edgevlm bundle`: a tiny export laid out for an Android (QNN vision) and an iOS (Core ML vision)
app, every copy re-hashed; tampered exports refused with nothing written; store size budgets."""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from edgevlm.app_budget import ANDROID_LIMITS, GB, IOS_LIMITS, MB, budget_warnings
from edgevlm.cli.bundle_commands import bundle_schema
from edgevlm.cli.main import main
from edgevlm.export.manifest import sha256_path

DECODER = {"backend": "executorch", "weights": "fp32", "kv_cache": "int4", "max_seq_len": 256}
ANDROID_ASSETS, ANDROID_CPP = "app/src/main/assets/edgevlm", "app/src/main/cpp"
QNN_HOST = platform.system() == "Linux" and platform.machine() == "x86_64"


def _export(tiny_checkpoints, root: Path, vision: dict) -> Path:
    from edgevlm.export.driver import export_model
    from edgevlm.export.recipes import load_recipe

    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": f"bundle-{vision['backend']}", "vision": [vision],
                                      "decoder": [DECODER], "calibration": {"source": "builtin", "images": 6}}))
    return export_model(tiny_checkpoints["minicpmv-2.6-tiny"], load_recipe(str(recipe)), root / "out")


@pytest.fixture(scope="module")
def qnn_export(tiny_checkpoints, tmp_path_factory):
    """QNN HTP w8a16 EPContext vision (the android-sd8g3 options) + INT4-KV .pte decoder."""
    if not QNN_HOST:
        pytest.skip("onnxruntime-qnn compiles HTP contexts on Linux x86_64 only")
    from edgevlm.export.recipes import load_recipe

    options = dict(load_recipe("android-sd8g3").vision[0].options)
    return _export(tiny_checkpoints, tmp_path_factory.mktemp("bundle-qnn"),
                   {"backend": "qnn", "precision": "w8a16", "options": options})


@pytest.fixture(scope="module")
def coreml_export(tiny_checkpoints, tmp_path_factory):
    """Core ML fp16 .mlpackage vision + INT4-KV .pte decoder."""
    return _export(tiny_checkpoints, tmp_path_factory.mktemp("bundle-coreml"),
                   {"backend": "coreml", "precision": "fp16"})


def _bundle(export: Path, platform_name: str, out: Path, *extra: str) -> int:
    return main(["bundle", str(export), "--platform", platform_name, "--out", str(out), *extra])


def _manifest_hashes(export: Path) -> dict[str, str]:
    manifest = json.loads((export / "manifest.json").read_text())
    hashes = {e["file"]: e["sha256"] for e in manifest["files"]}
    for a in manifest["artifacts"]:
        hashes[a["file"]] = a["sha256"]
        hashes |= {e["file"]: e["sha256"] for e in a.get("extra_files", [])}
    return hashes


def _check_result(result: dict, out: Path) -> None:
    jsonschema.validate(result, bundle_schema())
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    listed = {f["path"] for f in result["files"]}
    # .mlpackage entries are folders: their files are on disk under the listed path
    assert all(any(p == f or p.startswith(f + "/") for f in listed) for p in on_disk - {"INTEGRATION.md",
                                                                                        ".edgevlm-output"})
    for f in result["files"]:
        assert sha256_path(out / f["path"]) == f["sha256"]
    assert sum(result["parts"].values()) == result["total_bytes"] == sum(f["bytes"] for f in result["files"])
    assert not [p for p in on_disk if "verification/" in p]


def test_android_layout_has_every_file_with_the_manifest_hashes(qnn_export, tmp_path):
    out = tmp_path / "app"
    assert _bundle(qnn_export, "android", out, "--json", str(tmp_path / "b.json")) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    _check_result(result, out)
    assets = out / ANDROID_ASSETS
    hashes = _manifest_hashes(qnn_export)
    shipped = {k: v for k, v in hashes.items() if not k.startswith("verification/") and not k.startswith("kernels/")}
    for name, sha in shipped.items():  # the .pte, tokenizer, EPContext .onnx, its .bin and the QDQ model
        assert sha256_path(assets / name) == sha, name
    assert {Path(n).suffix for n in shipped} >= {".pte", ".onnx", ".bin", ".json"}
    assert (assets / "manifest.json").read_bytes() == (qnn_export / "manifest.json").read_bytes()
    kernels = {k: v for k, v in hashes.items() if k.startswith("kernels/")}
    assert kernels, "the INT4-KV .pte ships kernel sources"
    for name, sha in kernels.items():
        assert sha256_path(out / ANDROID_CPP / "edgevlm-kernels" / Path(name).name) == sha
    native = out / ANDROID_CPP / "edgevlm"
    for rel in ("CMakeLists.txt", "cmake/executorch_package.cmake", "include/edgevlm/c_api.h", "src/pipeline.cpp",
                "platforms/android/CMakeLists.txt", "platforms/android/EdgeVLM.kt"):
        assert (native / rel).is_file(), rel
    assert not (native / "platforms/apple").exists() and not list(out.rglob("*.mlpackage"))
    text = (out / "INTEGRATION.md").read_text()
    et = json.loads((qnn_export / "manifest.json").read_text())["toolchain"]["executorch"]
    for line in ('abiFilters += listOf("arm64-v8a")', "com.microsoft.onnxruntime:onnxruntime-android-qnn:1.29.0",
                 f"org.pytorch:executorch-android:{et}", "src/main/cpp/edgevlm/platforms/android/CMakeLists.txt"):
        assert line in text
    assert result["verification"]["run"] == "verify" and result["warnings"] == []


def test_ios_layout_has_the_mlpackage_and_apple_sources(coreml_export, tmp_path):
    out = tmp_path / "ios"
    assert _bundle(coreml_export, "ios", out, "--json", str(tmp_path / "b.json")) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    _check_result(result, out)
    resources = out / "EdgeVLMResources"
    (package,) = resources.glob("*.mlpackage")
    hashes = _manifest_hashes(coreml_export)
    assert sha256_path(package) == hashes[package.name]
    for name in [n for n in hashes if n.startswith("tokenizer/") or n.endswith(".pte")]:
        assert sha256_path(resources / name) == hashes[name]
    native = out / "EdgeVLMNative"
    for rel in ("include/edgevlm/c_api.h", "src/vision_coreml.mm", "platforms/apple/EdgeVLM.swift",
                "platforms/apple/CEdgeVLM/module.modulemap"):
        assert (native / rel).is_file(), rel
    assert list((native / "edgevlm-kernels").glob("*.cpp"))
    assert not (native / "platforms/android").exists()
    assert "EdgeVLM(artifacts:" in (out / "INTEGRATION.md").read_text()


def test_an_export_without_the_platforms_vision_artifact_is_refused(coreml_export, tmp_path, capsys):
    assert _bundle(coreml_export, "android", tmp_path / "app") == 2  # a Core ML export has nothing Android opens
    assert "qnn or ort" in capsys.readouterr().err
    assert not (tmp_path / "app").exists()


@pytest.mark.parametrize("no_verify", [False, True])
def test_a_changed_byte_is_refused_naming_the_file_and_nothing_is_written(qnn_export, tmp_path, capsys, no_verify):
    copy = shutil.copytree(qnn_export, tmp_path / "export")
    binary = next(copy.glob("*.bin"))
    data = bytearray(binary.read_bytes())
    data[len(data) // 2] ^= 0x01
    binary.write_bytes(bytes(data))
    out = tmp_path / "bundles" / "app"
    extra = ["--no-verify"] if no_verify else []
    assert _bundle(copy, "android", out, "--json", str(tmp_path / "b.json"), *extra) == 1
    assert binary.name in capsys.readouterr().err
    # verify refuses before any copy; with --no-verify the copy's hash check does, inside the atomic folder
    assert not out.exists() and not (tmp_path / "b.json").exists()
    leftovers = list((tmp_path / "bundles").iterdir()) if (tmp_path / "bundles").exists() else []
    assert leftovers == []  # no .app.partial-*, no lock file


def test_an_existing_output_is_an_input_error(qnn_export, tmp_path):
    out = tmp_path / "app"
    out.mkdir()
    (out / "mine.txt").write_text("not edgevlm's")
    assert _bundle(qnn_export, "android", out, "--no-verify") == 2
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_the_schema_refuses_a_result_that_does_not_fit():
    schema = bundle_schema()
    good = {"schema": "edgevlm.bundle/1", "platform": "ios", "artifacts": "a", "out": "b",
            "verification": {"run": "skipped", "detail": ""}, "files": [],
            "parts": {p: 0 for p in ("vision", "decoder", "tokenizer", "manifest", "native")},
            "total_bytes": 0, "warnings": []}
    jsonschema.validate(good, schema)
    for bad in ({**good, "platform": "windows"}, {k: v for k, v in good.items() if k != "parts"},
                {**good, "files": [{"path": "x", "part": "vision", "bytes": 1, "sha256": "nothex",
                                    "checked_against": "manifest"}]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def _sizes(vision=0, decoder=0, tokenizer=2 * MB, manifest=10_000, native=500_000):
    return {"vision": vision, "decoder": decoder, "tokenizer": tokenizer, "manifest": manifest, "native": native}


def test_android_budgets_name_each_play_limit_crossed():
    assert budget_warnings(_sizes(vision=50 * MB, decoder=100 * MB), ANDROID_LIMITS) == []
    base = budget_warnings(_sizes(vision=400 * MB, decoder=300 * MB), ANDROID_LIMITS)
    assert [w["limit"] for w in base] == ["Google Play base module download"]
    assert base[0]["measured_bytes"] == 702 * MB + 10_000 and "asset pack" in base[0]["advice"]
    big = budget_warnings(_sizes(vision=400 * MB, decoder=int(1.6 * GB)), ANDROID_LIMITS)
    assert [w["limit"] for w in big] == ["Google Play base module download", "Google Play asset pack (each)"]
    huge = budget_warnings(_sizes(vision=int(1.4 * GB), decoder=int(2.7 * GB)), ANDROID_LIMITS)
    assert len(huge) == 3 and huge[2]["limit_bytes"] == 4 * GB
    assert all(w["source"].startswith("Google Play Console Help") for w in huge)


def test_ios_budgets_warn_at_the_cellular_and_app_size_limits():
    assert budget_warnings(_sizes(vision=60 * MB, decoder=120 * MB), IOS_LIMITS) == []
    cellular = budget_warnings(_sizes(vision=60 * MB, decoder=140 * MB), IOS_LIMITS)
    assert [w["limit"] for w in cellular] == ["App Store cellular download"]
    both = budget_warnings(_sizes(vision=800 * MB, decoder=int(3.3 * GB)), IOS_LIMITS)
    assert [w["limit_bytes"] for w in both] == [200 * MB, 4 * GB] and "Background Assets" in both[1]["advice"]


def test_the_bundled_native_tree_configures_on_its_own(qnn_export, tmp_path):
    """CMake configures the bundled runtime alone (every source it names is there), with the kernels
    found through EDGEVLM_KERNEL_DIR; without it, it looks for ../export/kernels and fails."""
    import subprocess

    from edgevlm.runtime.build import which
    from edgevlm.runtime.targets import installed_executorch

    cmake = which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed (pip install -e '.[test]')")
    out = tmp_path / "app"
    assert _bundle(qnn_export, "android", out, "--no-verify") == 0
    source, kernels = out / ANDROID_CPP / "edgevlm", out / ANDROID_CPP / "edgevlm-kernels"
    base = [cmake, "-S", str(source), f"-DEXECUTORCH_ROOT={installed_executorch()[0]}", "-DEDGEVLM_WITH_ORT=OFF"]
    ninja = which("ninja")
    base += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"] if ninja else []
    ok = subprocess.run(base + ["-B", str(tmp_path / "b1"), f"-DEDGEVLM_KERNEL_DIR={kernels}"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    missing = subprocess.run(base + ["-B", str(tmp_path / "b2")], capture_output=True, text=True)
    assert missing.returncode != 0 and "Cannot find source file" in missing.stderr


def test_a_folder_without_a_manifest_is_an_input_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _bundle(tmp_path / "empty", "ios", tmp_path / "out") == 2
    assert "no manifest.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse: an unknown platform is a usage error
        _bundle(tmp_path / "empty", "windows", tmp_path / "out")
    assert exit_info.value.code == 2 and not (tmp_path / "out").exists()
