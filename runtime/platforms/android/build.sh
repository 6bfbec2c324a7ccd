#!/usr/bin/env bash
# Build edgevlm's native runtime for Android arm64-v8a with the NDK: libedgevlm.so (the C API),
# libedgevlm_jni.so (ai.edgevlm.EdgeVLM) and edgevlm-runner, against an ExecuTorch Android install
# and ONNX Runtime's Android QNN package, then stage what a phone needs into one folder.
# Steps, prerequisites and the adb commands: README.md beside this file. Runs under bash 3.2
# (macOS) too: empty arrays are expanded with ${a[@]+...}, which set -u accepts there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"

usage() {
  cat <<EOF
usage: $0 --executorch DIR (--onnxruntime AAR_OR_DIR | --no-ort) [options]

  --executorch DIR     ExecuTorch's Android install (cmake --install of the android-arm64-v8a
                       preset): the folder holding lib/cmake/ExecuTorch   [env EXECUTORCH_ANDROID]
  --onnxruntime PATH   onnxruntime-android-qnn: the .aar, the unpacked .aar folder, or its
                       libonnxruntime.so                                   [env ONNXRUNTIME_ANDROID]
  --no-ort             build without ONNX Runtime (vision only through a .pte's vision_encoder)
  --qnn-libs DIR       folder with libQnnHtp.so, libQnnHtpV75Stub.so, libQnnHtpV75Skel.so and
                       libQnnSystem.so, staged beside the runner            [env QNN_LIBS]
  --build-dir DIR      default: $repo/build/android-arm64-v8a
  --platform API       ANDROID_PLATFORM (default android-29)
  --jobs N             parallel compile jobs (default 2)

The NDK comes from ANDROID_NDK (or ANDROID_NDK_HOME).
EOF
}

die() {
  echo "android/build.sh: error: $1" >&2
  [ $# -lt 2 ] || echo "  fix: $2" >&2
  exit 2
}

executorch="${EXECUTORCH_ANDROID:-}"
onnxruntime="${ONNXRUNTIME_ANDROID:-}"
qnn_libs="${QNN_LIBS:-}"
with_ort=1
build_dir="$repo/build/android-arm64-v8a"
platform="android-29"
jobs=2
while [ $# -gt 0 ]; do
  case "$1" in
    --executorch) executorch="${2:?--executorch needs a folder}"; shift 2 ;;
    --onnxruntime) onnxruntime="${2:?--onnxruntime needs a path}"; shift 2 ;;
    --no-ort) with_ort=0; shift ;;
    --qnn-libs) qnn_libs="${2:?--qnn-libs needs a folder}"; shift 2 ;;
    --build-dir) build_dir="${2:?--build-dir needs a folder}"; shift 2 ;;
    --platform) platform="${2:?--platform needs e.g. android-29}"; shift 2 ;;
    --jobs) jobs="${2:?--jobs needs a number}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument $1" ;;
  esac
done

# ---- what the build needs, checked before anything runs -------------------------------------------
ndk="${ANDROID_NDK:-${ANDROID_NDK_HOME:-}}"
[ -n "$ndk" ] || die "ANDROID_NDK is not set, and this build needs the Android NDK" \
  "install NDK r28c (Android Studio > SDK Manager > NDK, or developer.android.com/ndk/downloads) and export ANDROID_NDK=<its folder>"
toolchain="$ndk/build/cmake/android.toolchain.cmake"
[ -f "$toolchain" ] || die "ANDROID_NDK=$ndk has no build/cmake/android.toolchain.cmake" \
  "point ANDROID_NDK at the NDK's root folder (the one holding ndk-build and build/)"

[ -n "$executorch" ] || die "no ExecuTorch Android install given" \
  "build ExecuTorch for Android (README.md, step 2) and pass --executorch <install folder> or set EXECUTORCH_ANDROID"
et_config="$executorch/lib/cmake/ExecuTorch/executorch-config.cmake"
[ -f "$et_config" ] || die "$executorch is not an ExecuTorch install: $et_config is missing" \
  "run \`cmake --build <executorch build> --target install\` for the android-arm64-v8a preset and pass its CMAKE_INSTALL_PREFIX"

