"""The report's figures: matplotlib (Agg, no display) to SVG text, embedded inline in the HTML.
Each figure is (id, title, svg or None, note); None means nothing was measured and the note says
why, so every figure id is always in the report and a missing plot is explained, not absent."""

from __future__ import annotations

import io
import re

# svg.hashsalt: SVG element ids are random by default; fixed, a re-render of the same results is byte-identical
_RC = {"svg.fonttype": "none", "svg.hashsalt": "edgevlm-report", "figure.figsize": (7.5, 3.6), "font.size": 9}

FIGURES = [("vision-latency", "Vision encode latency per slice by runtime and device (median, bar: min..p90)"),
           ("decoder-throughput", "Prefill and decode tokens/s against context length (dashed: decode roofline)"),
           ("energy", "Energy per token and per image"),
           ("peak-memory", "Peak memory"),
           ("accuracy-drop", "Accuracy drop per recipe and part"),
           ("layer-sqnr", "Per-layer SQNR of the vision artifacts"),
           ("kv-error", "KV-cache attention error against bytes/token")]


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)  # RDF block: URLs, no drawing
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG is inline in HTML


def _missing(metrics: list[dict], section: str) -> str:
    reasons = sorted({m["unavailable"] for m in metrics if m["section"] == section and m["unavailable"]})
    return "n/a (" + "; ".join(reasons) + ")" if reasons else "n/a (no result measured this)"


def render_all(metrics: list[dict], qualities: list[dict]) -> list[tuple[str, str, str | None, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    with plt.rc_context(_RC):
        for fid, title in FIGURES:
            svg, note = _BUILDERS[fid](plt, metrics, qualities)
            out.append((fid, title, svg, note))
    return out


def _measured(metrics, section):
    return [m for m in metrics if m["section"] == section and m["value"] is not None]


def _vision(plt, metrics, qualities):
    rows = _measured(metrics, "vision")
    if not rows:
        return None, _missing(metrics, "vision")
    fig, ax = plt.subplots()
    labels = [f"{m['runtime']}\n{m['device']}\nslice {m['slice']}" for m in rows]
    values = [m["value"] for m in rows]
    lo = [m["value"] - (m["spread"] or {}).get("min", m["value"]) for m in rows]
    hi = [(m["spread"] or {}).get("p90", m["value"]) - m["value"] for m in rows]
    ax.barh(range(len(rows)), values, xerr=[lo, hi], capsize=3, color="#4c78a8")
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.set_xlabel("ms (median)")
    return _svg(fig), ""


def _decoder(plt, metrics, qualities):
    prefill, decode = _measured(metrics, "prefill"), _measured(metrics, "decode")
    if not prefill and not decode:
        return None, _missing(metrics, "decode")
    fig, (left, right) = plt.subplots(1, 2)
    for ax, rows, name in ((left, prefill, "prefill"), (right, decode, "decode")):
        for series in sorted({(m["runtime"], m["identity"]["device"]) for m in rows}):
            points = sorted((m["context"], m["value"], m.get("roofline_tokens_per_s"), m["spread"] or {})
                            for m in rows if (m["runtime"], m["identity"]["device"]) == series)
            low = [p[1] - p[3].get("min", p[1]) for p in points]  # spread [min, p90] where the run kept one
            high = [p[3].get("p90", p[1]) - p[1] for p in points]
            bars = ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[low, high], marker="o",
                               capsize=3, label=f"{series[0]} ({series[1]})")
            roof = [(p[0], p[2]) for p in points if p[2]]
            if roof:  # bytes a step must read / read bandwidth (device_tests/roofline.py), as tokens/s
                ax.plot([r[0] for r in roof], [r[1] for r in roof], linestyle="--", marker="_", markersize=12,
                        color=bars.lines[0].get_color(), label=f"roofline {series[0]}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")  # runtimes and devices differ by orders of magnitude
        ax.set_xlabel("context (tokens)")
        ax.set_ylabel(f"{name} tokens/s")
        ax.set_title(name)
        if rows:
            ax.legend(fontsize=6)
    return _svg(fig), ""


def _bars(plt, rows, label, value, xlabel):
    fig, ax = plt.subplots()
    ax.barh(range(len(rows)), [value(m) for m in rows], color="#72b7b2")
    ax.set_yticks(range(len(rows)), [label(m) for m in rows], fontsize=7)
    ax.set_xlabel(xlabel)
    return _svg(fig)


def _energy(plt, metrics, qualities):
    rows = _measured(metrics, "energy")
    if not rows:
        return None, _missing(metrics, "energy")
    return _bars(plt, rows, lambda m: f"{m['id']} ({m['identity']['device']})", lambda m: m["value"], "J"), ""


def _memory(plt, metrics, qualities):
    rows = _measured(metrics, "memory")
    if not rows:
        return None, _missing(metrics, "memory")
    return _bars(plt, rows, lambda m: f"{m['runtime']} {m['part']} ({m['identity']['device']})",
                 lambda m: m["value"] / 2**20, "MiB"), ""


def _accuracy(plt, metrics, qualities):
    rows = _measured(metrics, "accuracy")
    if not rows:
        return None, _missing(metrics, "accuracy")
    return _bars(plt, rows, lambda m: m["id"].removeprefix("accuracy drop "), lambda m: m["value"],
                 "accuracy drop (points; > 0: worse than the eager fp32 reference)"), ""


def _sqnr(plt, metrics, qualities):
    tables = [t for q in qualities for t in q.get("layer_sqnr", []) if t["status"] == "ok"]
    if not tables:
        reasons = sorted({t["reason"] for q in qualities for t in q.get("layer_sqnr", []) if t["status"] != "ok"})
        return None, "n/a (" + ("; ".join(reasons) or "no quality result with a per-layer SQNR table") + ")"
    fig, ax = plt.subplots()
    for t in tables:
        ax.plot([s["stage"] for s in t["stages"]], [s["sqnr_db"] for s in t["stages"]], marker="o",
                label=f"{t['artifact']} ({t['recipe']})")
    ax.set_ylabel("SQNR (dB)")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.legend(fontsize=6)
    return _svg(fig), ""


def kv_rows(qualities: list[dict]) -> list[dict]:
    return [f for q in qualities if q.get("kv_error") for f in q["kv_error"].get("formats", [])]


def _kv(plt, metrics, qualities):
    rows = [f for f in kv_rows(qualities) if f.get("status", "ok") == "ok"]
    if not rows:
        return None, "n/a (no quality result with a KV-cache error table: `edgevlm quality` without --no-kv-error)"
    fig, ax = plt.subplots()
    markers = "osD^v<>ph*"
    for i, f in enumerate(rows):  # a legend, not labels: formats of equal size sit on top of each other
        ax.scatter(f["bytes_per_token"], f["rel_error_mean"], marker=markers[i % len(markers)], label=f["format"])
    ax.legend(fontsize=6)
    ax.set_xlabel("bytes/token")
    ax.set_ylabel("attention-output relative error (mean)")
    ax.set_yscale("symlog", linthresh=1e-6)
    return _svg(fig), ""


_BUILDERS = {"vision-latency": _vision, "decoder-throughput": _decoder, "energy": _energy, "peak-memory": _memory,
             "accuracy-drop": _accuracy, "layer-sqnr": _sqnr, "kv-error": _kv}
