"""The report as data, `edgevlm.report/1`: summary, metrics, the comparison with the baseline and
the gate failures. The HTML and the Markdown are rendered from this one dict, and it is written as
report.json after validation against schemas/report-v1.schema.json (shipped in the package)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import cache
from importlib import resources

from edgevlm.reports.load import BENCH, QUALITY, Loaded

REPORT_SCHEMA_ID = "edgevlm.report/1"


@cache
def report_schema() -> dict:
    return json.loads(resources.files("edgevlm.reports").joinpath("schemas", "report-v1.schema.json").read_text())


def validate_report(document: dict) -> None:
    """Raises jsonschema.ValidationError naming the first field that does not fit."""
    import jsonschema

    jsonschema.validate(document, report_schema())


def summary(loaded: Loaded) -> dict:
    devices, models, recipes, manifests, files, toolchain = set(), set(), set(), set(), {}, {}
    for r in loaded.results:
        if r.kind == BENCH:
            d = r.data["device"]
            model = d["model"] if isinstance(d["model"], str) else d["spec"]
            soc = d["soc"] if isinstance(d["soc"], str) else "n/a"
            devices.add(f"{d['kind']}: {model} (SoC {soc}){' emulated' if d['emulated'] else ''}")
            models.add(r.data["model"].get("id") or r.data["model"]["version"])
            if "manifest_sha256" in r.data["artifacts"]:
                manifests.add(r.data["artifacts"]["manifest_sha256"])
                files |= r.data["artifacts"]["files"]
            versions = r.data["runtime_versions"]
        elif r.kind == QUALITY:
            models.add(r.data["model"]["dir"])
            recipes |= {x["name"] for x in r.data.get("recipes", [])} | {row["recipe"] for row in r.data["rows"]}
            files |= {row["artifact"]: row["sha256"] for row in r.data["rows"]
                      if row.get("sha256") and row["component"] != "end_to_end"}  # e2e: two files, "a+b"
            versions = r.data.get("toolchain", {})
        else:
            continue
        for name, version in versions.items():
            toolchain.setdefault(name, set()).add(str(version))
    return {"devices": sorted(devices), "models": sorted(models), "recipes": sorted(recipes),
            "manifest_sha256": sorted(manifests), "artifacts": dict(sorted(files.items())),
            "toolchain": {k: ", ".join(sorted(v)) for k, v in sorted(toolchain.items())},
            "sources": [{"path": str(r.path), "kind": r.kind} for r in loaded.results]}


def build(loaded: Loaded, metrics: list[dict], figures: list, baseline: Loaded | None = None,
          comparison: dict | None = None) -> dict:
    failures = (comparison or {}).get("failures", [])
    document = {
        "schema": REPORT_SCHEMA_ID,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "summary": summary(loaded),
        "metrics": metrics,
        "figures": [{"id": fid, "title": title, "plotted": svg is not None, "note": note}
                    for fid, title, svg, note in figures],
        "skipped": loaded.skipped,
        "baseline": None if baseline is None else {
            "sources": [{"path": str(r.path), "kind": r.kind} for r in baseline.results],
            "comparisons": comparison["comparisons"], "not_comparable": comparison["not_comparable"],
            "thresholds": comparison["thresholds"]},
        "failures": failures,
        "status": "fail" if failures else "pass",
    }
    return document
