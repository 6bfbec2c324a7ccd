"""JSON Schema of benchmark results (host, adb, Mac and device-farm harnesses share it)."""

from __future__ import annotations

BENCH_SCHEMA_ID = "https://edgevlm.dev/schemas/bench-v1.json"

_METRICS = {
    "type": "object",
    "required": ["runs", "warmup", "median_ms", "p90_ms"],
    "properties": {k: {"type": "number", "minimum": 0} for k in
                   ("runs", "warmup", "median_ms", "p90_ms", "min_ms", "mean_ms")},
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
                },
                "if": {"properties": {"status": {"const": "ok"}}},
                "then": {"required": ["metrics"]},
                "else": {"required": ["reason"]},
            },
        },
    },
}


def validate_bench(report: dict) -> None:
    import jsonschema

    jsonschema.validate(report, BENCH_SCHEMA)
