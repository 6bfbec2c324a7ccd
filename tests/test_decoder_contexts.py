"""decoder_contexts on a real tiny .pte export through PteDecoderSession (the macos device's decoder path)."""

from __future__ import annotations

import json

import pytest

from edgevlm.device_tests.decoder_contexts import decoder_contexts
from edgevlm.export.decoder.session import PteDecoderSession


def _session(export):
    manifest = json.loads((export / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["file"].endswith(".pte"))
    return PteDecoderSession(export, entry), entry


def test_prefill_and_decode_per_context(int4_kv_export):
    session, entry = _session(int4_kv_export)
    vocab, limit = entry["outputs"][0]["shape"][-1], entry["kv_cache"]["max_seq_len"]
    report = decoder_contexts(session, [8, 40], decode_tokens=5, vocab=vocab, max_seq_len=limit)
    assert list(report["contexts"]) == ["8", "40"]
    for context, row in report["contexts"].items():
        assert row["prefill_ms"] > 0 and row["prefill_tokens_per_s"] == pytest.approx(int(context) * 1000 / row["prefill_ms"])
        assert row["decode"]["runs"] == 5 and row["decode"]["tokens_per_s"] == pytest.approx(1000 / row["decode"]["median_ms"])
        assert len(row["tokens"]) == 6 and all(0 <= t < vocab for t in row["tokens"])
    names = [p["name"] for p in report["phases"]]
    assert names == ["prefill:8", "decode:8", "prefill:40", "decode:40"]
    ends = [(p["start_s"], p["end_s"]) for p in report["phases"]]
    assert all(a <= b for a, b in ends) and all(ends[i][1] <= ends[i + 1][0] for i in range(len(ends) - 1))
    # a context's prompt and result do not depend on the contexts timed before it in the session
    fresh = decoder_contexts(_session(int4_kv_export)[0], [40], decode_tokens=5, vocab=vocab, max_seq_len=limit)
    assert fresh["contexts"]["40"]["tokens"] == report["contexts"]["40"]["tokens"]


def test_contexts_that_do_not_fit_the_cache_are_refused(int4_kv_export):
    session, entry = _session(int4_kv_export)
    limit = entry["kv_cache"]["max_seq_len"]
    with pytest.raises(ValueError, match=f"exceeds the cache \\({limit} positions\\)"):
        decoder_contexts(session, [limit - 2], decode_tokens=4, vocab=10, max_seq_len=limit)
