"""`edgevlm bench-runner`: the native runner beside the Python `.pte` path on one decoder program.

Both run the loop of `edgevlm run` (token_embedding + text_decoder per step, greedy) from the same
prompt ids for the same number of new tokens (stop tokens ignored, so both decode every step), each
in its own process, which reports its own peak RSS (VmHWM): the Python path pays
for torch and the ExecuTorch pybind, the runner for libexecutorch alone. Rounds alternate between
the two (a shared host's speed drifts); each keeps its best round. The generated ids are compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

SCHEMA = "edgevlm.runner-bench/1"


def _child(argv: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{Path(argv[0]).name} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return proc


def python_generation(pte: str, prompt: list[int], new_tokens: int) -> dict:
    """The worker: `edgevlm run`'s .pte session and loop, timed like the runner times itself."""
    from edgevlm.export.decoder.session import PteDecoderSession
    from edgevlm.resources import peak_rss_bytes  # VmHWM: this process's own, unlike a parent's wait4 figure

    start = time.perf_counter()
    session = PteDecoderSession(Path(pte).parent, {"file": Path(pte).name})
    load_ms = (time.perf_counter() - start) * 1000
    tokens = []
    with session.running():
        t0 = time.perf_counter()
        logits = session.step(session.embed(prompt), 0)
        t1 = time.perf_counter()
        position = len(prompt)
        for _ in range(new_tokens):
            tokens.append(int(logits.argmax()))
            logits = session.step(session.embed([tokens[-1]]), position)
            position += 1
        t2 = time.perf_counter()
    decode_ms = (t2 - t1) * 1000
    return {"tokens": tokens, "model_load_ms": load_ms, "prefill_ms": (t1 - t0) * 1000, "decode_ms": decode_ms,
            "decode_steps": new_tokens, "decode_tokens_per_s": new_tokens * 1000 / decode_ms,
            "peak_rss_bytes": peak_rss_bytes()}


def bench_runner(pte: Path, runner: list[str], prompt_len: int = 128, new_tokens: int = 64, rounds: int = 3,
                 vocab: int | None = None, seed: int = 0, threads: int = 0) -> dict:
    """threads: the runner's ExecuTorch threadpool size (0: ExecuTorch's default)."""
    import random

    rng = random.Random(seed)
    prompt = [rng.randrange(1, vocab or 1000) for _ in range(prompt_len)]
    ids = ",".join(map(str, prompt))
    # native-runner maps the program (its default); native-runner-read reads it into memory
    runners = {"native-runner": [], "native-runner-read": ["--no-mmap"]}
    rows = {"python-pte": []} | {name: [] for name in runners}
    tokens = {}
    for _ in range(rounds):
        job = json.dumps({"pte": str(pte), "prompt": prompt, "new_tokens": new_tokens})
        proc = _child([sys.executable, "-m", "edgevlm.device_tests.runner_bench", job])
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        tokens["python-pte"] = row.pop("tokens")
        rows["python-pte"].append(row)
        for name, extra in runners.items():
            stats = Path(os.environ.get("TMPDIR", "/tmp")) / f"runner-bench-{os.getpid()}.json"
            _child([*runner, "--pte", str(pte), "--tokens", ids, "--max-new-tokens", str(new_tokens), "--ignore-stop",
                    "--threads", str(threads), *extra, "--json", str(stats)])
            row = json.loads(stats.read_text())
            stats.unlink()
            tokens[name] = row.pop("tokens")
            rows[name].append(row)
    best = {name: max(r, key=lambda x: x["decode_tokens_per_s"]) for name, r in rows.items()}
    return {"schema": SCHEMA, "artifact": str(pte), "prompt_tokens": prompt_len, "new_tokens": new_tokens,
            "rounds": rounds, "runner_threads": threads, "best": best, "all_rounds": rows,
            "same_tokens": all(t == tokens["python-pte"] for t in tokens.values()),
            "runner_vs_python_decode": best["native-runner"]["decode_tokens_per_s"]
            / best["python-pte"]["decode_tokens_per_s"]}


if __name__ == "__main__":  # worker mode: one JSON job on argv
    job = json.loads(sys.argv[1])
    print(json.dumps(python_generation(job["pte"], job["prompt"], job["new_tokens"])))
