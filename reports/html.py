"""report.html: one self-contained file (inline CSS and SVG, no script, no external URL), readable
offline and in a CI artifact viewer. Tables are plain HTML so they read without JavaScript."""

from __future__ import annotations

from html import escape

from edgevlm.reports.text import fmt_change, fmt_value

_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:78em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;
font-size:.85em;vertical-align:top}th{background:#f3f3f3}.fail{color:#b00;font-weight:bold}.pass{color:#070}
.na{color:#777;font-style:italic}figure{margin:1em 0 2em}figcaption{font-weight:bold;margin-bottom:.3em}
code{font-size:.85em}"""


def _table(head: list[str], rows: list[list[str]], raw: bool = False) -> str:
    """Cells are escaped unless raw (then the caller escaped them and added markup)."""
    cell = (lambda c: c) if raw else escape
    out = ["<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{cell(str(c))}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join(out + ["</tbody></table>"])


def _summary(doc: dict) -> str:
    s = doc["summary"]
    rows = [["status", f'<span class="{doc["status"]}">{escape(doc["status"])}</span>'],
            ["devices", escape("; ".join(s["devices"]) or "-")], ["models", escape("; ".join(s["models"]) or "-")],
            ["recipes", escape(", ".join(s["recipes"]) or "-")],
            ["manifest sha256", "<br>".join(f"<code>{escape(m)}</code>" for m in s["manifest_sha256"]) or "-"],
            ["results", "<br>".join(escape(f"{x['kind']}: {x['path']}") for x in s["sources"])]]
    parts = ["<h2>Summary</h2>", _table(["field", "value"], rows, raw=True)]
    if s["artifacts"]:
        parts += ["<h3>Artifacts</h3>", _table(["file", "sha256"], [[f, h] for f, h in s["artifacts"].items()])]
    if s["toolchain"]:
        parts += ["<h3>Toolchain</h3>", _table(["package", "version"], list(s["toolchain"].items()))]
    return "\n".join(parts)


def _failures(doc: dict) -> str:
    if not doc["failures"]:
        return '<p class="pass">No regression and no failed gate.</p>'
    return ('<h2 class="fail">Failures</h2><ul>' +
            "".join(f'<li class="fail" data-metric="{escape(f["metric"])}">{escape(f["why"])}</li>'
                    for f in doc["failures"]) + "</ul>")


def _metrics(doc: dict) -> str:
    rows = []
    for m in doc["metrics"]:
        if m["section"] == "verify":
            continue
        spread = m["spread"] or {}
        where = f"{fmt_value(spread['min'], m['unit'])} .. {fmt_value(spread['p90'], m['unit'])}" \
            if "min" in spread and "p90" in spread else "-"
        value = escape(fmt_value(m["value"], m["unit"])) if m["value"] is not None else \
            f'<span class="na">{escape("n/a (" + m["unavailable"] + ")")}</span>'
        rows.append([escape(m["section"]), f'<span data-metric="{escape(m["id"])}">{escape(m["id"])}</span>',
                     value, escape(where), escape(str(m["runs"] or "-")), escape(m["identity"]["device"])])
    return "<h2>Metrics</h2>" + _table(["section", "metric", "value", "spread (min .. p90)", "runs", "device"],
                                       rows, raw=True)


def _baseline(doc: dict) -> str:
    base = doc["baseline"]
    if base is None:
        return ""
    rows = [[c["metric"], fmt_value(c["baseline"], c["unit"]), fmt_value(c["current"], c["unit"]),
             fmt_change(c), c["verdict"], c["why"]] for c in base["comparisons"]]
    parts = ["<h2>Against the baseline</h2>",
             "<p>" + escape("baseline: " + ", ".join(x["path"] for x in base["sources"])) + "</p>",
             _table(["metric", "baseline", "current", "change", "verdict", "why"], rows)]
    if base["not_comparable"]:
        parts += ["<h3>Not compared</h3><ul>"] + [
            f"<li>{escape(n['why'])}: {escape(', '.join(n['metrics']))}</li>" for n in base["not_comparable"]]
        parts.append("</ul>")
    return "\n".join(parts)


def _verify(doc: dict) -> str:
    checks = [m for m in doc["metrics"] if m["section"] == "verify"]
    if not checks:
        return ""
    rows = [[escape(c["id"].removeprefix("verify ")),
             f'<span class="{escape(c["status"])}">{escape(c["status"])}</span>', escape(c["detail"])] for c in checks]
    return "<h2>Verify</h2>" + _table(["artifact: check", "status", "detail"], rows, raw=True)


def _tables_from_quality(qualities: list[dict]) -> str:
    from edgevlm.reports.plots import kv_rows

    kv = kv_rows(qualities)
    if not kv:
        return ""
    rows = [[f["format"], f"{f['bytes_per_token']:.0f}",
             f"{f['rel_error_mean']:.3e}" if f.get("status", "ok") == "ok" else f"n/a ({f.get('reason')})"] for f in kv]
    return "<h3>KV-cache formats</h3>" + _table(["format", "bytes/token", "attention-output rel. error (mean)"], rows)


def render_html(doc: dict, figures: list, qualities: list[dict]) -> str:
    body = ["<h1>edgevlm report</h1>", _summary(doc), _failures(doc), _baseline(doc), "<h2>Plots</h2>"]
    for fid, title, svg, note in figures:
        content = svg if svg is not None else f'<p class="na">{escape(note)}</p>'
        body.append(f'<figure id="plot-{fid}"><figcaption>{escape(title)}</figcaption>{content}</figure>')
    body += [_tables_from_quality(qualities), _metrics(doc), _verify(doc)]
    if doc["skipped"]:
        body.append("<h3>Skipped files</h3><ul>" + "".join(f"<li>{escape(s)}</li>" for s in doc["skipped"]) + "</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>edgevlm report</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(b for b in body if b) + "\n</body></html>\n")
