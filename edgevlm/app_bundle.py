"""`edgevlm bundle`: what an app needs from a verified export, laid out the way each platform's
build finds it, every copied file re-hashed against the manifest.

    android  OUT/app/src/main/assets/edgevlm/      manifest.json, tokenizer/, decoder .pte, QNN EPContext
                                                    .onnx + .bin (and ORT .onnx vision artifacts)
             OUT/app/src/main/cpp/edgevlm/         the native runtime (CMake project, include/, src/, tools/, cmake/,
                                                    platforms/android/)
             OUT/app/src/main/cpp/edgevlm-kernels/ the .pte's INT4-cache kernel sources (compiled into the app)
    ios      OUT/EdgeVLMResources/                  manifest.json, tokenizer/, decoder .pte, the .mlpackage
             OUT/EdgeVLMNative/                     include/, src/, tools/, platforms/apple/ (+ the CMake files)
             OUT/EdgeVLMNative/edgevlm-kernels/     the kernel sources

What goes in follows what the native runtime loads (device_tests/device_bundle.py makes the same
choice for a phone's /data/local/tmp): the executorch decoder, the platform's vision artifacts with
all their extra files (the runtime checks every one of them, the QDQ model beside a QNN context
included), the tokenizer; never verification/.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from edgevlm.errors import ConfigError, IntegrityError

PLATFORMS = ("android", "ios")
KERNEL_SUFFIXES = (".cpp", ".cc", ".c", ".h", ".hpp")  # decoder extra files an app compiles, not loads
LAYOUT = {  # platform -> (model files folder, native runtime folder, kernel sources folder)
    "android": ("app/src/main/assets/edgevlm", "app/src/main/cpp/edgevlm", "app/src/main/cpp/edgevlm-kernels"),
    "ios": ("EdgeVLMResources", "EdgeVLMNative", "EdgeVLMNative/edgevlm-kernels"),
}
VISION_TARGETS = {"android": ("qnn", "ort"), "ios": ("coreml",)}  # what each platform's runtime opens
# What of the installed runtime package an app builds (runtime/ in a checkout): the CMake project
# the platform's own CMakeLists.txt adds as ../.., its headers, sources and the platform shell;
# tools/ too, since CMake refuses to configure a project whose executables' sources are missing.
NATIVE_PARTS = {"android": ("CMakeLists.txt", "cmake", "include", "src", "tools", "platforms/android"),
                "ios": ("CMakeLists.txt", "cmake", "include", "src", "tools", "platforms/apple")}
NOT_NATIVE = (".py", ".pyc")  # the runtime package's Python helpers (build.py, tools/*.py)
RECIPE_HINT = {"android": "android-sd8g3", "ios": "ios-m4"}


@dataclass
class BundleFile:
    dest: str  # relative to OUT
    source: Path
    part: str  # vision | decoder | tokenizer | manifest | native
    sha256: str | None = None  # the manifest's hash, None for files the manifest does not hash
    bytes: int = 0
    checked: str = ""  # "manifest" or "source": what the copy's sha256 was compared with
    copy_sha256: str = ""


def runtime_source_root() -> Path:
    """The installed `edgevlm.runtime` package: the same sources `edgevlm build-runner` builds."""
    import edgevlm.runtime

    return Path(edgevlm.runtime.__file__).parent


def plan_bundle(root: Path, manifest: dict, platform: str) -> list[BundleFile]:
    """Every file the app gets, chosen from the manifest; refuses (exit 2) an export that has nothing
    the platform's runtime can run."""
    if platform not in PLATFORMS:
        raise ConfigError(f"unknown platform {platform!r}", f"use one of {', '.join(PLATFORMS)}")
    models, native, kernels = LAYOUT[platform]
    decoders = [a for a in manifest["artifacts"] if a["part"] == "decoder" and a["target"] == "executorch"]
    if not decoders:
        raise ConfigError(f"{root} has no ExecuTorch .pte decoder, which the {platform} runtime runs",
                          f"export one: `edgevlm export --recipe {RECIPE_HINT[platform]} ...`")
    vision = [a for a in manifest["artifacts"] if a["part"] == "vision" and a["target"] in VISION_TARGETS[platform]]
    if not vision and not any("vision_encoder" in a.get("methods", []) for a in decoders):
        raise ConfigError(f"{root} has no vision artifact the {platform} runtime opens "
                          f"({' or '.join(VISION_TARGETS[platform])}) and its .pte has no vision_encoder method",
                          f"export with `--recipe {RECIPE_HINT[platform]}`")
    files = [BundleFile(f"{models}/manifest.json", root / "manifest.json", "manifest")]
    files += [BundleFile(f"{models}/{e['file']}", root / e["file"], "tokenizer", e["sha256"])
              for e in manifest.get("files", []) if e["file"].startswith("tokenizer/")]
    for artifact in decoders + vision:
        part = artifact["part"]
        files.append(BundleFile(f"{models}/{artifact['file']}", root / artifact["file"], part, artifact["sha256"]))
        for extra in artifact.get("extra_files", []):
            name = extra["file"]
            if part == "decoder" and name.endswith(KERNEL_SUFFIXES):
                # compiled into the app (the runtime's CMake project reads EDGEVLM_KERNEL_DIR)
                files.append(BundleFile(f"{kernels}/{Path(name).name}", root / name, "native", extra["sha256"]))
            else:  # same relative path: an EPContext .onnx names its .bin relative to itself
                files.append(BundleFile(f"{models}/{name}", root / name, part, extra["sha256"]))
    source = runtime_source_root()
    for rel in NATIVE_PARTS[platform]:
        base = source / rel
        paths = [base] if base.is_file() else sorted(p for p in base.rglob("*")
                                                      if p.is_file() and p.suffix not in NOT_NATIVE)
        files += [BundleFile(f"{native}/{p.relative_to(source).as_posix()}", p, "native") for p in paths]
    return files


