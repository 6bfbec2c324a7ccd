"""What a device gets: the native tools built for it, the files of an export the tools read, and
the image prepared on the host, as one content-addressed `Bundle` (devices/base.py).

    bin/        edgevlm-bench, edgevlm-power-sampler (+ the loader and lib/ of a cross build)
    artifacts/  manifest.json, tokenizer, the decoder .pte, the vision artifacts a phone runs
    inputs/     image.ppm (the runtime reads PPM: no image decoder on the device)
"""

from __future__ import annotations

from pathlib import Path

from edgevlm.device_tests.devices.base import Bundle

TOOLS = ("edgevlm-bench", "edgevlm-power-sampler", "edgevlm-runner")
# Vision targets a phone-side runtime reads (ONNX through ORT, the QNN context for qnn-net-run and
# ORT's QNN EP); Core ML packages run on Apple devices only and stay behind.
DEVICE_VISION_TARGETS = ("ort", "qnn")


def runtime_files(target: str) -> dict[str, Path]:
    """bin/ of the bundle: the tools built for the device's target (a cross build is already a
    self-contained folder: loader, lib/, qemu-root/)."""
    from edgevlm.runtime.build import build_runtime

    built = build_runtime(target)
    if target == "host":
        return {f"bin/{name}": built / name for name in TOOLS}
    return {f"bin/{p.relative_to(built)}": p for p in sorted(built.rglob("*")) if p.is_file()}


def export_files(root: Path, manifest: dict) -> dict[str, Path]:
    """artifacts/ of the bundle: what the native runtime loads from the export, nothing it skips
    (verification data, Core ML packages, ONNX decoders): a phone's /data/local/tmp is not free."""
    files = {"artifacts/manifest.json": root / "manifest.json"}
    for entry in manifest.get("files", []):
        if not entry["file"].startswith("verification/"):
            files[f"artifacts/{entry['file']}"] = root / entry["file"]
    for artifact in manifest["artifacts"]:
        wanted = (artifact["part"] == "decoder" and artifact["target"] == "executorch") or (
            artifact["part"] == "vision" and artifact["target"] in DEVICE_VISION_TARGETS)
        if wanted:
            for name in [artifact["file"], *(e["file"] for e in artifact.get("extra_files", []))]:
                files[f"artifacts/{name}"] = root / name
    return files


def prepare_image(image_path: Path | None, staging: Path) -> Path:
    """The image as binary PPM (what the device-side tools read), decoded on the host the way
    `edgevlm run` decodes it (EXIF orientation, every mode to RGB). None: the demo scene."""
    from edgevlm.defaults import demo_image
    from edgevlm.preprocess import load_image

    image = demo_image() if image_path is None else load_image(image_path)
    staging.mkdir(parents=True, exist_ok=True)
    out = staging / "image.ppm"
    image.convert("RGB").save(out, format="PPM")
    return out


def make_bundle(export_root: Path, manifest: dict, target: str, image_path: Path | None, staging: Path) -> Bundle:
    files = runtime_files(target) | export_files(export_root, manifest)
    files["inputs/image.ppm"] = prepare_image(image_path, staging)
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        from edgevlm.errors import EdgeVLMError

        raise EdgeVLMError(f"the export folder lacks files its manifest names: {', '.join(missing[:5])}",
                           "re-run `edgevlm export` (and `edgevlm verify`) into a fresh folder")
    return Bundle(root=staging, files=files)
