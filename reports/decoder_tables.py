"""Rich tables for the decoder benchmark and the KV-cache comparison."""

from __future__ import annotations


def _console():
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=220)  # files and pipes get the whole table


def print_decoder_report(report: dict) -> None:
    from rich.table import Table

    llm, inp = report["model"]["llm"], report["input"]
    bw = report["device"]["read_bandwidth"]
    title = (f"decoder {llm['arch']} {llm['parameters'] / 1e6:.0f}M params ({llm['layers']} layers, hidden "
             f"{llm['hidden_size']}), {inp['weights']} g{inp['group_size']}, cache {inp['max_seq_len']} on "
             f"{report['device']['cpu']} x{report['device']['torch_threads']} threads; read bandwidth "
             f"{min(bw['samples_gb_s'] + bw.get('worker_samples_gb_s', [])):.0f}-{bw['gb_s']:.0f} GB/s")
    table = Table(title=title)
    for column in ["runtime", "size MiB", "KV B/tok", "peak RSS MiB", "TTFT ms"] + \
            [f"prefill {p} tok/s" for p in inp["prompts"]] + \
            [f"decode@{c} tok/s (% roofline: beside | run best)" for c in inp["contexts"]]:
        table.add_column(column)
    for r in report["results"]:
        size = f"{r['artifact_bytes'] / 2**20:.0f}" if r.get("artifact_bytes") else "-"
        kv = f"{r['kv_cache']['bytes_per_token']:.0f}"
        if r["status"] != "ok":
            table.add_row(r["runtime"], size, kv, "-", "-", *["-"] * len(inp["prompts"]),
                          f"not run: {r['reason'][:200]}", *["-"] * (len(inp["contexts"]) - 1))
            continue
        d = r["decoder"]
        prefill = [f"{d['prefill'][str(p)]['tokens_per_s']:.1f}" for p in inp["prompts"]]
        decode = [_decode_cell(d["decode"][str(c)]) for c in inp["contexts"]]
        table.add_row(r["runtime"], size, kv, f"{d['peak_rss_mib']:.0f}", f"{d['ttft_ms']:.0f}", *prefill, *decode)
    _console().print(table)
    comparison = report.get("comparison", {})
    for name, ratios in comparison.items():
        text = ", ".join(f"@{c}: {v:.2f}x" for c, v in ratios.items())
        _console().print(f"{name.replace('_', ' ')} (decode tok/s ratio): {text or '-'}")


def _decode_cell(timing: dict) -> str:
    """tok/s (% of the roofline at the bandwidth sampled beside the timing | at the run's best sample)."""
    text = f"{timing['tokens_per_s']:.2f} ({timing['roofline']['percent']:.0f}%"
    best = timing.get("roofline_run_best")
    return text + (f" | {best['percent']:.0f}%)" if best else ")")


def print_kv_report(report: dict) -> None:
    from rich.table import Table

    m = report["model"]
    table = Table(title=f"KV-cache formats on {m['source']} ({m['layers']} layers, {m['kv_heads']} KV heads, head_dim "
                        f"{m['head_dim']}); prompts of {report['prompt_tokens']} tokens; error vs fp32 cache")
    for column in ("format", "bytes/token", "x smaller than fp32", "attn-out rel. error (mean)", "(worst layer)"):
        table.add_column(column)
    for r in report["formats"]:
        if r["status"] != "ok":
            table.add_row(r["format"], f"{r['bytes_per_token']:.0f}", f"{r['compression_vs_fp32']:.2f}",
                          f"not run: {r['reason']}", "-")
            continue
        table.add_row(r["format"], f"{r['bytes_per_token']:.0f}", f"{r['compression_vs_fp32']:.2f}",
                      f"{r['rel_error_mean']:.2e}", f"{r['rel_error_max']:.2e}")
    _console().print(table)


def print_manifest_decoders(report: dict) -> None:
    from rich.table import Table

    bw = report["device"]["read_bandwidth"]["gb_s"]
    table = Table(title=f"decoder artifacts on {report['device']['model']} (read bandwidth {bw:.1f} GB/s)")
    for column in ("artifact", "KV", "TTFT ms", "prefill tok/s", "decode tok/s @context (% roofline: beside | run best)",
                   "peak RSS MiB"):
        table.add_column(column)
    for r in report["results"]:
        kv = f"{r['kv_cache']['format']} {r['kv_cache']['bytes_per_token']:.0f} B/tok"
        if r["status"] != "ok":
            table.add_row(r["artifact"], kv, "-", "-", f"not run: {r['reason'][:200]}", "-")
            continue
        d = r["decoder"]
        prefill = ", ".join(f"{p}: {t['tokens_per_s']:.1f}" for p, t in d["prefill"].items() if "unavailable" not in t)
        decode = ", ".join(f"@{c}: {_decode_cell(t)}" for c, t in d["decode"].items() if "unavailable" not in t)
        table.add_row(r["artifact"], kv, f"{d['ttft_ms']:.0f}", prefill, decode, f"{d['peak_rss_mib']:.0f}")
    _console().print(table)


def print_profile(report: dict) -> None:
    from pathlib import Path

    from rich.table import Table

    step = report["step_ms"]
    table = Table(title=f"{Path(report['artifact']).name} {report['method']}: decode at context {report['context']}, "
                        f"{step:.2f} ms/step over {report['steps']} steps; {report['delegate_calls']} XNNPACK delegate "
                        f"calls, {report['kernel_calls']} ExecuTorch kernel calls per step")
    for column in ("where", "ms/step", "% of step"):
        table.add_column(column)
    for label, key in (("XNNPACK GEMMs", "xnnpack_gemm_ms"), ("rest of the XNNPACK delegate calls", "xnnpack_other_ms"),
                       ("ExecuTorch kernels (cache/attention ops, views)", "executorch_kernels_ms"),
                       ("between calls (method overhead)", "outside_calls_ms")):
        table.add_row(label, f"{report[key]:.3f}", f"{100 * report[key] / step:.0f}%")
    for event in report["top_events"]:
        table.add_row(f"  {event['name']} (x{event['occurrences']})", f"{event['ms']:.3f}",
                      f"{100 * event['ms'] / step:.0f}%")
    _console().print(table)
