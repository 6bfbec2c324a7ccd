"""Synthetic phone and quality results for `edgevlm report` (tests/test_report.py, tests/test_report_browser.py and
the README's screenshot): schema-valid device-bench reports built in microseconds, so a report renders
without the minutes-long real pipeline."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from edgevlm.cli.main import main
from edgevlm.device_tests.schema import validate_bench
from edgevlm.stats import timing_summary

SHA_A, SHA_B = "a" * 64, "b" * 64


def device_result(model: str = "Pixel 8 Pro", manifest: str = SHA_A, decode_ms: float = 40.0,
                  vision_ms: float = 120.0) -> dict:
    """A device-bench report as an adb phone with a fuel gauge would write it (schema-valid)."""
    vision_samples = [vision_ms + d for d in (-3, -1, 0, 1, 2, 4, 6)]
    contexts = {"128": 1.0, "1024": 1.25, "4096": 2.0}  # decode slows with the cache it reads
    decode, prefill = {}, {}
    for ctx, factor in contexts.items():
        step = decode_ms * factor
        summary = timing_summary([step + d for d in (-1.0, -0.5, 0.0, 0.5, 1.5)], 0)
        bytes_per_token = 200e6 + int(ctx) * 28672
        decode[ctx] = summary | {"tokens_per_s": 1000 / summary["median_ms"],
                                 "roofline": {"bytes_per_token": bytes_per_token, "gb_s": 60.0,
                                              "floor_ms": bytes_per_token / 60e9 * 1000, "percent": 50.0}}
        prefill_ms = int(ctx) * 0.8
        prefill[ctx] = {"median_ms": prefill_ms, "tokens_per_s": int(ctx) * 1000 / prefill_ms,
                        "ttft_ms": prefill_ms + 3, "rounds": 3}
    prefill["4096"] = {"unavailable": "a 4096-token prompt leaves no room in the program's 4096-token cache"}
    device = {"kind": "adb", "spec": "adb:serial1", "emulated": False, "model": model, "soc": "Tensor G3",
              "os": "Android 15", "cpu": {"cores": 9}, "thermal_before": {"celsius": 31.0, "sensor": "battery"},
              "thermal_after": {"celsius": 34.0, "sensor": "battery"}}
    report = {
        "schema": "edgevlm.bench/2", "kind": "device", "device": device,
        "artifacts": {"manifest_sha256": manifest, "files": {"v.onnx": SHA_B, "d.pte": SHA_B}},
        "runtime_versions": {"edgevlm": "0.1.0", "executorch": "1.5.1"}, "model": {"version": "2.6"},
        "results": [
            {"part": "vision", "runtime": "ort:int8 (onnxruntime xnnpack)", "status": "ok", "artifact": "v.onnx",
             "sha256": SHA_B, "slice": "448x448", "load_ms": 210.0, "cold_ms": 300.0,
             "metrics": timing_summary(vision_samples, 2), "peak_memory_bytes": 900 * 2**20},
            {"part": "decoder", "runtime": "executorch:int4-kvint4", "status": "ok", "artifact": "d.pte",
             "sha256": SHA_B, "load_ms": 800.0, "peak_memory_bytes": 1400 * 2**20,
             "decoder": {"prefill": prefill, "decode": decode, "ttft_ms": prefill["128"]["ttft_ms"]}},
            {"part": "vision", "runtime": "qnn:int8 (htp)", "status": "not run",
             "reason": "the phone has no QNN HTP backend library"}],
        "power": {"method": "battery fuel gauge", "sample_rate_hz": 50, "idle_w": 0.6, "phases": {},
                  "energy_per_image_j": 0.42, "energy_per_token_j": {"128": 0.031, "1024": 0.038,
                                                                     "4096": {"unavailable": "phase too short"}},
                  "samples_file": "power-0.csv"},
    }
    validate_bench(report)
    return report


def write_json(path: Path, report: dict) -> Path:
    path.write_text(json.dumps(report))
    return path


def quality_result() -> dict:
    """An `edgevlm quality` result as quality.json holds it (schema-valid): one recipe's parts swapped in
    one at a time, a per-layer SQNR table and the KV-cache format errors, so the accuracy, SQNR and KV
    figures have something to plot."""
    from edgevlm.reports.quality import validate

    def row(component, artifact, exact, gate):
        return {"recipe": "android-sd8g3", "component": component, "artifact": artifact, "sha256": SHA_B,
                "runtime": "ort-cpu", "status": "pass", "samples": 64, "exact_match": exact,
                "reference_exact_match": 0.75, "drop_points": 100 * (0.75 - exact), "answer_perplexity": 1.21,
                "perplexity_increase": 0.04, "gate": {"describe": f"drop <= {gate} points"}}

    report = {
        "schema": "edgevlm.quality/1", "model": {"dir": "MiniCPM-V-4"}, "heldout": {"samples": 64},
        "reference": {"exact_match": 0.75, "answer_perplexity": 1.17, "samples": 64}, "status": "pass",
        "rows": [row("vision", "v.onnx", 0.734375, 2.0), row("decoder", "d.pte", 0.71875, 4.0),
                 row("end_to_end", "v.onnx+d.pte", 0.703125, 5.0)],
        "layer_sqnr": [{"artifact": "v.onnx", "recipe": "android-sd8g3", "status": "ok", "slices": 8,
                        "onnx": "v.onnx", "runtime": "ort-cpu",
                        "stages": [{"stage": s, "sqnr_db": db} for s, db in
                                   (("patch_embed", 41.2), ("block 0", 36.5), ("block 13", 31.0),
                                    ("block 26", 27.4), ("resampler", 25.9))]}],
        "kv_error": {"formats": [{"format": f, "bytes_per_token": b, "rel_error_mean": e, "rel_error_max": 4 * e,
                                  "status": "ok"} for f, b, e in
                                 (("fp16", 57344, 2e-4), ("int8", 28672, 4e-3), ("int4", 14336, 6e-2))]},
    }
    validate(report)
    return report


def example_report(out: Path) -> Path:
    """The README's example: a phone run against a baseline run of the same phone and artifacts, a
    little slower but within the runs' own spread (so the comparison table shows and the verdict is
    pass), with a quality result on both sides (so every figure plots). Returns OUT/report.html."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "baseline.json", device_result(decode_ms=40.0, vision_ms=120.0))
    write_json(out / "phone.json", device_result(decode_ms=40.6, vision_ms=122.0))
    write_json(out / "quality.json", quality_result())  # one quality run on both sides: compared, unchanged
    with contextlib.chdir(out):  # relative names: the page shows `phone.json`, not a temporary folder
        code = main(["report", "phone.json", "quality.json", "--baseline", "baseline.json", "quality.json",
                     "--out", "report"])
    if code != 0:
        raise RuntimeError(f"edgevlm report exited {code} on the synthetic example")
    return out / "report" / "report.html"
