"""Raw device files (edgevlm-bench JSON per round, power sampler CSVs) -> one `edgevlm.bench/2`
report. Also reads the files a device farm run collected, so farm results land in the same schema.

Rounds pool: warm vision encodes and decode steps are pooled over rounds (more samples, same
distribution); load, cold and prefill times take the median over rounds (one sample each per round).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgevlm.device_tests.devices.base import is_unavailable, unavailable
from edgevlm.stats import median, timing_summary

PROCESS_MEMORY = "peak resident memory of the whole benchmark process (vision and decoder loaded together)"


def _median_or_reason(values: list, what: str):
    numbers = [v for v in values if not is_unavailable(v)]
    if numbers:
        return median(numbers)
    return values[0] if values else unavailable(f"no {what} was measured")


def _artifact_for(manifest: dict, description: str, part: str) -> dict | None:
    """The manifest entry a runtime description names (it carries the loaded file's path)."""
    for artifact in manifest["artifacts"]:
        if artifact["part"] == part and Path(artifact["file"]).name in description:
            return artifact
    return None


def vision_result(manifest: dict, rounds: list[dict], emulated: bool) -> dict:
    first = rounds[0]["vision"]
    if is_unavailable(first):
        return {"part": "vision", "runtime": "none", "status": "not run", "reason": first["unavailable"],
                "artifact": None, "sha256": None}
    artifact = _artifact_for(manifest, first["runtime"], "vision") or _artifact_for(manifest, first["runtime"],
                                                                                     "decoder")
    warm = [ms for r in rounds for ms in r["vision"]["warm_ms"]]
    engine = first["runtime"].split(" (", 1)[0]  # "onnxruntime cpu (/device/path/x.onnx)": the path is the device's
    runtime = f"{artifact['target']}:{artifact['precision']} ({engine})" if artifact else engine
    return {"part": "vision", "runtime": runtime, "status": "ok", "emulated": emulated,
            "artifact": artifact["file"] if artifact else None, "sha256": artifact["sha256"] if artifact else None,
            "slice": first["slice"],
            "load_ms": _median_or_reason([r["load"]["vision_ms"] for r in rounds], "vision load"),
            "cold_ms": median([r["vision"]["cold_ms"] for r in rounds]),
            "metrics": timing_summary(warm, first["warmup"]),
            "peak_memory_bytes": max(r["peak_rss_bytes"] for r in rounds), "peak_memory_note": PROCESS_MEMORY}


def _context_timings(rounds: list[dict], context: str) -> tuple[dict, dict]:
    entries = [r["decoder"]["contexts"][context] for r in rounds]
    if is_unavailable(entries[0]):
        return entries[0], entries[0]
    tokens = entries[0]["prefill_tokens"]
    prefill_ms = median([e["prefill_ms"] for e in entries])
    prefill = {"median_ms": prefill_ms, "tokens_per_s": tokens * 1000 / prefill_ms,
               "ttft_ms": median([e["ttft_ms"] for e in entries]), "rounds": len(entries)}
    steps = [ms for e in entries for ms in e["decode_ms"]]
    summary = timing_summary(steps, 0)
    decode = summary | {"tokens_per_s": 1000 / summary["median_ms"]}
    return prefill, decode


def decoder_result(manifest: dict, rounds: list[dict], emulated: bool) -> dict:
    artifact = next((a for a in manifest["artifacts"] if a["part"] == "decoder" and a["target"] == "executorch"), None)
    prefill, decode = {}, {}
    for context in rounds[0]["decoder"]["contexts"]:
        prefill[context], decode[context] = _context_timings(rounds, context)
    timed = [c for c in prefill if not is_unavailable(prefill[c])]
    ttft = prefill[min(timed, key=int)]["ttft_ms"] if timed else unavailable("no context fits the program's cache")
    return {"part": "decoder", "runtime": f"executorch:{artifact['precision']}" if artifact else "executorch",
            "status": "ok", "emulated": emulated, "artifact": artifact["file"] if artifact else None,
            "sha256": artifact["sha256"] if artifact else None, "kv_cache": artifact["kv_cache"] if artifact else None,
            "load_ms": median([r["load"]["decoder_ms"] for r in rounds]),
            "decoder": {"prefill": prefill, "decode": decode, "ttft_ms": ttft,
                        "decode_tokens": rounds[0]["decoder"]["decode_tokens"]},
            "peak_memory_bytes": max(r["peak_rss_bytes"] for r in rounds), "peak_memory_note": PROCESS_MEMORY}


def end_to_end(rounds: list[dict]) -> dict:
    """The answer of the first round (rounds answer the same question: their tokens must agree)."""
    e2e = rounds[0]["e2e"]
    return {"text": e2e["text"], "tokens": e2e["tokens"], "prompt_tokens": len(e2e["prompt_ids"]),
            "same_tokens_every_round": all(r["e2e"]["tokens"] == e2e["tokens"] for r in rounds),
            "stats": e2e["stats"]}


def load_rounds(raw: Path, names: list[str]) -> list[dict]:
    return [json.loads((raw / name).read_text()) for name in names]


def phases_of(bench: dict) -> list:
    from edgevlm.device_tests.power import Phase

    return [Phase(p["name"], p["start_ns"] / 1e9, p["end_ns"] / 1e9, p.get("count", 0), p.get("unit", ""))
            for p in bench["phases"]]


def _round_power(raw: Path, idle_file: str, power_file: str, bench: dict, allow_charging: bool) -> tuple[dict, dict]:
    """One round: (per-phase power, how the watts were derived)."""
    from edgevlm.device_tests import power

    idle = power.BatteryPower.from_samples(power.parse_sampler_csv((raw / idle_file).read_text()),
                                           allow_charging=allow_charging)
    idle_w = power.idle_watts(idle.watts)
    phases = phases_of(bench)
    run = power.BatteryPower.from_samples(power.parse_sampler_csv((raw / power_file).read_text()),
                                          windows=[(p.start_s, p.end_s) for p in phases],
                                          allow_charging=allow_charging)
    return {"idle_w": idle_w, "phases": power.attribute(run.watts, phases, idle_w)}, run.describe()


def _mean_phase(per_round: list[dict]) -> dict:
    """A phase over rounds: the mean of each figure over the rounds that could measure it."""
    measured = [p for p in per_round if "power" not in p]
    if not measured:
        return per_round[0]["power"]
    keys = ("mean_w", "net_w", "energy_j", "net_energy_j", "duration_s")
    out = {k: sum(p[k] for p in measured) / len(measured) for k in keys}
    out["samples"] = sum(p["samples"] for p in measured)
    per_unit = [p["energy_per_unit_j"] for p in measured if not is_unavailable(p["energy_per_unit_j"])]
    out["energy_per_unit_j"] = sum(per_unit) / len(per_unit) if per_unit else measured[0]["energy_per_unit_j"]
    out["unit"] = measured[0]["unit"]
    return out


def power_block(raw: Path, steps: dict, rounds: list[dict], allow_charging: bool) -> dict:
    from edgevlm.device_tests import power

    files = steps["files"]
    if is_unavailable(steps["battery_root"]):
        return steps["battery_root"]
    per_round, derived = [], None
    for idle_file, power_file, bench in zip(files["idle"], files["power"], rounds):
        measured, derived = _round_power(raw, idle_file, power_file, bench, allow_charging)
        per_round.append(measured)
    names = [p["name"] for p in rounds[0]["phases"]]
    phases = {n: _mean_phase([r["phases"][n] for r in per_round]) for n in names}
    header = power.parse_sampler_header((raw / files["power"][0]).read_text())
    slices = len(rounds[0]["e2e"]["stats"]["vision_slice_ms"])
    warm = phases.get("vision_warm", unavailable("no vision phase"))
    if is_unavailable(warm) or is_unavailable(warm["energy_per_unit_j"]):
        per_image = warm if is_unavailable(warm) else warm["energy_per_unit_j"]
        per_slice = per_image
    else:
        per_slice = warm["energy_per_unit_j"]
        per_image = per_slice * slices
    per_token = {}
    for name, phase in phases.items():
        if name.startswith(("decode:", "prefill:")):
            per_token[name] = phase if is_unavailable(phase) else phase["energy_per_unit_j"]
    schema_phases = {n: (p if is_unavailable(p) else {k: v for k, v in p.items()
                                                      if k not in ("energy_per_unit_j", "unit")})
                     for n, p in phases.items()}
    return {"method": f"battery fuel gauge: {header['root']}/current_now x voltage_now sampled on the device "
                      f"({header['clock']}, the benchmark's clock), idle power measured right before and subtracted",
            "sample_rate_hz": header["hz"], "idle_w": sum(r["idle_w"] for r in per_round) / len(per_round),
            "phases": schema_phases, "energy_per_image_j": per_image, "energy_per_slice_j": per_slice,
            "image_slices": slices, "energy_per_token_j": per_token or unavailable("no prefill/decode phase"),
            "samples_file": files["power"][0], "charging": derived["charging_samples"] > 0,
            "derivation": derived, "notes": derived["notes"]}


def assemble(manifest: dict, artifacts: Path, facts: dict, steps: dict, raw: Path, plan) -> dict:
    from edgevlm.device_tests.schema import BENCH_SCHEMA_ID, artifact_hashes
    from edgevlm.export.manifest import sha256_path

    rounds = load_rounds(raw, steps["files"]["bench"])
    emulated = facts["emulated"]
    device = facts | {"thermal_before": steps["thermal_before"], "thermal_after": steps["thermal_after"]}
    e2e = end_to_end(rounds)
    raw_files = {name: f"{raw.name}/{name}" for group in steps["files"].values() for name in group}
    report = {
        "schema": BENCH_SCHEMA_ID, "kind": "device", "device": device,
        "artifacts": artifact_hashes(manifest, sha256_path(artifacts / "manifest.json")),
        "runtime_versions": manifest["toolchain"] | {"edgevlm-bench": rounds[0]["schema"]},
        "model": manifest["model"],
        "input": {"prompt": plan.prompt, "image": str(plan.image) if plan.image else "demo scene",
                  "contexts": list(plan.contexts), "runs": plan.runs, "warmup": plan.warmup,
                  "decode_tokens": plan.decode_tokens, "threads": rounds[0]["threads"], "end_to_end": e2e},
        "results": [vision_result(manifest, rounds, emulated), *steps.get("extra_results", []),
                    decoder_result(manifest, rounds, emulated)],
        "power": power_block(raw, steps, rounds, plan.allow_charging),
        "rounds": steps["rounds"], "raw_files": raw_files,
    }
    for result in steps.get("extra_results", []):
        raw_files |= {name: f"{raw.name}/{name}" for name in result.pop("raw_files", [])}
    if steps.get("perfetto") is not None:  # rails and battery counters: beside the fuel-gauge power
        target = report["power"] if not is_unavailable(report["power"]) else report
        target["perfetto"] = steps["perfetto"]
    if emulated:
        report["input"]["note"] = "timings under qemu-user emulation: they say nothing about a phone's speed"
    return report
