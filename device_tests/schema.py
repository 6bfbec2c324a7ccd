"""JSON Schema of benchmark results (host, adb, Mac and device-farm harnesses share it)."""

from __future__ import annotations

BENCH_SCHEMA_ID = "https://edgevlm.dev/schemas/bench-v1.json"

_METRICS = {
    "type": "object",
    "required": ["runs", "warmup", "median_ms", "p90_ms"],
    "properties": {k: {"type": "number", "minimum": 0} for k in
                   ("runs", "warmup", "median_ms", "p90_ms", "min_ms", "mean_ms")},
}

_ROOFLINE = {"type": "object", "required": ["bytes_per_token", "gb_s", "floor_ms", "percent"],
             "properties": {k: {"type": "number", "minimum": 0} for k in ("bytes_per_token", "gb_s", "floor_ms", "percent")}}

# roofline: against the read bandwidth sampled beside the timing (read_bandwidth_gb_s: before, after);
# roofline_run_best: against the best sample of the whole run.
_TIMING = {"type": "object", "required": ["median_ms", "tokens_per_s"],
           "properties": {"median_ms": {"type": "number", "minimum": 0}, "tokens_per_s": {"type": "number", "minimum": 0},
                          "read_bandwidth_gb_s": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}},
                          "roofline": _ROOFLINE, "roofline_run_best": _ROOFLINE}}

# Decoder results (kind "decoder"): prefill per prompt length, decode per context (keys are the lengths).
_DECODER = {
    "type": "object",
    "required": ["prefill", "decode", "ttft_ms", "peak_rss_mib"],
    "properties": {
        "prefill": {"type": "object", "minProperties": 1, "additionalProperties": _TIMING},
        "decode": {"type": "object", "minProperties": 1, "additionalProperties": _TIMING},
        "ttft_ms": {"type": "number", "minimum": 0},
        "peak_rss_mib": {"type": "number", "minimum": 0},
    },
}

BENCH_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": BENCH_SCHEMA_ID,
    "type": "object",
    "required": ["schema", "kind", "device", "runtime_versions", "model", "results"],
    "properties": {
        "schema": {"const": BENCH_SCHEMA_ID},
        "kind": {"enum": ["vision_encoder", "decoder"]},
        "device": {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string"}}},
        "runtime_versions": {"type": "object", "additionalProperties": {"type": "string"}},
        "model": {"type": "object", "required": ["version"]},
        "input": {"type": "object"},
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["runtime", "status"],
                "properties": {
                    "runtime": {"type": "string"},
                    "status": {"enum": ["ok", "not run"]},
                    "artifact": {"type": ["string", "null"]},
                    "sha256": {"type": ["string", "null"]},
                    "reason": {"type": "string"},
                    "metrics": _METRICS,
                    "decoder": _DECODER,
                    "artifact_bytes": {"type": "integer", "minimum": 0},
                    "kv_cache": {"type": "object", "required": ["format", "bytes_per_token"]},
                },
                "if": {"properties": {"status": {"const": "ok"}}},
                "then": {"anyOf": [{"required": ["metrics"]}, {"required": ["decoder"]}]},
                "else": {"required": ["reason"]},
            },
        },
    },
}


def validate_bench(report: dict) -> None:
    import jsonschema

    jsonschema.validate(report, BENCH_SCHEMA)
