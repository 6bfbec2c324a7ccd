"""Host benchmark of the vision-encoder artifacts in a manifest, beside eager PyTorch, in one run.

Per runtime: per-slice latency (median and p90 over `runs` timed calls after `warmup`), on the
largest verification slice padded to the artifact's static shape. Artifacts whose runtime cannot
execute here (Core ML off macOS) are listed with the reason. Emulators (the QNN HTP simulator)
are timed only on request and labelled: their numbers say nothing about device latency.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from edgevlm.backends.base import get_vision_backend
from edgevlm.device_tests.schema import BENCH_SCHEMA_ID, validate_bench
from edgevlm.export.host import manifest_slices
from edgevlm.export.manifest import read_manifest, toolchain_versions
from edgevlm.export.vision import ResamplerSpec, vision_inputs
from edgevlm.device_tests.devices.base import unavailable
from edgevlm.stats import timing_summary

HOST_POWER = ("the host benchmarks do not sample power: `edgevlm device-bench --device adb` (battery fuel gauge) "
              "or `--device macos` (powermetrics) do")
# The in-process host benchmark times every runtime in one process and the backends open their
# session inside the first call: `edgevlm device-bench` runs each in its own process and splits them.
ONE_PROCESS_MEMORY = unavailable("every runtime runs in one process here: `edgevlm device-bench` measures its peak")
LOAD_IN_FIRST_CALL = unavailable("the backend opens its session inside the first call: cold_ms includes the load")


def time_calls(fn, warmup: int, runs: int) -> dict:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return timing_summary(samples, warmup)


def cold_then_warm(fn, warmup: int, runs: int) -> dict:
    """The first call timed on its own (cold_ms), then the metrics of `runs` calls after warm-up
    (the cold call counts as one warm-up call)."""
    start = time.perf_counter()
    fn()
    cold_ms = (time.perf_counter() - start) * 1000
    metrics = time_calls(fn, max(warmup - 1, 0), runs)
    return {"cold_ms": cold_ms, "metrics": metrics | {"warmup": max(warmup, 1)}}


def host_device() -> dict:
    """The bench/2 device block of this host (thermal read now, before and after are the same call
    sites' business: the in-process host benches read it at start and end)."""
    from edgevlm.device_tests.devices.host import HostDevice

    facts = HostDevice().facts()
    facts["cpu"] |= {"torch_threads": torch.get_num_threads()}
    return facts


def host_report(kind: str, manifest: dict | None, root: Path | None, thermal_before: dict, results: list,
                model: dict | None = None) -> dict:
    """The parts of a bench/2 report every in-process host benchmark shares."""
    from edgevlm.device_tests.devices.host import host_thermal
    from edgevlm.device_tests.schema import artifact_hashes
    from edgevlm.export.manifest import sha256_path

    device = host_device() | {"thermal_before": thermal_before, "thermal_after": host_thermal()}
    artifacts = (artifact_hashes(manifest, sha256_path(root / "manifest.json")) if manifest is not None else
                 unavailable("no export folder: the benchmark exported its own programs"))
    return {"schema": BENCH_SCHEMA_ID, "kind": kind, "device": device, "artifacts": artifacts,
            "runtime_versions": toolchain_versions(), "model": model or manifest["model"],
            "results": results, "power": unavailable(HOST_POWER)}


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
    from edgevlm.device_tests.devices.host import host_thermal

    thermal_before = host_thermal()
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
    report = host_report("vision_encoder", manifest, artifacts_dir, thermal_before, results)
    report["input"] = bench_slice.describe()
    validate_bench(report)
    return report


def _bench_artifact(root: Path, artifact: dict, inputs: dict, warmup: int, runs: int, include_emulators: bool) -> dict:
    entry = {"part": "vision", "runtime": f"{artifact['target']}:{artifact['precision']}", "artifact": artifact["file"],
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
    timed = cold_then_warm(lambda: backend.run(path, inputs, details), warmup, runs)
    if emulated:
        entry["note"] = "emulator timing; not device latency"
    return {**entry, "status": "ok", "emulated": emulated, "load_ms": LOAD_IN_FIRST_CALL,
            "peak_memory_bytes": ONE_PROCESS_MEMORY, **timed}


def _bench_eager(model_dir: str, inputs: dict, warmup: int, runs: int, artifact: dict) -> dict:
    from edgevlm.checkpoint.loader import load_model
    from edgevlm.export.vision import INPUT_NAMES, StaticVisionEncoder

    start = time.perf_counter()
    loaded = load_model(Path(model_dir))
    load_ms = (time.perf_counter() - start) * 1000
    encoder = StaticVisionEncoder(loaded.model.vpm, loaded.model.resampler).eval()
    args = tuple(torch.from_numpy(inputs[n]) for n in INPUT_NAMES)

    def call():
        with torch.inference_mode():
            encoder(*args)

    return {"part": "vision", "runtime": "pytorch-eager:fp32", "artifact": None, "sha256": None,
            "max_patches": artifact["max_patches"], "batch": artifact["batch"], "status": "ok", "emulated": False,
            "load_ms": load_ms, "peak_memory_bytes": ONE_PROCESS_MEMORY, **cold_then_warm(call, warmup, runs)}
