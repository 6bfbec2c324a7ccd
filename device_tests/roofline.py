"""Host memory bandwidth and the bytes a decode step must read: the decode roofline.

A decode step reads every weight it multiplies (all linear layers including lm_head, one row of
the embedding table) and the KV cache up to the current context. Its time cannot be below those
bytes divided by the host's read bandwidth, measured here the way a decode step reads: a
streaming reduction over a buffer far larger than the caches, with every core torch uses.
"""

from __future__ import annotations

import time

import numpy as np
import torch


def read_bandwidth(mib: int = 512, repeats: int = 5) -> dict:
    """Best-of-N streaming read bandwidth in GB/s: torch sum (all threads) and numpy sum (one)."""
    x = torch.ones(mib * 2**20 // 4)
    nbytes = x.numel() * 4
    x.sum()
    best_torch = min(_seconds(lambda: x.sum()) for _ in range(repeats))
    a = x.numpy()
    best_numpy = min(_seconds(lambda: np.add.reduce(a)) for _ in range(repeats))
    return {"buffer_mib": mib, "torch_sum_gb_s": nbytes / best_torch / 1e9, "numpy_sum_gb_s": nbytes / best_numpy / 1e9,
            "gb_s": max(nbytes / best_torch, nbytes / best_numpy) / 1e9, "threads": torch.get_num_threads()}


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def weight_bytes_per_token(artifact_bytes: int, embedding_bytes: int) -> int:
    """Bytes of weights one decode step reads from an artifact: everything but the embedding table
    (of which it reads one row). lm_head is a separate quantized matrix in these artifacts."""
    return max(artifact_bytes - embedding_bytes, 0)


def eager_weight_bytes(llm: torch.nn.Module) -> int:
    """fp32 eager model: every parameter except the embedding table, plus lm_head even when tied."""
    embed = llm.get_input_embeddings().weight
    total = sum(p.numel() * p.element_size() for p in llm.parameters())
    tied = embed is llm.get_output_embeddings().weight
    return total if tied else total - embed.numel() * embed.element_size()


def roofline(decode_ms: float, bytes_per_token: float, gb_s: float) -> dict:
    floor_ms = bytes_per_token / (gb_s * 1e9) * 1000
    return {"bytes_per_token": bytes_per_token, "gb_s": gb_s, "floor_ms": floor_ms, "percent": 100 * floor_ms / decode_ms}


def add_rooflines(timing: dict, bytes_per_token: float, run_best_gb_s: float) -> None:
    """A decode timing's roofline against the bandwidth sampled beside it (the higher of the samples
    taken right before and after it, so a dip in one does not flatter the timing) and, stricter,
    against the best sample of the whole run. On a quiet host the two agree; on a shared one the
    bandwidth drifts 2x within minutes and only the first says how close the step came to the
    memory system it actually had."""
    beside = max(timing.get("read_bandwidth_gb_s") or [run_best_gb_s])
    timing["roofline"] = roofline(timing["median_ms"], bytes_per_token, beside)
    timing["roofline_run_best"] = roofline(timing["median_ms"], bytes_per_token, max(run_best_gb_s, beside))
