"""Terminal tables of bench/2 results: `bench`'s vision encoder table and `device-bench`'s summary
(moved here from the commands: reports/ is the one home of rendering)."""

from __future__ import annotations

from edgevlm.reports.metrics import is_unavailable


def print_vision_bench(report: dict) -> None:
    """`bench`: one row per vision runtime, median and p90 of the warm encodes."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"vision encoder, {report['input']['case']} slice {report['input']['tgt_size']} "
                        f"({report['input']['patches']} patches) on {report['device']['model']}")
    for column in ("runtime", "static patches", "median ms", "p90 ms", "note"):
        table.add_column(column)
    for r in report["results"]:
        m = r.get("metrics")
        table.add_row(r["runtime"], str(r["max_patches"]), f"{m['median_ms']:.2f}" if m else "-",
                      f"{m['p90_ms']:.2f}" if m else "-", r.get("reason") or r.get("note", ""))
    Console().print(table)


def print_device_report(report: dict) -> None:
    """`device-bench`: one row per result, then power and the answer."""
    from rich.console import Console
    from rich.table import Table

    device = report["device"]
    name = device["model"] if isinstance(device["model"], str) else device["spec"]
    table = Table(title=f"{report['model'].get('id', report['model']['version'])} on {name}"
                        + (" (emulated)" if device["emulated"] else ""))
    for column in ("part", "runtime", "load ms", "cold ms", "warm median ms [min, p90]", "tokens/s by context"):
        table.add_column(column)

    def ms(value):
        return value["unavailable"][:40] if is_unavailable(value) else f"{value:.1f}"

    for r in report["results"]:
        if r["status"] != "ok":
            table.add_row(r["part"], r["runtime"], "-", "-", f"not run: {r['reason'][:80]}", "-")
        elif r["part"] == "vision":
            m = r["metrics"]
            table.add_row("vision", r["runtime"][:60], ms(r["load_ms"]), ms(r["cold_ms"]),
                          f"{ms(m['median_ms'])} [{ms(m['min_ms'])}, {ms(m['p90_ms'])}] x{m['runs']}", "-")
        else:
            d = r["decoder"]
            rates = ", ".join(f"@{c} prefill {p['tokens_per_s']:.0f} / decode {d['decode'][c]['tokens_per_s']:.1f}"
                              for c, p in d["prefill"].items() if not is_unavailable(p))
            table.add_row("decoder", r["runtime"], ms(r["load_ms"]), "-", f"TTFT {ms(d['ttft_ms'])} ms", rates)
    Console().print(table)
    power = report["power"]
    if is_unavailable(power):
        print(f"power: not measured ({power['unavailable']})")
    else:
        tokens = {k: v for k, v in power["energy_per_token_j"].items() if not is_unavailable(v)}
        print(f"power: idle {power['idle_w']:.2f} W; energy per image "
              f"{ms(power['energy_per_image_j'])} J; per token {tokens}")
    print(f"answer: {report['input']['end_to_end']['text']!r}")
