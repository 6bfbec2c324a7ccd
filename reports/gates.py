"""Comparability and regression gates of a report against `--baseline`.

Two metrics are compared only when they have the same id and the same identity: the same device
(kind and model) and the same artifact bytes (manifest sha256, or a quality row's artifact sha256)
and, for accuracy, the same number of held-out samples. Anything else is listed as not comparable,
with the differing field and both values, never compared silently; so is a metric that only one
side has (a runtime, context or recipe added or dropped).

Noise band (latency and tokens/s): a timing moves by its own run-to-run spread, so the band is the
larger of the two runs' spreads [min, p90] (edgevlm/stats.py), in the metric's unit; a run that kept
only a standard deviation gives 2 x std. A change is a regression when it is worse by more than
noise x band (noise defaults to 1). A timing with no spread in either run (prefill and TTFT are one
median per round) is shown but not gated: no band can be computed from a single number.
Memory and energy have no per-run spread in the schema: they fail beyond a relative threshold
(memory 10 %, energy 15 % by default; --threshold memory=5). Accuracy uses the recipe's own gates:
a quality row that failed its gate fails the report; so does a failed verify check.
"""

from __future__ import annotations

DEFAULT_THRESHOLDS = {"noise": 1.0, "memory": 10.0, "energy": 15.0}
RELATIVE = {"memory": "memory", "energy": "energy"}  # section -> threshold name (percent)
IDENTITY_FIELDS = ("device", "artifacts", "samples")


def band_of(metric: dict) -> float | None:
    spread = metric.get("spread") or {}
    if "min" in spread and "p90" in spread:
        return abs(spread["p90"] - spread["min"])
    if "std" in spread:
        return 2 * spread["std"]
    return None


def not_comparable_reason(current: dict, baseline: dict) -> str | None:
    a, b = current.get("identity", {}), baseline.get("identity", {})
    for key in IDENTITY_FIELDS:
        if a.get(key) != b.get(key):
            what = {"device": "different devices", "artifacts": "different artifact bytes",
                    "samples": "different held-out sample counts"}[key]
            return f"{what}: {a.get(key)} vs baseline {b.get(key)}"
    return None


def compare(current: list[dict], baseline: list[dict], thresholds: dict | None = None) -> dict:
    """-> {"comparisons": [...], "not_comparable": [...], "failures": [...]}; failures also hold
    gate failures of the current run alone (quality gates, verify checks)."""
    limits = DEFAULT_THRESHOLDS | (thresholds or {})
    by_id = {m["id"]: m for m in baseline if m["section"] != "verify"}
    comparisons, not_comparable, failures = [], [], []
    for cur in current:
        if cur["section"] == "verify":
            if cur["status"] == "fail":
                failures.append({"metric": cur["id"], "why": f"verify check failed: {cur['detail']}"})
            continue
        if cur["section"] == "accuracy" and cur.get("gate_status") == "fail":
            failures.append({"metric": cur["id"], "current": cur["value"], "baseline": None,
                             "why": f"accuracy drop {cur['value']:+.1f} points breaks the recipe's gate "
                                    f"({cur['gate']})"})
        base = by_id.get(cur["id"])
        if base is None:
            if baseline:  # a new runtime, context or recipe: said, not dropped
                not_comparable.append({"metric": cur["id"], "why": "not in the baseline"})
            continue
        reason = not_comparable_reason(cur, base)
        if reason:
            not_comparable.append({"metric": cur["id"], "why": reason})
            continue
        row = _compare_one(cur, base, limits)
        comparisons.append(row)
        if row["verdict"] == "regression":
            failures.append({"metric": cur["id"], "current": cur["value"], "baseline": base["value"],
                             "why": row["why"]})
    current_ids = {m["id"] for m in current}
    not_comparable += [{"metric": mid, "why": "in the baseline only (the current results do not have it)"}
                       for mid in by_id if mid not in current_ids]
    return {"comparisons": comparisons, "not_comparable": _merge(not_comparable), "failures": failures,
            "thresholds": limits}


def _merge(rows: list[dict]) -> list[dict]:
    """One line per reason, with the metrics it applies to (a device change affects them all)."""
    merged: dict[str, list[str]] = {}
    for r in rows:
        merged.setdefault(r["why"], []).append(r["metric"])
    return [{"why": why, "metrics": metrics} for why, metrics in merged.items()]


def _compare_one(cur: dict, base: dict, limits: dict) -> dict:
    row = {"metric": cur["id"], "section": cur["section"], "unit": cur["unit"], "better": cur["better"],
           "current": cur["value"], "baseline": base["value"], "change": None, "change_pct": None,
           "band": None, "verdict": "not gated", "why": ""}
    if cur["value"] is None or base["value"] is None:
        missing = cur if cur["value"] is None else base
        row["why"] = f"n/a ({missing['unavailable']})"
        return row
    change = cur["value"] - base["value"]
    row["change"] = change
    row["change_pct"] = 100 * change / base["value"] if base["value"] else None
    if cur["section"] == "accuracy":  # judged by the recipe's own gate, not against the baseline
        passed = "failed" if cur.get("gate_status") == "fail" else "passed"
        row["why"] = f"the recipe's gate judges it ({cur.get('gate') or 'no gate set'}): {passed}"
        return row
    worse = change if cur["better"] == "lower" else -change  # > 0: worse
    if cur["section"] in RELATIVE:
        pct = limits[RELATIVE[cur["section"]]]
        allowed = abs(base["value"]) * pct / 100
        row["band"] = allowed
        described = f"{pct:g} % of the baseline"
    else:
        bands = [b for b in (band_of(cur), band_of(base)) if b is not None]
        if not bands or cur["better"] is None:
            row["why"] = "no spread measured in either run: shown, not gated"
            return row
        allowed = limits["noise"] * max(bands)
        row["band"] = allowed
        described = f"noise band {allowed:.4g} {cur['unit']} (the runs' own spread)"
    if worse > allowed:
        row["verdict"] = "regression"
        row["why"] = (f"{cur['id']}: {_fmt(cur['value'], cur['unit'])} vs baseline "
                      f"{_fmt(base['value'], cur['unit'])}, worse by {_fmt(abs(change), cur['unit'])} "
                      f"(beyond {described})")
    else:
        row["verdict"] = "improved" if worse < -allowed else "within noise"
        row["why"] = f"within {described}" if row["verdict"] == "within noise" else f"better beyond {described}"
    return row


def _fmt(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{value / 2**20:.1f} MiB"
    return f"{value:.4g} {unit}"


def parse_thresholds(items: list[str]) -> dict:
    from edgevlm.errors import ConfigError

    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in DEFAULT_THRESHOLDS:
            raise ConfigError(f"--threshold {item}: unknown metric {name!r}",
                              f"use one of {', '.join(f'{k}=N' for k in DEFAULT_THRESHOLDS)} (noise: a multiple "
                              "of the runs' spread; memory, energy: percent)")
        try:
            out[name] = float(value)
        except ValueError:
            raise ConfigError(f"--threshold {item}: {value!r} is not a number", f"write e.g. {name}=2") from None
        if out[name] < 0:
            raise ConfigError(f"--threshold {item}: must be >= 0", f"write e.g. {name}=2")
    return out
