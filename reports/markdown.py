"""report.md: a pull-request comment. The verdict first, then the key numbers (vision latency,
decode tokens/s, accuracy drop, peak memory, energy) and, with a baseline, each change with an
arrow and a percentage; runs that could not be compared say why."""

from __future__ import annotations

from edgevlm.reports.text import fmt_change, fmt_value

KEY_SECTIONS = ("vision", "prefill", "decode", "ttft", "memory", "energy", "accuracy")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: dict) -> str:
    s = doc["summary"]
    lines = [f"## edgevlm report: **{doc['status']}**", "",
             f"Devices: {'; '.join(s['devices']) or '-'}. Models: {'; '.join(s['models']) or '-'}. "
             f"Recipes: {', '.join(s['recipes']) or '-'}.", ""]
    if s["manifest_sha256"]:
        lines += ["Manifests: " + ", ".join(f"`{m[:12]}`" for m in s["manifest_sha256"]), ""]
    if doc["failures"]:
        lines += ["### Failures", ""] + [f"- {_cell(f['why'])}" for f in doc["failures"]] + [""]
    base = doc["baseline"]
    if base is not None:
        lines += ["### Against the baseline", "", "| metric | baseline | current | change | verdict |",
                  "|---|---|---|---|---|"]
        lines += [f"| {_cell(c['metric'])} | {fmt_value(c['baseline'], c['unit'])} | "
                  f"{fmt_value(c['current'], c['unit'])} | {fmt_change(c)} | {_cell(c['verdict'])} |"
                  for c in base["comparisons"]]
        if not base["comparisons"]:
            lines.append("| (nothing comparable) | | | | |")
        for n in base["not_comparable"]:
            lines += ["", f"Not compared ({len(n['metrics'])} metrics): {_cell(n['why'])}."]
        lines.append("")
    lines += ["### Key numbers", "", "| metric | value | spread (min .. p90) | device |", "|---|---|---|---|"]
    for m in doc["metrics"]:
        if m["section"] not in KEY_SECTIONS:
            continue
        value = fmt_value(m["value"], m["unit"]) if m["value"] is not None else f"n/a ({m['unavailable']})"
        spread = m["spread"] or {}
        where = f"{fmt_value(spread['min'], m['unit'])} .. {fmt_value(spread['p90'], m['unit'])}" \
            if "min" in spread and "p90" in spread else "-"
        lines.append(f"| {_cell(m['id'])} | {_cell(value)} | {where} | {_cell(m['identity']['device'])} |")
    checks = [m for m in doc["metrics"] if m["section"] == "verify"]
    if checks:
        failed = [c for c in checks if c["status"] == "fail"]
        passed = [c for c in checks if c["status"] == "pass"]
        lines += ["", f"Verify: {len(passed)}/{len(checks)} checks pass" +
                  (": failed " + ", ".join(c["id"] for c in failed) if failed else ".")]
    return "\n".join(lines) + "\n"
