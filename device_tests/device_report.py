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
    return {"part": "vision", "runtime": first["runtime"], "status": "ok", "emulated": emulated,
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
