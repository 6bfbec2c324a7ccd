"""Loaded results -> one flat list of metrics, each with its value (or the reason it is missing),
its spread where the run measured one, which way is better, and the identity a comparison needs
(device and artifact bytes). Renderers and gates read only these records, so a number in the HTML,
the Markdown and the JSON is the same number."""

from __future__ import annotations

from edgevlm.reports.load import BENCH, QUALITY, VERIFY, Loaded


def is_unavailable(value) -> bool:
    return isinstance(value, dict) and set(value) == {"unavailable"}


def metric(mid: str, section: str, unit: str, better: str | None, value, identity: dict, source: str,
           spread: dict | None = None, runs: int | None = None, **extra) -> dict:
    """value: a number, or {"unavailable": reason} (kept as the reason, never as 0)."""
    record = {"id": mid, "section": section, "unit": unit, "better": better, "value": None, "unavailable": None,
              "spread": spread, "runs": runs, "identity": identity, "source": source} | extra
    if is_unavailable(value) or value is None:
        record["unavailable"] = value["unavailable"] if value else "not measured"
    else:
        record["value"] = float(value)
    return record


def device_identity(report: dict) -> dict:
    device = report["device"]
    model = device["model"] if isinstance(device["model"], str) else device["spec"]
    artifacts = report["artifacts"]
    return {"device": f"{device['kind']}: {model}",
            "artifacts": artifacts.get("manifest_sha256") if "manifest_sha256" in artifacts else
            f"unavailable ({artifacts['unavailable']})"}


def _ms_spread(m: dict) -> dict | None:
    if not isinstance(m.get("runs"), int) or m["runs"] < 2:
        return None  # one sample: [min, p90] is that sample, not a spread
    nums = {k: m.get(f"{k}_ms") for k in ("min", "p90", "std")}
    nums = {k: v for k, v in nums.items() if isinstance(v, (int, float))}
    return nums or None


def _tokens_spread(timing: dict, tokens: float) -> dict | None:
    """A step's [min, p90] ms spread as tokens/s: the fastest step is the highest rate."""
    if timing.get("runs", 0) < 2:
        return None  # one sample (prefill: one per round): no spread was measured
    if isinstance(timing.get("min_ms"), (int, float)) and isinstance(timing.get("p90_ms"), (int, float)) \
            and timing["min_ms"] > 0 and timing["p90_ms"] > 0:
        return {"min": tokens * 1000 / timing["p90_ms"], "p90": tokens * 1000 / timing["min_ms"]}
    return None


def bench_metrics(report: dict, source: str) -> list[dict]:
    ident = device_identity(report)
    out = []
    slice_name = str(report.get("input", {}).get("tgt_size", "default"))
    for r in report["results"]:
        runtime = r["runtime"]
        rid = ident | {"runtime": runtime, "sha256": r.get("sha256")}
        if r["status"] != "ok":
            out.append(metric(f"{r['part']} {runtime}", r["part"], "", None, {"unavailable": r["reason"]}, rid,
                              source))
            continue
        if r["part"] == "vision":
            m, where = r["metrics"], str(r.get("slice", slice_name))
            out.append(metric(f"vision latency {runtime} slice {where}", "vision", "ms", "lower", m["median_ms"],
                              rid, source, _ms_spread(m), m["runs"], runtime=runtime, slice=where,
                              device=ident["device"]))
        else:
            d = r["decoder"]
            for ctx, t in d["prefill"].items():
                if is_unavailable(t):
                    out.append(metric(f"prefill {runtime} @{ctx}", "prefill", "tok/s", "higher", t, rid, source,
                                      runtime=runtime, context=int(ctx)))
                    continue
                tokens = t["tokens_per_s"] * t["median_ms"] / 1000  # the prompt length that was timed
                out.append(metric(f"prefill {runtime} @{ctx}", "prefill", "tok/s", "higher", t["tokens_per_s"],
                                  rid, source, _tokens_spread(t, tokens), t.get("runs"), runtime=runtime,
                                  context=int(ctx)))
            for ctx, t in d["decode"].items():
                value = t if is_unavailable(t) else t["tokens_per_s"]
                spread = None if is_unavailable(t) else _tokens_spread(t, 1)
                roof = None if is_unavailable(t) else t.get("roofline")
                ceiling = roof["gb_s"] * 1e9 / roof["bytes_per_token"] if roof else None
                out.append(metric(f"decode {runtime} @{ctx}", "decode", "tok/s", "higher", value, rid, source,
                                  spread, None if is_unavailable(t) else t.get("runs"), runtime=runtime,
                                  context=int(ctx), roofline_tokens_per_s=ceiling))
            out.append(metric(f"TTFT {runtime}", "ttft", "ms", "lower", d.get("ttft_ms"), rid, source,
                              runtime=runtime))
        memory = r.get("peak_memory_bytes", r.get("decoder", {}).get("peak_rss_mib"))
        if "peak_memory_bytes" not in r and isinstance(memory, (int, float)):
            memory = memory * 2**20  # bench-decoder keeps its resident set in MiB
        out.append(metric(f"peak memory {r['part']} {runtime}", "memory", "bytes", "lower", memory, rid, source,
                          runtime=runtime, part=r["part"]))
    out += _power_metrics(report, ident, source)
    return out


