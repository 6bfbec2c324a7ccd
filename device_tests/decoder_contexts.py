"""Prefill and decode speed of one decoder session at several context lengths (in-process).

Used where the decoder runs in this Python process (the macos device: the .pte through
PteDecoderSession on an M4; any DecoderSession works). Per context C, on an emptied cache: prefill C
prompt tokens at position 0 (embedding included, as `edgevlm run` does it), then `decode_tokens`
greedy one-token steps at positions C, C+1, ... Each phase's wall-clock span is recorded in epoch
seconds, so a power sampler running beside it (powermetrics) can be attributed per phase.
"""

from __future__ import annotations

import random
import time

from edgevlm.stats import timing_summary


def decoder_contexts(session, contexts: list[int], decode_tokens: int, vocab: int, max_seq_len: int | None = None,
                     seed: int = 0) -> dict:
    """{"contexts": {str(C): {prefill_ms, prefill_tokens_per_s, decode: timing summary + tokens_per_s,
    tokens}}, "phases": [{name, start_s, end_s}]}. Prompt ids are seeded random ids in [1, vocab)."""
    if decode_tokens < 1 or not contexts:
        raise ValueError("decoder_contexts needs at least one context and one decode token")
    if max_seq_len is not None and max(contexts) + decode_tokens > max_seq_len:
        raise ValueError(f"context {max(contexts)} + {decode_tokens} decode tokens exceeds the cache "
                         f"({max_seq_len} positions)")
    results, phases = {}, []
    for context in contexts:
        rng = random.Random(seed * 1_000_003 + context)  # a context's prompt does not depend on the others
        prompt = [rng.randrange(1, vocab) for _ in range(context)]
        session.reset()
        with session.running():
            start = time.time()
            t0 = time.perf_counter()
            logits = session.step(session.embed(prompt), 0)
            token = int(logits.argmax())
            prefill_ms = (time.perf_counter() - t0) * 1000
            phases.append({"name": f"prefill:{context}", "start_s": start, "end_s": time.time()})
            steps, tokens = [], [token]
            start = time.time()
            for position in range(context, context + decode_tokens):
                t0 = time.perf_counter()
                token = int(session.step(session.embed([token]), position).argmax())
                steps.append((time.perf_counter() - t0) * 1000)
                tokens.append(token)
            phases.append({"name": f"decode:{context}", "start_s": start, "end_s": time.time()})
        decode = timing_summary(steps, warmup=0)
        results[str(context)] = {"prefill_ms": prefill_ms, "prefill_tokens_per_s": context * 1000 / prefill_ms,
                                 "decode": decode | {"tokens_per_s": 1000 / decode["median_ms"]},
                                 "tokens": tokens}  # greedy ids: prefill's, then one per decode step
    return {"contexts": results, "decode_tokens": decode_tokens, "phases": phases}
