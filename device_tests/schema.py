"""The benchmark result schema, `edgevlm.bench/2` (schemas/bench-v2.schema.json, shipped in the
package): one schema for `bench`, `bench-decoder`, `device-bench` on every device kind and the
device farms. A field a device cannot provide is present as {"unavailable": reason}, so a report
says why a number is missing instead of dropping it or writing a zero."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

BENCH_SCHEMA_ID = "edgevlm.bench/2"
SCHEMA_FILE = "bench-v2.schema.json"


@cache
def bench_schema() -> dict:
    return json.loads(resources.files("edgevlm.device_tests").joinpath("schemas", SCHEMA_FILE).read_text())


def validate_bench(report: dict) -> None:
    """Raises jsonschema.ValidationError naming the first field that does not fit."""
    import jsonschema

    jsonschema.validate(report, bench_schema())


def artifact_hashes(manifest: dict, manifest_sha256: str) -> dict:
    """The schema's `artifacts` block: which exported bytes were measured."""
    files = {a["file"]: a["sha256"] for a in manifest["artifacts"]}
    for artifact in manifest["artifacts"]:
        files |= {e["file"]: e["sha256"] for e in artifact.get("extra_files", [])}
    return {"manifest_sha256": manifest_sha256, "files": files}
