"""Host benchmark of the vision-encoder artifacts in a manifest, beside eager PyTorch, in one run.

Per runtime: per-slice latency (median and p90 over `runs` timed calls after `warmup`), on the
largest verification slice padded to the artifact's static shape. Artifacts whose runtime cannot
execute here (Core ML off macOS) are listed with the reason. Emulators (the QNN HTP simulator)
are timed only on request and labelled: their numbers say nothing about device latency.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from edgevlm.backends.base import get_vision_backend
from edgevlm.device_tests.schema import BENCH_SCHEMA_ID, validate_bench
from edgevlm.export.host import manifest_slices
from edgevlm.export.manifest import read_manifest, toolchain_versions
from edgevlm.export.vision import ResamplerSpec, vision_inputs
from edgevlm.stats import timing_summary


def time_calls(fn, warmup: int, runs: int) -> dict:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return timing_summary(samples, warmup)


def host_device() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"kind": "host", "cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(terse=True),
            "torch_threads": torch.get_num_threads()}


class BenchSlice:
    """The slice every vision timing uses: the largest slice of the manifest's largest verification
    image. `inputs(artifact)` pads it to that artifact's static shape (max_patches, batch)."""

    def __init__(self, artifacts_dir: Path, manifest: dict):
        from edgevlm.preprocess import load_image

        self.pre = manifest["preprocessing"]
        self.spec = ResamplerSpec.from_preprocessing(self.pre)
        self.case = max(manifest["verification"]["cases"], key=lambda c: max(h * w for h, w in c["tgt_sizes"]))
        slices, sizes = manifest_slices(load_image(Path(artifacts_dir) / self.case["image"]), self.pre)
        largest = int(np.argmax([int(s.prod()) for s in sizes]))
        self.slices, self.sizes = slices[largest:largest + 1], sizes[largest:largest + 1]

    def inputs(self, artifact: dict) -> dict:
        return vision_inputs(self.slices, self.sizes, artifact["max_patches"], self.spec,
                             self.pre["num_patches_per_side"], batch=artifact["batch"]).arrays

    def describe(self) -> dict:
        return {"case": self.case["name"], "tgt_size": self.sizes[0].tolist(), "patches": int(self.sizes[0].prod())}


def bench_vision(artifacts_dir: Path, warmup: int = 3, runs: int = 10, include_emulators: bool = False) -> dict:
    artifacts_dir = Path(artifacts_dir)
    manifest = read_manifest(artifacts_dir)
    bench_slice = BenchSlice(artifacts_dir, manifest)
    results = []
    eager_done = set()
    for artifact in [a for a in manifest["artifacts"] if a["part"] == "vision"]:
        inputs = bench_slice.inputs(artifact)
        key = (artifact["max_patches"], artifact["batch"])
        if key not in eager_done and Path(manifest["model"]["source"]).is_dir():
            results.append(_bench_eager(manifest["model"]["source"], inputs, warmup, runs, artifact))
            eager_done.add(key)
        results.append(_bench_artifact(artifacts_dir, artifact, inputs, warmup, runs, include_emulators))
    report = {
        "schema": BENCH_SCHEMA_ID,
        "kind": "vision_encoder",
        "device": host_device(),
        "runtime_versions": toolchain_versions(),
        "model": manifest["model"],
        "input": bench_slice.describe(),
        "results": results,
    }
    validate_bench(report)
    return report


def _bench_artifact(root: Path, artifact: dict, inputs: dict, warmup: int, runs: int, include_emulators: bool) -> dict:
    entry = {"runtime": f"{artifact['target']}:{artifact['precision']}", "artifact": artifact["file"],
             "sha256": artifact["sha256"], "max_patches": artifact["max_patches"], "batch": artifact["batch"]}
    backend = get_vision_backend(artifact["target"])
    reason = backend.runtime_available()
    emulated = backend.emulated
    if reason is None and emulated and not include_emulators:
        reason = "emulated on this host (a simulation, not device latency); pass --include-emulators to time it"
    if reason is not None:
        return {**entry, "status": "not run", "reason": reason}
    path = root / artifact["file"]
    details = artifact.get("details", {})
    metrics = time_calls(lambda: backend.run(path, inputs, details), warmup, runs)
    if emulated:
        entry["note"] = "emulator timing; not device latency"
    return {**entry, "status": "ok", "metrics": metrics}


def _bench_eager(model_dir: str, inputs: dict, warmup: int, runs: int, artifact: dict) -> dict:
    from edgevlm.checkpoint.loader import load_model
    from edgevlm.export.vision import INPUT_NAMES, StaticVisionEncoder

    loaded = load_model(Path(model_dir))
    encoder = StaticVisionEncoder(loaded.model.vpm, loaded.model.resampler).eval()
    args = tuple(torch.from_numpy(inputs[n]) for n in INPUT_NAMES)

    def call():
        with torch.inference_mode():
            encoder(*args)

    metrics = time_calls(call, warmup, runs)
    return {"runtime": "pytorch-eager:fp32", "artifact": None, "sha256": None, "max_patches": artifact["max_patches"],
            "batch": artifact["batch"], "status": "ok", "metrics": metrics}
