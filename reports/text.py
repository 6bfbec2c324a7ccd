"""Number formatting shared by the HTML and the Markdown, so both show the same digits (and the
tests can find the JSON's numbers in them by formatting those with the same function)."""

from __future__ import annotations

ARROW_WORSE, ARROW_BETTER = "🔺", "🟢"


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "bytes":
        return f"{value / 2**20:.1f} MiB"
    if unit == "points":
        return f"{value:+.1f} points"
    return f"{value:.4g} {unit}".rstrip()


def fmt_change(comparison: dict) -> str:
    """'↑ +12.3 %' (with a marker when the direction is worse or better for this metric)."""
    change, pct = comparison["change"], comparison["change_pct"]
    if change is None:
        return "n/a"
    arrow = "→" if change == 0 else ("↑" if change > 0 else "↓")
    text = f"{arrow} {pct:+.1f} %" if pct is not None else f"{arrow} {fmt_value(change, comparison['unit'])}"
    if comparison["verdict"] == "regression":
        return f"{text} {ARROW_WORSE}"
    if comparison["verdict"] == "improved":
        return f"{text} {ARROW_BETTER}"
    return text
