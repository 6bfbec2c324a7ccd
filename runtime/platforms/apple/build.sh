#!/usr/bin/env bash
# Build edgevlm's native runtime for iOS (device, arm64) or macOS (Apple silicon, arm64) with the
# Core ML vision encoder: edgevlm.framework (the C API that EdgeVLM.swift calls) and, on macOS,
# edgevlm-runner; against ExecuTorch's xcframeworks or an ExecuTorch CMake install.
# Steps and prerequisites: README.md beside this file. Runs under macOS's bash 3.2 (empty arrays are
# expanded with ${a[@]+...}, which set -u accepts there).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"

usage() {
  cat <<EOF
usage: $0 --platform ios|macos (--xcframeworks DIR [--executorch-source DIR] | --executorch-install DIR) [options]

  --platform ios|macos      iOS device (arm64, iOS 17+) or macOS on Apple silicon (arm64, macOS 14+)
  --xcframeworks DIR        folder holding ExecuTorch's executorch, threadpool, backend_xnnpack,
                            kernels_optimized and kernels_quantized .xcframework   [env EXECUTORCH_XCFRAMEWORKS]
  --executorch-source DIR   ExecuTorch checkout of the same release, for the kernel headers the
                            xcframeworks do not ship                              [env EXECUTORCH_SOURCE]
  --executorch-install DIR  or: ExecuTorch's cmake --install of the ios / macos preset
  --debug-frameworks        link the *_debug.xcframeworks (ExecuTorch logs kept)
  --kernel-arch ARCH        -march of edgevlm's kernels (default: armv8.2-a+dotprod+fp16 on macOS,
                            armv8.2-a+fp16 on iOS, whose oldest iOS 17 devices, A12, lack dotprod)
  --build-dir DIR           default: $repo/build/apple-<platform>
  --jobs N                  parallel compile jobs (default: all cores)
env EDGEVLM_KERNEL_DIR      where the .pte's kernel sources are, when not ../export/kernels (edgevlm bundle)
EOF
}

die() {
  echo "apple/build.sh: error: $1" >&2
  [ $# -lt 2 ] || echo "  fix: $2" >&2
  exit 2
}

platform=""
xcframeworks="${EXECUTORCH_XCFRAMEWORKS:-}"
source_dir="${EXECUTORCH_SOURCE:-}"
install_dir=""
suffix=""
kernel_arch=""
build_dir=""
jobs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --platform) platform="${2:?--platform needs ios or macos}"; shift 2 ;;
    --xcframeworks) xcframeworks="${2:?--xcframeworks needs a folder}"; shift 2 ;;
    --executorch-source) source_dir="${2:?--executorch-source needs a folder}"; shift 2 ;;
    --executorch-install) install_dir="${2:?--executorch-install needs a folder}"; shift 2 ;;
    --debug-frameworks) suffix="_debug"; shift ;;
    --kernel-arch) kernel_arch="${2:?--kernel-arch needs a value}"; shift 2 ;;
    --build-dir) build_dir="${2:?--build-dir needs a folder}"; shift 2 ;;
    --jobs) jobs="${2:?--jobs needs a number}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument $1" ;;
  esac
done

# ---- what the build needs, checked before anything runs -------------------------------------------
[ "$(uname -s)" = "Darwin" ] || die "iOS and macOS builds need a Mac with Xcode; this is $(uname -s)" \
  "run this script on macOS 14+ with Xcode 15+ (xcode-select --install for the command line tools)"
command -v xcrun >/dev/null || die "xcrun is not on PATH" "install Xcode and run xcode-select -s /Applications/Xcode.app"
case "$platform" in
  ios) sdk=iphoneos; system=(-DCMAKE_SYSTEM_NAME=iOS -DCMAKE_OSX_SYSROOT=iphoneos -DCMAKE_OSX_DEPLOYMENT_TARGET=17.0)
       targets=(edgevlm); : "${kernel_arch:=armv8.2-a+fp16}" ;;
  macos) sdk=macosx; system=(-DCMAKE_OSX_SYSROOT=macosx -DCMAKE_OSX_DEPLOYMENT_TARGET=14.0)
         targets=(edgevlm edgevlm-runner); : "${kernel_arch:=armv8.2-a+dotprod+fp16}" ;;
  "") usage >&2; die "no --platform given" "pass --platform ios or --platform macos" ;;
  *) die "unknown platform $platform" "pass --platform ios or --platform macos" ;;
esac
xcrun --sdk "$sdk" --show-sdk-path >/dev/null 2>&1 || die "Xcode has no $sdk SDK" \
  "install the $platform platform in Xcode > Settings > Platforms"

package=()
if [ -n "$xcframeworks" ]; then
  [ -n "$(find "$xcframeworks" -maxdepth 2 -name "executorch${suffix}.xcframework" 2>/dev/null)" ] || \
    die "$xcframeworks holds no executorch${suffix}.xcframework" \
      "build them with ExecuTorch's ./scripts/build_apple_frameworks.sh (its cmake-out/) or resolve its swiftpm-<version> branch in Xcode, and pass that folder"
  package=(-DEDGEVLM_EXECUTORCH_XCFRAMEWORKS="$xcframeworks" -DEDGEVLM_EXECUTORCH_XCFRAMEWORK_SUFFIX="$suffix")
  if [ -n "$source_dir" ]; then package+=(-DEDGEVLM_EXECUTORCH_SOURCE="$source_dir"); fi
elif [ -n "$install_dir" ]; then
  [ -f "$install_dir/lib/cmake/ExecuTorch/executorch-config.cmake" ] || \
    die "$install_dir is not an ExecuTorch install: lib/cmake/ExecuTorch/executorch-config.cmake is missing" \
      "cmake --build <executorch build> --config Release --target install for the $platform preset (README.md, step 2)"
  package=(-Dexecutorch_DIR="$install_dir/lib/cmake/ExecuTorch")
else
  die "no ExecuTorch given" "pass --xcframeworks DIR (with --executorch-source DIR) or --executorch-install DIR"
fi
command -v cmake >/dev/null || die "cmake is not on PATH" "brew install cmake ninja, or pip install 'cmake>=3.28' ninja"
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
: "${build_dir:=$repo/build/apple-$platform}"
: "${jobs:=$(sysctl -n hw.ncpu)}"

# ---- configure and build ---------------------------------------------------------------------------
cmake -S "$here" -B "$build_dir" ${generator[@]+"${generator[@]}"} "${system[@]}" \
  -DCMAKE_OSX_ARCHITECTURES=arm64 \
  -DCMAKE_BUILD_TYPE=Release \
  -DEDGEVLM_EXECUTORCH_PACKAGE=ON "${package[@]}" \
  -DEDGEVLM_WITH_COREML=ON \
  -DEDGEVLM_KERNEL_ARCH="$kernel_arch" \
  ${EDGEVLM_KERNEL_DIR:+"-DEDGEVLM_KERNEL_DIR=$EDGEVLM_KERNEL_DIR"}
cmake --build "$build_dir" --config Release --parallel "$jobs" --target "${targets[@]}"
echo "apple/build.sh: built in $build_dir/runtime:"
ls -1d "$build_dir"/runtime/edgevlm.framework "$build_dir"/runtime/edgevlm-runner 2>/dev/null || true
