"""How fast XNNPACK's INT4 GEMVs read weights on this host, apart from everything else a decode step does.

    edgevlm gemv-stream --preset minicpmv-2.6-llm0.5b [--rounds 5] [--json out.json]

Three .pte programs of the preset's LLM shapes, 8da4w g32 weights as the decoder exports them:
- `layers`: every layer's q/k/v/o/gate/up/down projections chained (a decode step's GEMMs, no
  attention, norms or cache: random weights stream from DRAM once per call);
- `lm_head`: the vocabulary projection alone (one large GEMV from DRAM);
- `resident`: one down projection called over and over (its weights stay in cache: the arithmetic
  rate, no DRAM).
Each round times every program (median of `--calls` calls, M = 1) and reads the host's streaming
bandwidth beside it. Weight GB/s = packed weight bytes / time. `resident` is the GEMV's arithmetic
rate; `layers` against the read bandwidth is how much of the memory a decode step's GEMMs can use.
On this 2-core host at ~80 GB/s: layers 48-49, lm_head 58-62, resident 84-87 GB/s, so the
arithmetic is barely faster than memory and the GEMVs are bound by both (decode at 50-64% of the
roofline there); at ~50 GB/s the layers read at 83-86% of it.
Prints a table and writes JSON (`schema: edgevlm.gemv-stream/1`). Numbers, not a test.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from edgevlm.stats import median

SCHEMA = "edgevlm.gemv-stream/1"


class _Layers(nn.Module):
    """A decoder layer's projections in sequence (residual adds keep every output live)."""

    def __init__(self, hidden: int, q: int, kv: int, intermediate: int, layers: int):
        super().__init__()
        self.attn = nn.ModuleList(nn.ModuleDict({"q": nn.Linear(hidden, q, bias=False),
                                                 "k": nn.Linear(hidden, kv, bias=False),
                                                 "v": nn.Linear(hidden, kv, bias=False),
                                                 "o": nn.Linear(q + 2 * kv, hidden, bias=False)})
                                  for _ in range(layers))
        self.mlp = nn.ModuleList(nn.ModuleDict({"gate": nn.Linear(hidden, intermediate, bias=False),
                                                "up": nn.Linear(hidden, intermediate, bias=False),
                                                "down": nn.Linear(intermediate, hidden, bias=False)})
                                 for _ in range(layers))

    def forward(self, x):
        for attn, mlp in zip(self.attn, self.mlp):
            x = x + attn["o"](torch.cat([attn["q"](x), attn["k"](x), attn["v"](x)], -1))
            x = x + mlp["down"](torch.nn.functional.silu(mlp["gate"](x)) * mlp["up"](x))
        return x


def _program(module: nn.Module, width: int, path: Path, group_size: int) -> tuple[Path, int]:
    """Quantize (8da4w, as export/decoder/pte.quantize_weights), lower to XNNPACK, write; (path, weight bytes)."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    params = sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))
    quantize_(module.eval(), Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
                                                                   weight_granularity=PerGroup(group_size)))
    exported = torch.export.export(module, (torch.randn(1, 1, width),), strict=False)
    path.write_bytes(to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    return path, params // 2 + params // group_size * 2  # 4-bit codes + one fp16 scale per group


def build_programs(preset: str, folder: Path, group_size: int = 32) -> dict[str, dict]:
    from edgevlm.presets import get_preset

    cfg = get_preset(preset).build_config().llm
    head_dim = cfg.resolved_head_dim
    hidden, q, kv = cfg.hidden_size, cfg.num_attention_heads * head_dim, cfg.num_key_value_heads * head_dim
    torch.manual_seed(0)
    modules = {"layers": (_Layers(hidden, q, kv, cfg.intermediate_size, cfg.num_hidden_layers), hidden),
               "lm_head": (nn.Linear(hidden, cfg.vocab_size, bias=False), hidden),
               "resident": (nn.Linear(cfg.intermediate_size, hidden, bias=False), cfg.intermediate_size)}
    programs = {}
    for name, (module, width) in modules.items():
        path, weight_bytes = _program(module, width, folder / f"{name}.pte", group_size)
        programs[name] = {"path": path, "width": width, "weight_bytes": weight_bytes}
    return programs


def time_programs(programs: dict[str, dict], rounds: int, calls: int) -> list[dict]:
    from executorch.runtime import Runtime

    from edgevlm.device_tests.roofline import read_bandwidth
    from edgevlm.export.decoder.pte import torch_on_one_thread

    methods = {name: (Runtime.get().load_program(str(p["path"])).load_method("forward"), torch.randn(1, 1, p["width"]))
               for name, p in programs.items()}
    results = []
    for _ in range(rounds):
        row = {"read_bandwidth_gb_s": read_bandwidth()["gb_s"]}
        with torch_on_one_thread():
            for name, (method, x) in methods.items():
                for _ in range(3):
                    method.execute([x])
                times = []
                for _ in range(calls):
                    start = time.perf_counter()
                    method.execute([x])
                    times.append(time.perf_counter() - start)
                mid = median(times)
                row[name] = {"median_ms": mid * 1000, "weight_gb_s": programs[name]["weight_bytes"] / mid / 1e9}
        results.append(row)
    return results


def main(argv=None) -> dict:
    """`python -m edgevlm.device_tests.gemv_stream`: the same options as `edgevlm gemv-stream`."""
    from edgevlm.cli.tool_commands import gemv_stream_args

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    gemv_stream_args(ap)
    return run(ap.parse_args(argv))


def run(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        programs = build_programs(args.preset, Path(tmp), args.group_size)
        rounds = time_programs(programs, args.rounds, args.calls)
    from executorch.extension.pybindings import portable_lib

    report = {"schema": SCHEMA, "preset": args.preset, "group_size": args.group_size,
              "threads": portable_lib._threadpool_get_thread_count(),
              "weight_bytes": {name: p["weight_bytes"] for name, p in programs.items()}, "rounds": rounds}
    print(f"{args.preset}: weight GB/s per program (8da4w g{args.group_size}, M = 1, "
          f"{report['threads']} threads) beside the host's read GB/s")
    print(f"{'read':>6} {'layers':>8} {'lm_head':>8} {'resident':>9}")
    for row in rounds:
        print(f"{row['read_bandwidth_gb_s']:6.0f} " + " ".join(
            f"{row[name]['weight_gb_s']:{w}.0f}" for name, w in (("layers", 8), ("lm_head", 8), ("resident", 9))))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
