#!/usr/bin/env bash
# System packages the tests use beyond pip (Debian/Ubuntu): a C++17 compiler for edgevlm's kernels
# and the native runtime, binutils' readelf, and the aarch64 cross compiler + qemu-user that build
# and run the runtime for aarch64 Linux (tests/test_runtime_*.py skip those checks, saying why,
# where they cannot be installed); for the phone build files (tests/test_runtime_platforms.py):
# the linter ShellCheck, a JDK (jni.h, java), clang (Objective-C++ check), npm's kotlin-compiler.
# adb: the Android harness checks that a missing phone is reported through adb's own output.
# chromium: tests/test_report_browser.py opens `edgevlm report`'s HTML in it (headless, Playwright).
# Needs root or sudo; does nothing for packages already there.
set -euo pipefail
packages=(g++ binutils g++-aarch64-linux-gnu qemu-user shellcheck openjdk-17-jdk-headless clang adb chromium)
# kotlinc for EdgeVLM.kt (runtime/platforms/android), from the npm registry; optional like the rest
if ! command -v kotlinc >/dev/null && command -v npm >/dev/null \
    && [ ! -x "$(npm root -g 2>/dev/null)/kotlin-compiler/bin/kotlinc" ] && [ -w "$(npm root -g 2>/dev/null)" ]; then
  npm install -g -q kotlin-compiler@2.4.20 >/dev/null 2>&1 \
    || echo "system-deps: npm could not install kotlin-compiler; the Kotlin checks skip" >&2
fi
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if ! command -v apt-get >/dev/null; then
  echo "system-deps: no apt-get here; install ${missing[*]} with this system's package manager" >&2
  exit 0
fi
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then sudo_cmd="sudo"; else
    echo "system-deps: not root and no sudo; skipping ${missing[*]} (the tests that need them skip)" >&2
    exit 0
  fi
fi
# a package index or mirror that cannot be reached must not stop the tests: those that need the
# missing tools skip and say which tool is missing
if ! $sudo_cmd apt-get update -q >/dev/null \
    || ! DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}" >/dev/null; then
  echo "system-deps: apt-get could not install ${missing[*]}; the tests that need them skip" >&2
fi
