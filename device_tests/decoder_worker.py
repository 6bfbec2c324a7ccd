"""One runtime of the decoder benchmark, in its own process so its peak RSS is its own.

`python -m edgevlm.device_tests.decoder_worker JOB.json` prints one JSON line: prefill and decode
timings and peak RSS. JOB names the runtime (`eager`, `pte-embeds` for our text_decoder method,
`pte-tokens` for a text-runner .pte such as optimum-executorch's), the model or artifact, the
prompt lengths, the contexts and the run counts.

Decode at context C is timed as one-token steps at position C-1 over a cache that already holds
positions 0..C-2 (after the 1024-token prefill, the first 1024 hold real rows; beyond that the
cache's initial zeros). The attention cost depends on how many positions are read, not on
their values, so the time is that of a real decode step at context C.

Each context's decode timing sits between two read-bandwidth samples taken in this process (its
`read_bandwidth_gb_s`): on a shared host the bandwidth drifts by 2x within minutes, and the roofline
of a timing is only meaningful against the bandwidth the host had while it ran. The samples' buffer
is freed and the peak-RSS mark reset after each, so the reported peak stays the runtime's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch


def _timed(runner, fn, warmup: int, runs: int) -> dict:
    from edgevlm.device_tests.host_bench import time_calls

    with runner.running():
        return time_calls(fn, warmup, runs)


class _Pte:
    def running(self):
        from edgevlm.export.decoder.pte import torch_on_one_thread

        return torch_on_one_thread()  # as an app's loop runs it: torch's copies stay off the pool's cores


class PteEmbeds(_Pte):
    """Our multimodal .pte: text_decoder(embeds [1, T, D], input_pos [1])."""

    def __init__(self, job: dict):
        from edgevlm.export.decoder import pte_names
        from edgevlm.export.decoder.pte import load_pte_method

        self.method = load_pte_method(Path(job["artifact"]), pte_names.TEXT_DECODER)
        self.hidden = job["hidden_size"]

    def step(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        embeds = torch.randn(1, tokens.shape[1], self.hidden, generator=torch.Generator().manual_seed(pos)) * 0.02
        return self.method.execute([embeds, torch.tensor([pos], dtype=torch.long)])[0]


class PteTokens(_Pte):
    """A text-runner .pte: forward(tokens [1, T], positions) (optimum-executorch passes [T] cache positions)."""

    def __init__(self, job: dict):
        from edgevlm.export.decoder import pte_names
        from edgevlm.export.decoder.pte import load_pte_method

        self.method = load_pte_method(Path(job["artifact"]), pte_names.TEXT_FORWARD)
        self.positions = job.get("positions", "range")  # "range": [T] cache positions; "start": [1]

    def step(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        t = tokens.shape[1]
        positions = torch.arange(pos, pos + t) if self.positions == "range" else torch.tensor([pos])
        return self.method.execute([tokens, positions.long()])[0]


class Eager:
    """The transformers LLM with its DynamicCache, fp32 weights (the reference)."""

    def __init__(self, job: dict):
        from edgevlm.checkpoint.loader import load_model

        self.llm = load_model(Path(job["model"])).model.llm.eval()
        self.cache = None

    def running(self):
        return contextlib.nullcontext()  # eager computes on torch's threads

    def step(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        from transformers import DynamicCache

        if pos == 0 or self.cache is None:
            self.cache = DynamicCache(config=self.llm.config)
        elif self.cache.get_seq_length() != pos:
            self._fill(pos)
        t = tokens.shape[1]
        with torch.inference_mode():
            out = self.llm(input_ids=tokens, past_key_values=self.cache, use_cache=True,
                           cache_position=torch.arange(pos, pos + t), logits_to_keep=1)
        return out.logits[:, -1]

    def _fill(self, length: int) -> None:
        """Grow or crop the cache to `length` positions (grown rows: small random keys/values)."""
        have = self.cache.get_seq_length()
        if have > length:
            self.cache.crop(length - have)  # transformers 5: a negative count of tokens to drop
            return
        cfg = self.llm.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        shape = (1, cfg.num_key_value_heads, length - have, head_dim)
        for layer in range(cfg.num_hidden_layers):
            self.cache.update(torch.randn(shape) * 0.1, torch.randn(shape) * 0.1, layer)


RUNNERS = {"pte-embeds": PteEmbeds, "pte-tokens": PteTokens, "eager": Eager}


def run_job(job: dict) -> dict:
    torch.set_num_threads(job.get("threads") or torch.get_num_threads())
    start = time.perf_counter()
    runner = RUNNERS[job["runner"]](job)
    load_ms = (time.perf_counter() - start) * 1000
    vocab = job["vocab_size"]
    gen = torch.Generator().manual_seed(0)
    prefill = {}
    for length in job["prompts"]:
        tokens = torch.randint(0, vocab, (1, length), generator=gen)
        timing = _timed(runner, lambda: runner.step(tokens, 0), job["prefill_warmup"], job["prefill_runs"])
        prefill[str(length)] = timing | {"tokens_per_s": length * 1000 / timing["median_ms"]}
    # time to first token: a fresh prompt of the first length, prefilled, first token chosen
    tokens = torch.randint(0, vocab, (1, job["prompts"][0]), generator=gen)
    ttft = _timed(runner, lambda: int(runner.step(tokens, 0).argmax()), 0, job["prefill_runs"])
    decode = {}
    one = torch.randint(0, vocab, (1, 1), generator=gen)
    peak = PeakRss()
    for context in job["contexts"]:
        before = peak.beside(_bandwidth_sample)
        timing = _timed(runner, lambda: runner.step(one, context - 1), job["decode_warmup"], job["decode_runs"])
        decode[str(context)] = timing | {"tokens_per_s": 1000 / timing["median_ms"],
                                         "read_bandwidth_gb_s": [before, peak.beside(_bandwidth_sample)]}
    peak_kib = peak.kib()
    return {"load_ms": load_ms, "prefill": prefill, "ttft_ms": ttft["median_ms"], "decode": decode,
            "peak_rss_mib": peak_kib / 1024, "peak_rss_includes_bandwidth_buffer": peak.includes_samples,
            "threads": _compute_threads(job),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}


def _compute_threads(job: dict) -> int:
    """Threads doing the runtime's work: ExecuTorch's pool for a .pte, torch's for eager."""
    if job["runner"].startswith("pte"):
        from executorch.extension.pybindings import portable_lib

        return portable_lib._threadpool_get_thread_count()
    return torch.get_num_threads()


def _bandwidth_sample() -> float:
    from edgevlm.device_tests.roofline import read_bandwidth

    return read_bandwidth()["gb_s"]


class PeakRss:
    """This process's peak RSS, excluding what `beside(fn)` allocates: the peak so far is recorded
    before fn and the kernel's high-water mark reset after it (Linux /proc/self/clear_refs "5").
    Where the mark cannot be reset, fn still runs and its allocation counts (`includes_samples`)."""

    def __init__(self):
        self.recorded = 0
        self.includes_samples = False

    def beside(self, fn):
        self.recorded = max(self.recorded, _peak_rss_kib())
        result = fn()
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.includes_samples = True
        return result

    def kib(self) -> int:
        return max(self.recorded, _peak_rss_kib())


def _peak_rss_kib() -> int:
    """This process's own peak RSS. VmHWM belongs to the address space exec created; ru_maxrss would
    carry over the parent's peak across fork+exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    print(json.dumps(run_job(job)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
