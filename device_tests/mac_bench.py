"""`device-bench --device macos`: the Apple silicon path, in process on the Mac.

The .mlpackage through Core ML on the Neural Engine (CPU_AND_NE) and on the CPU alone, compile,
load, cold and warm apart; the decoder .pte through ExecuTorch's runtime per context; power from
powermetrics (root), its intervals on the wall clock the phases are stamped with. Written and
tested up to the Mac boundary on Linux: Core ML predicts and powermetrics runs only on macOS.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

from edgevlm.device_tests.devices.base import is_unavailable, unavailable

THERMAL_LEVELS = "macOS reports thermal pressure levels, not temperatures (see device.thermal_levels)"
WHOLE_PROCESS = "peak resident memory of the benchmark process so far (Core ML and ExecuTorch in one process)"


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def vision_results(entries: list[dict]) -> list[dict]:
    """coreml_vision_entries -> bench/2 results: the Neural Engine run and the CPU-only comparison."""
    out = []
    for e in entries:
        for units, timing in (("CPU_AND_NE", e), ("CPU_ONLY", e["cpu_only"])):
            out.append({"part": "vision", "runtime": f"{e['runtime']} {units}", "status": "ok", "emulated": False,
                        "artifact": e["artifact"], "sha256": e["sha256"], "compile_ms": timing["compile_ms"],
                        "load_ms": timing["load_ms"], "cold_ms": timing["cold_ms"], "metrics": timing["warm"],
                        "peak_memory_bytes": peak_rss_bytes(), "peak_memory_note": WHOLE_PROCESS})
    return out


def decoder_results(entries: list[dict], contexts: tuple[int, ...]) -> list[dict]:
    """pte_decoder_entries -> bench/2 results; contexts that did not fit present with the reason."""
    out = []
    for e in entries:
        if e["status"] != "ok":
            out.append({"part": "decoder", **e})
            continue
        prefill, decode = {}, {}
        for context in map(str, contexts):
            timed = e["contexts"].get(context)
            if timed is None:
                why = unavailable(f"context {context} + {e['decode_tokens']} decode tokens exceeds the program's cache")
                prefill[context] = decode[context] = why
                continue
            prefill[context] = {"median_ms": timed["prefill_ms"], "tokens_per_s": timed["prefill_tokens_per_s"],
                                "ttft_ms": timed["prefill_ms"]}
            decode[context] = timed["decode"]
        first = next(p for p in prefill.values() if not is_unavailable(p))
        out.append({"part": "decoder", "runtime": e["runtime"], "status": "ok", "emulated": False,
                    "artifact": e["artifact"], "sha256": e["sha256"], "load_ms": e["load_ms"],
                    "decoder": {"prefill": prefill, "decode": decode, "ttft_ms": first["ttft_ms"],
                                "decode_tokens": e["decode_tokens"]},
                    "peak_memory_bytes": peak_rss_bytes(), "peak_memory_note": WHOLE_PROCESS})
    return out


def powermetrics_block(idle: dict, run: dict, phases: list[dict], slices: int) -> dict:
    """with_power() outputs (idle window, benchmark) + the phases -> the schema's power block."""
    from edgevlm.device_tests import power

    if is_unavailable(run):
        return run
    def combined(intervals):
        return [((i["start_s"] + i["end_s"]) / 2, i["watts"]["combined"]) for i in intervals
                if "combined" in i["watts"]]
    idle_w = power.idle_watts(combined(idle["intervals"]))
    spans = [power.Phase(p["name"], p["start_s"], p["end_s"], p.get("count", 0)) for p in phases]
    measured = power.attribute(combined(run["intervals"]), spans, idle_w)
    per_unit = {n: (m["power"] if "power" in m else m["energy_per_unit_j"]) for n, m in measured.items()}
    warm = per_unit.get("vision_warm", unavailable("no Core ML vision artifact was timed"))
    return {"method": "powermetrics --samplers cpu_power,gpu_power,ane_power (combined CPU+GPU+ANE package "
                      "power; DRAM and the rest of the board not included)",
            "sample_rate_hz": 1000 / run["interval_ms"], "idle_w": idle_w,
            "phases": {n: (m["power"] if "power" in m else {k: m[k] for k in ("mean_w", "net_w", "energy_j",
                                                                              "net_energy_j", "duration_s", "samples")})
                       for n, m in measured.items()},
            "energy_per_image_j": warm if is_unavailable(warm) else warm * slices, "energy_per_slice_j": warm,
            "image_slices": slices,
            "energy_per_token_j": {n: v for n, v in per_unit.items() if n.startswith(("prefill:", "decode:"))},
            "samples_file": "powermetrics intervals (in this report's power.intervals)",
            "intervals": run["intervals"]}


def coreml_power_loop(artifacts: Path, manifest: dict, seconds: float = 3.0) -> list[dict]:
    """Repeated Neural Engine encodes of the bench slice for `seconds`: the vision_warm phase for
    power (long enough for tens of 100 ms powermetrics intervals)."""
    import coremltools as ct

    from edgevlm.device_tests.host_bench import BenchSlice

    artifact = next((a for a in manifest["artifacts"] if a["part"] == "vision" and a["target"] == "coreml"), None)
    if artifact is None:
        return []
    inputs = BenchSlice(artifacts, manifest).inputs(artifact)
    model = ct.models.MLModel(str(artifacts / artifact["file"]), compute_units=ct.ComputeUnit.CPU_AND_NE)
    model.predict(inputs)
    count, start = 0, time.time()
    while time.time() - start < seconds:
        model.predict(inputs)
        count += 1
    return [{"name": "vision_warm", "start_s": start, "end_s": time.time(), "count": count}]


def mac_report(device, artifacts: Path, manifest: dict, plan) -> dict:
    from edgevlm.device_tests.devices.macos import coreml_vision_entries, pte_decoder_entries, with_power
    from edgevlm.device_tests.host_bench import host_report
    from edgevlm.export.host import manifest_slices
    from edgevlm.preprocess import load_image
    from edgevlm.defaults import demo_image

    facts = device.facts()
    image = demo_image() if plan.image is None else load_image(plan.image)
    slices = len(manifest_slices(image, manifest["preprocessing"])[1])
    _, idle = with_power(lambda: time.sleep(plan.idle_s))
    vision = vision_results(coreml_vision_entries(artifacts, manifest, plan.warmup, plan.runs))

    def measured():
        loop = coreml_power_loop(artifacts, manifest)
        entries = pte_decoder_entries(artifacts, manifest, list(plan.contexts), plan.decode_tokens)
        phases = loop + [p | {"count": int(p["name"].split(":")[1]) if p["name"].startswith("prefill:")
                              else plan.decode_tokens} for e in entries for p in e.get("phases", [])]
        return entries, phases

    (entries, phases), run = with_power(measured)
    report = host_report("device", manifest, artifacts, unavailable(THERMAL_LEVELS),
                         vision + decoder_results(entries, plan.contexts))
    report["device"] = {"kind": "macos", "spec": device.spec, "emulated": False, **facts,
                        "thermal_levels": facts.get("thermal"), "thermal_before": unavailable(THERMAL_LEVELS),
                        "thermal_after": unavailable(THERMAL_LEVELS)}
    report["power"] = powermetrics_block(idle, run, phases, slices)
    report["input"] = {"contexts": list(plan.contexts), "runs": plan.runs, "warmup": plan.warmup,
                       "decode_tokens": plan.decode_tokens, "image_slices": slices}
    return report
