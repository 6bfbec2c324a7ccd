"""`manifest.json`: the one file apps, benchmark harnesses and `verify` read.

It names every artifact with its target, precision, I/O contract and sha256, and carries what a
runtime needs to feed the artifacts (preprocessing, prompt format, special tokens) plus the
toolchain that produced them. The contract is export/schemas/manifest.schema.json (checked by
export/manifest_schema.py on write and on read); older versions are upgraded on read
(export/manifest_upgrade.py). DESIGN.md, "Manifest (the artifact contract)".
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path

from edgevlm.errors import EdgeVLMError

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 2  # 2: no top-level kv_cache; each decoder artifact's typed kv_cache block
TOOLCHAIN_PACKAGES = ("edgevlm", "torch", "executorch", "transformers", "tokenizers", "safetensors", "onnx",
                      "onnxscript", "onnxruntime", "onnxruntime-qnn", "coremltools", "numpy", "Pillow")


class ManifestError(EdgeVLMError):
    pass


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a directory (e.g. .mlpackage) as sorted relative paths + contents."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def size_bytes(path: Path) -> int:
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def toolchain_versions() -> dict:
    versions = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for package in TOOLCHAIN_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def write_manifest(out_dir: Path, manifest: dict) -> Path:
    """Write manifest.json after the same checks a reader makes: an export bug must not ship a
    manifest that `verify`, `run` or an app would refuse."""
    from edgevlm.export.manifest_schema import check_manifest

    path = Path(out_dir) / MANIFEST_FILE
    try:
        check_manifest(manifest, Path(out_dir), f"the manifest for {path}")
    except EdgeVLMError as err:
        raise ManifestError(f"refusing to write an invalid manifest: {err.problem}",
                            "this is a bug in edgevlm's export: please report it with this message") from err
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def read_manifest(artifacts_dir: Path) -> dict:
    """manifest.json of an artifact folder, checked before anyone acts on it: size and nesting caps,
    the version (older ones upgraded in memory, newer ones refused), the typed schema, every named
    file confined to the folder, tensor sizes (manifest_schema.py)."""
    from edgevlm.export.manifest_schema import check_manifest
    from edgevlm.jsonfiles import read_json_object
    from edgevlm.limits import MAX_MANIFEST_BYTES

    path = Path(artifacts_dir) / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"no {MANIFEST_FILE} in {artifacts_dir}",
                            "pass the directory `edgevlm export --out` wrote")
    manifest = read_json_object(path, "manifest", ManifestError, max_bytes=MAX_MANIFEST_BYTES,
                                fix="re-run `edgevlm export`")
    manifest = current_version(manifest, str(path))
    check_manifest(manifest, Path(artifacts_dir), str(path))
    return manifest


def current_version(manifest: dict, source: str) -> dict:
    """The manifest in the current schema version: as it is, or upgraded from a known older one."""
    from edgevlm.export.manifest_upgrade import UPGRADES

    if "schema_version" not in manifest:
        raise ManifestError(f"{source} has no schema_version", "re-run `edgevlm export` with this edgevlm version")
    version = manifest["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise ManifestError(f"{source}: $.schema_version: {version!r} is not of type 'integer'",
                            "re-run `edgevlm export` (the manifest was edited or written by another tool)")
    if version > SCHEMA_VERSION:
        raise ManifestError(f"{source} has schema_version {version}, newer than this edgevlm understands "
                            f"({SCHEMA_VERSION})", "upgrade edgevlm")
    if version < min(UPGRADES, default=SCHEMA_VERSION):
        raise ManifestError(f"{source} has schema_version {version}; this edgevlm reads versions "
                            f"{min(UPGRADES)} to {SCHEMA_VERSION}", "re-run `edgevlm export` with this edgevlm version")
    while version < SCHEMA_VERSION:
        manifest, version = UPGRADES[version](manifest), version + 1
    return manifest
