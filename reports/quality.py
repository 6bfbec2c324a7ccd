"""The quality report (calibration/quality.py) as markdown, and its JSON schema."""

from __future__ import annotations

_SCORE = {"exact_match": {"type": "number", "minimum": 0, "maximum": 1},
          "answer_perplexity": {"type": "number", "minimum": 1}, "samples": {"type": "integer", "minimum": 1}}

QUALITY_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "edgevlm.quality/1",
    "type": "object",
    "required": ["schema", "model", "heldout", "reference", "rows", "status"],
    "properties": {
        "schema": {"const": "edgevlm.quality/1"},
        "reference": {"type": "object", "required": list(_SCORE), "properties": _SCORE},
        "status": {"enum": ["pass", "fail"]},
        "rows": {"type": "array", "items": {
            "type": "object", "required": ["recipe", "component", "artifact", "status"],
            "properties": {"component": {"enum": ["vision", "decoder", "end_to_end"]},
                           "status": {"enum": ["pass", "fail", "not run"]}},
            "if": {"properties": {"status": {"enum": ["pass", "fail"]}}},
            "then": {"required": list(_SCORE) + ["drop_points", "gate"]},
            "else": {"required": ["reason"]}}},
        "decoder_ablation": {"type": "array", "items": {
            "type": "object", "required": ["weights", "kv_cache", "drop_points"] + list(_SCORE)}},
        "layer_sqnr": {"type": "array"},
        "kv_error": {"type": "object"},
    },
}


def validate(report: dict) -> None:
    import jsonschema

    jsonschema.validate(report, QUALITY_SCHEMA)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _left_out_kinds(report: dict) -> list[str]:
    left_out = report["heldout"].get("kinds_left_out") or {}
    if not left_out:
        return []
    kinds = ", ".join(f"{kind} ({_pct(row['exact_match'])} against {_pct(row['chance'])} chance, {row['samples']} "
                      "samples)" for kind, row in left_out.items())
    return [f"Left out of every row: question kinds the oracle answers less than "
            f"{100 * report['heldout']['min_kind_margin']:.0f} points above chance, whose guesses flip under any "
            f"perturbation: {kinds}. Scored: {report['heldout']['samples']} of {report['heldout']['drawn']} "
            "held-out samples.", ""]


def _runtime(row: dict) -> str:
    same = row.get("same_answers_as_qdq")
    qdq = f"; {same}/{row['samples']} answers as its QDQ model" if same is not None else ""
    return row.get("runtime", "-") + qdq


def _paired(row: dict) -> str:
    if "answers_lost" not in row:
        return "-"
    return f"{row['answers_lost']} / {row['answers_gained']} ({row['mcnemar_p']:.2g})"


def to_markdown(report: dict) -> str:
    ref = report["reference"]
    lines = [f"# edgevlm quality report: {report['model']['dir']}", "",
             f"Held-out synthetic VQA, {report['heldout']['samples']} samples. Reference (eager fp32): exact match "
             f"{_pct(ref['exact_match'])}, answer perplexity {ref['answer_perplexity']:.3f}. Status: "
             f"**{report['status']}**.", "",
             *_left_out_kinds(report),
             "## Recipes (one part swapped in at a time; end_to_end = artifacts only)", "",
             "| recipe | part | artifact | runtime | samples | exact match (reference) | drop (pts) | answers lost / "
             "gained (McNemar p) | perplexity (+) | gate | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        if r["status"] == "not run":
            lines.append(f"| {r['recipe']} | {r['component']} | {r['artifact']} | - | - | - | - | - | - | - | "
                         f"not run: {r['reason']} |")
            continue
        lines.append(f"| {r['recipe']} | {r['component']} | {r['artifact']} | {_runtime(r)} | {r['samples']} | "
                     f"{_pct(r['exact_match'])} ({_pct(r['reference_exact_match'])}) | {r['drop_points']:+.1f} | "
                     f"{_paired(r)} | {r['answer_perplexity']:.3f} "
                     f"({r['perplexity_increase']:+.3f}) | {r['gate']['describe']} | {r['status']} |")
    for recipe in report.get("recipes", []):
        for backend, (asked, used) in recipe.get("decoder_max_seq_len_capped", {}).items():
            lines += ["", f"{recipe['name']}: the {backend} decoder's cache was exported with {used} positions, not "
                          f"the recipe's {asked} (the oracle has {used}; its prompts are far shorter)."]
    if report.get("decoder_ablation"):
        lines += ["", "## Decoder ablation (export graph run eagerly: weights x KV cache)", "",
                  "| weights | KV cache | exact match | drop (pts) | perplexity (+) |", "|---|---|---|---|---|"]
        for r in report["decoder_ablation"]:
            lines.append(f"| {r['weights']} | {r['kv_cache']} | {_pct(r['exact_match'])} | {r['drop_points']:+.1f} | "
                         f"{r['answer_perplexity']:.3f} ({r['perplexity_increase']:+.3f}) |")
        awq = report["decoder_ablation"][0].get("awq")
        if awq:
            lines += ["", f"AWQ scale search: summed group output MSE of the INT4 round trip "
                          f"{awq['output_mse_rtn']:.4g} (RTN) -> {awq['output_mse_awq']:.4g} (AWQ) over "
                          f"{awq['calibration_sequences']} calibration sequences."]
    for table in report.get("layer_sqnr", []):
        lines += ["", f"## Per-layer SQNR: {table['artifact']} ({table['recipe']})", ""]
        if table["status"] != "ok":
            lines.append(f"not run: {table['reason']}")
            continue
        lines += [f"{table['slices']} held-out slices, {table['onnx']} on {table['runtime']}, against the float "
                  "encoder.", "", "| stage | SQNR (dB) |", "|---|---|"]
        lines += [f"| {s['stage']} | {s['sqnr_db']:.1f} |" for s in table["stages"]]
    kv = report.get("kv_error")
    if kv:
        lines += ["", "## KV-cache formats on the oracle's activations (attention-output error vs an fp32 cache)", "",
                  "| format | bytes/token | rel. error (mean) | worst layer |", "|---|---|---|---|"]
        for f in kv["formats"]:
            if f["status"] != "ok":
                lines.append(f"| {f['format']} | {f['bytes_per_token']:.0f} | not run: {f['reason']} | - |")
            else:
                lines.append(f"| {f['format']} | {f['bytes_per_token']:.0f} | {f['rel_error_mean']:.2e} | "
                             f"{f['rel_error_max']:.2e} |")
    return "\n".join(lines) + "\n"
