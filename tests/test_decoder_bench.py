"""The decoder's `custom` attention mode (ExecuTorch custom ops), the decoder benchmark and the KV-cache
comparison, on tiny presets with tiny contexts (correctness only: numbers come from the commands)."""

from __future__ import annotations

import pytest
import torch

from edgevlm.export.decoder.graph import ExportDecoder
from edgevlm.export.decoder.kv_cache import KVCacheSpec, auto_group_size


@pytest.mark.parametrize("preset", ["minicpmv-2.6-tiny", "minicpmv-4.0-tiny", "minicpmv-4.5-tiny"])
def test_custom_attention_matches_static_for_every_cache_format(loaded_models, preset):
    llm = loaded_models[preset].model.llm
    embeds = torch.randn(1, 9, llm.config.hidden_size, generator=torch.Generator().manual_seed(0))
    head_dim = loaded_models[preset].config.llm.resolved_head_dim
    group = auto_group_size(head_dim)  # 16 for MiniCPM4's 80, else 32
    for cache in (KVCacheSpec("fp32"), KVCacheSpec("fp16"), KVCacheSpec("int8", group),
                  KVCacheSpec("int4", group, True), KVCacheSpec("int4", head_dim // 2, False)):
        static = ExportDecoder(llm, 48, cache).eval()
        custom = ExportDecoder(llm, 48, cache, attention="custom").eval()
        with torch.no_grad():
            # prefill, two decode steps, a 3-token chunk; then reset and prefill again
            for chunk, pos in [(embeds, 0), (embeds[:, :1], 9), (embeds[:, 1:2], 10), (embeds[:, 2:5], 11)]:
                torch.testing.assert_close(custom(chunk, torch.tensor([pos])), static(chunk, torch.tensor([pos])),
                                           atol=2e-5, rtol=1e-4)
            static.reset()
            custom.reset()
            torch.testing.assert_close(custom(embeds[:, :4], torch.tensor([0])), static(embeds[:, :4], torch.tensor([0])),
                                       atol=2e-5, rtol=1e-4)


def test_custom_attention_reads_only_the_context(loaded_models):
    """Rows past start_pos + T must not matter (the static mode masks them; the custom mode never reads them)."""
    llm = loaded_models["minicpmv-2.6-tiny"].model.llm
    decoder = ExportDecoder(llm, 32, KVCacheSpec("int4", 32), attention="custom").eval()
    embeds = torch.randn(1, 6, llm.config.hidden_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = decoder(embeds, torch.tensor([0]))
        decoder.reset()
        for cache in decoder.caches:  # garbage beyond the prompt
            cache.k_codes[:, 6:] = 255
            cache.v_scale[:, 6:] = 1e4
        after = decoder(embeds, torch.tensor([0]))
    torch.testing.assert_close(before, after)


@pytest.mark.slow
def test_decoder_bench_result_validates_and_pte_matches_eager(loaded_models, tiny_checkpoints, tmp_path):
    from edgevlm.device_tests.decoder_bench import BenchPlan, bench_decoder
    from edgevlm.device_tests.schema import validate_bench
    from edgevlm.export.decoder.pte import load_pte_method

    plan = BenchPlan(prompts=(8,), contexts=(8, 24), weights="fp32", caches=("int4",), seq_len=32,
                     prefill_runs=1, prefill_warmup=0, decode_runs=2, decode_warmup=0, optimum=False)
    report = bench_decoder(tiny_checkpoints["minicpmv-2.6-tiny"], tmp_path / "work", plan)
    validate_bench(report)
    runtimes = {r["runtime"].split(":")[0]: r for r in report["results"]}
    assert set(runtimes) == {"pytorch-eager", "edgevlm-executorch"}
    for r in runtimes.values():
        assert r["status"] == "ok", r.get("reason")
        assert set(r["decoder"]["decode"]) == {"8", "24"} and r["decoder"]["peak_rss_mib"] > 0
        # two round-robin rounds; the reported decode time is the faster round's
        assert len(r["decoder"]["rounds"]) == 2
        assert all(t["median_ms"] == min(rd["decode"][c] for rd in r["decoder"]["rounds"])
                   for c, t in r["decoder"]["decode"].items())
        for t in r["decoder"]["decode"].values():
            # the roofline is taken against the better of the two samples beside the timing, and the
            # stricter one against the best sample of the run (same bytes, more bandwidth, lower %)
            before, after = t["read_bandwidth_gb_s"]
            assert t["roofline"]["gb_s"] == max(before, after) > 0 and t["roofline"]["bytes_per_token"] > 0
            assert t["roofline_run_best"]["gb_s"] == report["device"]["read_bandwidth"]["gb_s"] >= max(before, after)
            assert t["roofline_run_best"]["percent"] <= t["roofline"]["percent"]
            assert t["roofline"]["percent"] == pytest.approx(
                100 * t["roofline"]["bytes_per_token"] / (t["roofline"]["gb_s"] * 1e9) * 1000 / t["median_ms"])
    pte = runtimes["edgevlm-executorch"]
    assert pte["kv_cache"]["format"] == "int4" and pte["artifact_bytes"] > 0
    bandwidth = report["device"]["read_bandwidth"]
    assert len(bandwidth["worker_samples_gb_s"]) == 2 * 2 * 2 * 2  # runtimes x rounds x contexts x (before, after)
    assert bandwidth["gb_s"] == max(bandwidth["samples_gb_s"] + bandwidth["worker_samples_gb_s"]) > 0
    for r in runtimes.values():  # the worker's bandwidth buffer was left out of its peak RSS
        assert r["decoder"]["peak_rss_includes_bandwidth_buffer"] is False
    assert set(report["comparison"]) == {"int4_vs_fp32_cache"}  # one cache format here, no optimum run

    # the benchmarked program computes what the eager decoder computes (INT4 cache, custom attention)
    llm = loaded_models["minicpmv-2.6-tiny"].model.llm
    method = load_pte_method(pte["artifact"], "text_decoder")
    eager = ExportDecoder(llm, 32, KVCacheSpec("int4", 32, True)).eval()
    embeds = torch.randn(1, 5, llm.config.hidden_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for chunk, pos in [(embeds, 0), (embeds[:, :1], 5)]:
            torch.testing.assert_close(method.execute([chunk, torch.tensor([pos])])[0],
                                       eager(chunk, torch.tensor([pos])), atol=1e-4, rtol=1e-4)

    bad = dict(report, results=[{"runtime": "x", "status": "ok"}])
    with pytest.raises(Exception, match="valid"):
        validate_bench(bad)


def test_kv_compare_orders_formats_by_bits(loaded_models):
    from edgevlm.device_tests.kv_compare import compare_caches

    report = compare_caches(loaded_models["minicpmv-2.6-tiny"], prompts=("What shapes are in the picture?",))
    rows = {r["format"]: r for r in report["formats"]}
    err = {name: r["rel_error_mean"] for name, r in rows.items() if r["status"] == "ok"}
    assert 0 < err["edgevlm fp16"] < err["edgevlm int8 per-token g32"] < err["edgevlm int4 per-token g32"]
    assert err["edgevlm int4 per-token g32"] < err["edgevlm int4 per-token g64"]  # coarser groups, more error
    assert err["executorch int8 QuantizedKVCache (per-token asym)"] < err["edgevlm int4 per-token g32"]
    assert rows["edgevlm int4 per-token g32"]["bytes_per_token"] < rows["edgevlm int8 per-token g32"]["bytes_per_token"]
    turbo = rows["executorch TurboQuant TQ4 (4-bit codebook + bf16 norm)"]
    assert turbo["status"] == "ok" and err["edgevlm int8 per-token g32"] < turbo["rel_error_mean"] < 0.5
    assert report["prompt_tokens"][0] > 64  # the demo image's slices are in the prompt


def test_peak_rss_leaves_out_the_bandwidth_samples_buffer():
    """The worker samples bandwidth with a 512 MiB buffer beside each decode timing; the runtime's
    reported peak must not grow by it (but must still see what the runtime itself allocates)."""
    import numpy as np

    from edgevlm.device_tests.decoder_worker import PeakRss

    PeakRss().beside(lambda: None)  # earlier tests' peak: reset the mark to what is resident now
    peak = PeakRss()
    start = peak.kib()
    assert peak.beside(lambda: float(np.ones(384 * 2**20 // 8).sum())) == 384 * 2**20 // 8
    assert peak.includes_samples is False and peak.kib() < start + 64 * 1024
    kept = np.ones(256 * 2**20 // 8)  # the runtime's own allocation still counts
    assert peak.kib() >= start + 200 * 1024 and kept.sum() > 0


def test_rope_and_hadamard_as_linear_layers_are_exact():
    """The custom mode writes rotate_half and the key/query Hadamard rotation as F.linear (one XNNPACK
    fully-connected node each): the same numbers as the slices and the matmul."""
    import torch.nn.functional as F

    from edgevlm.export.decoder.graph import rotate_half
    from edgevlm.export.decoder.custom_ops_attention import rotate_half_weight
    from edgevlm.export.decoder.kv_cache import hadamard

    for head_dim in (64, 128, 48):
        x = torch.randn(2, 3, 5, head_dim, generator=torch.Generator().manual_seed(head_dim)) * 1e3
        assert torch.equal(F.linear(x, rotate_half_weight(head_dim)), rotate_half(x))
    h = hadamard(64)
    assert torch.equal(h, h.T)


def test_gemv_stream_programs_hold_packed_int4_weights(tmp_path):
    """The GEMV streaming benchmark's programs carry 4.5-bit weights (an fp32 fallback would be ~7x
    the size) and time into the JSON its report promises."""
    from edgevlm.device_tests.gemv_stream import build_programs, time_programs

    programs = build_programs("minicpmv-2.6-tiny", tmp_path)
    assert set(programs) == {"layers", "lm_head", "resident"}
    for name, program in programs.items():
        size = program["path"].stat().st_size
        assert program["weight_bytes"] <= size < 1.3 * program["weight_bytes"] + 64 * 1024, (name, size)
    (row,) = time_programs(programs, rounds=1, calls=2)
    assert row["read_bandwidth_gb_s"] > 0
    assert all(row[name]["weight_gb_s"] > 0 and row[name]["median_ms"] > 0 for name in programs)
