"""`gemv-stream` and `bench-decoder-onnx`: the device_tests measurement tools as `edgevlm` commands.

Their options are defined here, once; `python -m edgevlm.device_tests.<tool>` (kept for scripts)
parses the same ones. The tools import torch at the top, so they load only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_PRESET = "minicpmv-2.6-llm0.5b"


def gemv_stream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=DEFAULT_PRESET, help="model whose layer shapes are timed")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=30, help="timed calls per program and round")
    p.add_argument("--group-size", type=int, default=32)
    p.add_argument("--json", type=Path, help="also write the rounds as JSON here")


def gemv_stream(args) -> int:
    from edgevlm.device_tests.gemv_stream import run

    run(args)
    return 0


def decoder_onnx_bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=DEFAULT_PRESET)
    p.add_argument("--layers", type=int, default=None, help="keep only this many decoder layers (export time)")
    p.add_argument("--max-seq-len", type=int, default=512)
    p.add_argument("--context", type=int, default=256, help="prefill length; decode steps start there")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--group-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")


def decoder_onnx_bench(args) -> int:
    from edgevlm.device_tests.decoder_onnx_bench import run

    run(args)
    return 0