cmake_args=()
if [ "$with_ort" -eq 1 ]; then
  [ -n "$onnxruntime" ] || die "no ONNX Runtime for Android given" \
    "download com.microsoft.onnxruntime:onnxruntime-android-qnn (.aar) and pass --onnxruntime <the .aar>, or build with --no-ort"
  case "$onnxruntime" in
    *.so) ort_lib="$onnxruntime" ;;
    *.aar)
      [ -f "$onnxruntime" ] || die "$onnxruntime does not exist" "pass the downloaded onnxruntime-android-qnn .aar"
      unpacked="$build_dir/onnxruntime-aar"
      rm -rf "$unpacked" && mkdir -p "$unpacked"
      python3 -m zipfile -e "$onnxruntime" "$unpacked" || die "could not unpack $onnxruntime" "check that it is an .aar (a zip)"
      ort_lib="$unpacked/jni/arm64-v8a/libonnxruntime.so" ;;
    *) ort_lib="$onnxruntime/jni/arm64-v8a/libonnxruntime.so" ;;
  esac
  [ -f "$ort_lib" ] || die "$ort_lib does not exist" \
    "pass the onnxruntime-android-qnn .aar (it holds jni/arm64-v8a/libonnxruntime.so) or that .so itself"
  cmake_args+=(-DEDGEVLM_WITH_ORT=ON "-DONNXRUNTIME_LIB=$ort_lib")
fi
if [ -n "$qnn_libs" ]; then
  for lib in libQnnHtp.so libQnnHtpV75Stub.so libQnnHtpV75Skel.so libQnnSystem.so; do
    [ -f "$qnn_libs/$lib" ] || die "$qnn_libs has no $lib" \
      "collect the QAIRT SDK's lib/aarch64-android/{libQnnHtp,libQnnHtpV75Stub,libQnnSystem}.so and lib/hexagon-v75/unsigned/libQnnHtpV75Skel.so into one folder"
  done
fi
command -v cmake >/dev/null || die "cmake is not on PATH" "pip install 'cmake>=3.28' (or apt-get install cmake)"
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi

# ---- configure and build ---------------------------------------------------------------------------
# Kernel flags as the aarch64-linux target (runtime/targets.py): armv8.2-a + dotprod + fp16 is every
# phone core since the Cortex-A76 (Snapdragon 855), the Snapdragon 8 Gen 3 included.
cmake -S "$here" -B "$build_dir" ${generator[@]+"${generator[@]}"} \
  -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
  -DANDROID_ABI=arm64-v8a \
  -DANDROID_PLATFORM="$platform" \
  -DANDROID_STL=c++_shared \
  -DCMAKE_BUILD_TYPE=Release \
  -DEDGEVLM_EXECUTORCH_PACKAGE=ON \
  -Dexecutorch_DIR="$executorch/lib/cmake/ExecuTorch" \
  -DEDGEVLM_KERNEL_ARCH=armv8.2-a+dotprod+fp16 \
  ${cmake_args[@]+"${cmake_args[@]}"}
cmake --build "$build_dir" --parallel "$jobs" --target edgevlm edgevlm-runner edgevlm_jni

# ---- stage one folder to adb push ------------------------------------------------------------------
stage="$build_dir/stage"
rm -rf "$stage" && mkdir -p "$stage"
cp "$build_dir/runtime/edgevlm-runner" "$build_dir/runtime/libedgevlm.so" "$build_dir/libedgevlm_jni.so" "$stage/"
libcxx="$(find "$ndk/toolchains/llvm/prebuilt" -path '*/sysroot/usr/lib/aarch64-linux-android/libc++_shared.so' | head -n 1)"
[ -n "$libcxx" ] || die "no aarch64 libc++_shared.so under $ndk/toolchains/llvm/prebuilt" "use an NDK with the LLVM toolchain (r23+)"
cp "$libcxx" "$stage/"
if [ "$with_ort" -eq 1 ]; then cp "$ort_lib" "$stage/"; fi
if [ -n "$qnn_libs" ]; then
  for lib in libQnnHtp.so libQnnHtpV75Stub.so libQnnHtpV75Skel.so libQnnSystem.so libQnnHtpPrepare.so; do
    if [ -f "$qnn_libs/$lib" ]; then cp "$qnn_libs/$lib" "$stage/"; fi
  done
fi
echo "android/build.sh: staged for the phone in $stage:"
ls -1 "$stage"
echo "next: adb push $stage/. /data/local/tmp/edgevlm/ (README.md, step 4)"