def write_bundle(files: list[BundleFile], out: Path) -> None:
    """Copy every file into `out` (a temporary folder), then hash the copies: a copy that differs
    from the manifest (or, for runtime sources, from its source) is refused, naming the file."""
    from edgevlm.export.manifest import sha256_path, size_bytes

    for f in files:
        dest = out / f.dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        if f.source.is_dir():  # an .mlpackage
            shutil.copytree(f.source, dest)
        else:
            shutil.copyfile(f.source, dest)
    for f in files:
        dest = out / f.dest
        actual = sha256_path(dest)
        expected, f.checked = (f.sha256, "manifest") if f.sha256 else (sha256_path(f.source), "source")
        if actual != expected:
            raise IntegrityError(f"the copy of {f.source} ({f.dest}) has sha256 {actual[:12]}..., its {f.checked} "
                                 f"says {expected[:12]}...: the file changed after export (or while copying)",
                                 "re-run `edgevlm export` (`edgevlm verify` names every changed file), then bundle "
                                 "again; --no-verify does not skip this check")
        f.bytes, f.copy_sha256 = size_bytes(dest), actual


def part_sizes(files: list[BundleFile]) -> dict[str, int]:
    sizes = {part: 0 for part in ("vision", "decoder", "tokenizer", "manifest", "native")}
    for f in files:
        sizes[f.part] += f.bytes
    return sizes


def check_export(root: Path) -> str:
    """The checks `edgevlm verify` runs (checksums, I/O contract, numerics on this host's runtimes,
    the stored quality report); refuses (exit 1) naming every failing artifact. Returns what ran:
    a check whose runtime this host lacks is 'not run', named, never a pass or a failure."""
    from edgevlm.errors import GateFailed
    from edgevlm.export.verify import FAIL, NOT_RUN, PASS, verify_artifacts
    from edgevlm.progress import print_stage

    results = verify_artifacts(root, on_stage=print_stage)
    failed = [r for r in results if r.status == FAIL]
    if failed:
        raise GateFailed(f"{root} fails verification, so it is not bundled: " +
                         "; ".join(f"{r.artifact}: {r.check}: {r.detail}" for r in failed),
                         "re-export it (`edgevlm verify DIR` shows the full report); --no-verify bundles it "
                         "anyway, for development (the copies are still checked against the manifest)")
    not_run = [f"{r.artifact} {r.check}" for r in results if r.status == NOT_RUN]
    passed = sum(r.status == PASS for r in results)
    return (f"`edgevlm verify`: {passed} checks passed (checksums, I/O contract, numerics)" +
            (f"; not run on this host: {', '.join(not_run)}" if not_run else ""))