def _power_metrics(report: dict, ident: dict, source: str) -> list[dict]:
    power = report["power"]
    if is_unavailable(power):
        return [metric("energy per image", "energy", "J", "lower", power, ident, source),
                metric("energy per token", "energy", "J", "lower", power, ident, source)]
    out = [metric("energy per image", "energy", "J", "lower", power["energy_per_image_j"], ident, source)]
    per_token = power["energy_per_token_j"]
    if is_unavailable(per_token):
        return out + [metric("energy per token", "energy", "J", "lower", per_token, ident, source)]
    return out + [metric(f"energy per token @{ctx}", "energy", "J", "lower", j, ident, source, context=int(ctx))
                  for ctx, j in per_token.items()]


def quality_metrics(report: dict, source: str) -> list[dict]:
    out = []
    for r in report["rows"]:
        ident = {"device": "host (quality oracle)", "artifacts": r.get("sha256") or r["artifact"],
                 "samples": report["heldout"]["samples"]}
        mid = f"accuracy drop {r['recipe']} {r['component']} {r['artifact']}"
        if "same_answers_as_qdq" in r:  # the HTP emulator's subset beside its QDQ twin's row on every sample
            mid += " (emulated subset)"
        if r["status"] == "not run":
            out.append(metric(mid, "accuracy", "points", "lower", {"unavailable": r["reason"]}, ident, source,
                              recipe=r["recipe"], part=r["component"]))
            continue
        out.append(metric(mid, "accuracy", "points", "lower", r["drop_points"], ident, source, recipe=r["recipe"],
                          part=r["component"], gate=r["gate"]["describe"], gate_status=r["status"]))
    return out


def verify_metrics(checks: list[dict], source: str) -> list[dict]:
    """One record per check: not a number, a status (a failed check fails the report's gates)."""
    return [{"id": f"verify {c['artifact']}: {c['check']}", "section": "verify", "status": c["status"],
             "detail": c.get("detail", ""), "source": source} for c in checks]


def extract(loaded: Loaded) -> list[dict]:
    out = []
    for r in loaded.results:
        if r.kind == BENCH:
            out += bench_metrics(r.data, str(r.path))
        elif r.kind == QUALITY:
            out += quality_metrics(r.data, str(r.path))
        elif r.kind == VERIFY:
            out += verify_metrics(r.data, str(r.path))
    seen: dict[str, int] = {}
    unique, first = [], {}
    for m in out:  # `bench` writes two reports per run: one "power unavailable" each, said once
        key = (m["id"], str(m.get("identity")), m.get("unavailable"))
        if m.get("unavailable") and key in first:
            continue
        first[key] = m
        unique.append(m)
    out = unique
    for m in out:  # the same id from two files (two devices, two rounds of runs): keep both apart
        seen[m["id"]] = seen.get(m["id"], 0) + 1
        if seen[m["id"]] > 1:
            m["id"] = f"{m['id']} ({m.get('identity', {}).get('device', m['source'])} #{seen[m['id']]})"
    return out
