"""`edgevlm report`: result files (and a baseline) -> report.html, report.md, report.json in OUT."""

from __future__ import annotations

import json
from pathlib import Path

from edgevlm.errors import ConfigError

FORMATS = ("html", "md", "json")


def parse_formats(text: str) -> tuple[str, ...]:
    names = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise ConfigError(f"--format {text}: unknown format(s) {unknown or ['(none)']}",
                          f"use a comma-separated subset of {','.join(FORMATS)}")
    return names


def make_report(paths: list[Path], baseline_paths: list[Path] | None = None,
                thresholds: dict | None = None) -> tuple[dict, list, list[dict]]:
    """-> (the edgevlm.report/1 document, figures, the quality reports the SQNR/KV plots read)."""
    from edgevlm.reports import document, gates, plots
    from edgevlm.reports.load import QUALITY, load_results
    from edgevlm.reports.metrics import extract

    loaded = load_results(paths)
    current = extract(loaded)
    baseline = load_results(baseline_paths) if baseline_paths else None
    comparison = gates.compare(current, extract(baseline) if baseline else [], thresholds)
    qualities = [r.data for r in loaded.of(QUALITY)]
    figures = plots.render_all(current, qualities)
    doc = document.build(loaded, current, figures, baseline, comparison)
    document.validate_report(doc)  # a renderer bug must not write a report its readers cannot parse
    return doc, figures, qualities


def write_report(doc: dict, figures: list, qualities: list[dict], out: Path, formats: tuple[str, ...]) -> list[Path]:
    from edgevlm.reports.html import render_html
    from edgevlm.reports.markdown import render_markdown

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in formats:
        path = out / f"report.{name}"
        text = {"html": lambda: render_html(doc, figures, qualities), "md": lambda: render_markdown(doc),
                "json": lambda: json.dumps(doc, indent=2) + "\n"}[name]()
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
