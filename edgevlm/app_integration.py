"""OUT/INTEGRATION.md: the lines to paste into an app's build, and the list of files with sizes.

Maven versions (looked up on Maven Central / mvnrepository.com when this was written):
onnxruntime-android-qnn 1.29.0 is the newest Microsoft release listed (Aug 2026); ExecuTorch's AAR
must be the release the .pte was exported with, so its version is read from the manifest's toolchain.
"""

from __future__ import annotations

from edgevlm.app_bundle import LAYOUT

ORT_QNN_MAVEN = "com.microsoft.onnxruntime:onnxruntime-android-qnn:1.29.0"
EXECUTORCH_MAVEN = "org.pytorch:executorch-android"


def _size(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB" if n >= 2 ** 20 else f"{n / 1024:.1f} KiB"


def android_steps(manifest: dict) -> str:
    models, native, kernels = LAYOUT["android"]
    et = manifest.get("toolchain", {}).get("executorch", "<the executorch version in manifest.json's toolchain>")
    return f"""## Android (Gradle, app/build.gradle.kts)

```kotlin
android {{
    defaultConfig {{
        ndk {{ abiFilters += listOf("arm64-v8a") }}
        externalNativeBuild {{
            cmake {{
                arguments += listOf(
                    "-DEDGEVLM_EXECUTORCH_PACKAGE=ON",
                    "-Dexecutorch_DIR=<ExecuTorch Android install>/lib/cmake/ExecuTorch",
                    "-DEDGEVLM_WITH_ORT=ON", "-DONNXRUNTIME_LIB=<folder>/jni/arm64-v8a/libonnxruntime.so",
                    "-DEDGEVLM_KERNEL_DIR=${{projectDir}}/src/main/cpp/edgevlm-kernels",
                    "-DEDGEVLM_KERNEL_ARCH=armv8.2-a+dotprod+fp16",
                    "-DANDROID_STL=c++_shared")
            }}
        }}
    }}
    externalNativeBuild {{
        cmake {{ path = file("src/main/cpp/edgevlm/platforms/android/CMakeLists.txt") }}
    }}
    // the runtime maps the .pte and hashes every file: keep them stored, not deflated, in the APK
    androidResources {{ noCompress += listOf("pte", "onnx", "bin", "json") }}
}}

dependencies {{
    implementation("{ORT_QNN_MAVEN}")  // ONNX Runtime + QNN EP: libonnxruntime.so for the vision encoder
    // ExecuTorch's Java API, only if the app also calls it: edgevlm's runtime links the ExecuTorch C++
    // install above, and the AAR's own libexecutorch.so must then be the same release ({et}, the .pte's)
    implementation("{EXECUTORCH_MAVEN}:{et}")
}}
```

- `{native}/`: edgevlm's runtime (CMake). `{kernels}/`: the `.pte`'s INT4 KV-cache kernels, compiled
  into `libedgevlm.so` (`EDGEVLM_KERNEL_DIR`). How to build ExecuTorch for Android and where the QNN
  HTP libraries go: `{native}/platforms/android/README.md`.
- `{models}/`: the model files. The runtime opens a folder, not an APK asset: copy
  `assets/edgevlm/` to `context.filesDir` once (AssetManager), then
  `ai.edgevlm.EdgeVLM.open(File(filesDir, "edgevlm").path)`; it checks every file's sha256.
- If the ExecuTorch AAR's version is not on Maven Central, build it from the same tag (README, step 2).
"""


def ios_steps(manifest: dict) -> str:
    models, native, kernels = LAYOUT["ios"]
    return f"""## iOS (Xcode)

1. Build the runtime as `edgevlm.framework` on a Mac, against ExecuTorch xcframeworks of the release the
   `.pte` was exported with ({manifest.get("toolchain", {}).get("executorch", "see manifest.json")}; how:
   `{native}/platforms/apple/README.md`), with the `.pte`'s INT4 KV-cache kernels compiled in:
   `EDGEVLM_KERNEL_DIR=$PWD/{kernels} {native}/platforms/apple/build.sh --platform ios --xcframeworks DIR
   --executorch-source DIR`.
2. Drag `edgevlm.framework` into the target (Embed & Sign), add `{native}/platforms/apple/EdgeVLM.swift`
   to the target and `{native}/platforms/apple/CEdgeVLM` to Swift's import paths (SWIFT_INCLUDE_PATHS).
3. Add `{models}/` to the target as a *folder reference* (blue folder): Xcode copies it as it is,
   `.mlpackage` included, so the runtime can check its sha256 against the manifest; the runtime
   compiles the package to `.mlmodelc` on first load and caches it (Caches/edgevlm-coreml/).
4. `let model = try EdgeVLM(artifacts: Bundle.main.url(forResource: "{models}", withExtension: nil)!)`.
"""


def integration_markdown(platform: str, manifest: dict, files, sizes: dict[str, int], warnings: list[dict]) -> str:
    steps = android_steps(manifest) if platform == "android" else ios_steps(manifest)
    rows = "\n".join(f"| `{f.dest}` | {f.part} | {f.bytes:,} ({_size(f.bytes)}) |" for f in files)
    totals = "\n".join(f"| {part} | {n:,} ({_size(n)}) |" for part, n in sizes.items())
    notes = "\n".join(f"- **{w['limit']}** ({_size(w['limit_bytes'])}, {w['source']}): {_size(w['measured_bytes'])} "
                      f"measured. {w['advice']}" for w in warnings) or "- within every store limit checked"
    return f"""# edgevlm in an {platform} app

Made by `edgevlm bundle` from an export of MiniCPM-V {manifest['model']['version']}
(recipe `{manifest['recipe']['name']}`). Every model file below has the sha256 its `manifest.json` records.

{steps}
## Sizes (bytes, uncompressed)

| part | bytes |
|---|---|
{totals}

Store limits:

{notes}

## Files

| file | part | bytes |
|---|---|---|
{rows}
"""
