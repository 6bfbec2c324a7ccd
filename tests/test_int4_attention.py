"""edgevlm::int4_sdpa and edgevlm::int4_update_cache: attention over, and writes into, a packed INT4 KV cache.

The Python reference is checked against dequantize + torch's scaled_dot_product_attention, the
ExecuTorch kernel (compiled with g++ and loaded into executorch.runtime) against the reference
through real .pte programs, and the build cache and input errors directly.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgevlm.errors import EdgeVLMError
from edgevlm.export.decoder.int4_attention import (
    build_kernel_library,
    int4_sdpa_reference,
    kernel_registered,
    load_kernel_library,
    register_op,
)
from edgevlm.export.decoder.kv_cache import dequantize, quantize


def make_case(b, t, h, hkv, d, group, s, seed=0):
    """q [B, T, H, D] and (k_codes, k_scale, k_zero, v_codes, v_scale, v_zero) for S positions."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, t, h, d, generator=gen)
    cache = []
    for _ in ("k", "v"):
        cache += quantize(torch.randn(b, s, hkv, d, generator=gen) * 2 + 0.5, 4, group)
    return q, tuple(cache)


def sdpa_expected(q, cache, start, scale):
    """Dequantize the whole cache, keep positions < start + T, causal GQA attention by torch."""
    k_codes, k_scale, k_zero, v_codes, v_scale, v_zero = cache
    t, d = q.shape[1], q.shape[3]
    group = d // k_scale.shape[-1]
    end = start + t
    k = dequantize(k_codes, k_scale, k_zero, 4, group)[:, :end].transpose(1, 2)  # [B, Hkv, end, D]
    v = dequantize(v_codes, v_scale, v_zero, 4, group)[:, :end].transpose(1, 2)
    mask = torch.arange(end) <= start + torch.arange(t)[:, None]
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, attn_mask=mask, scale=scale, enable_gqa=True)
    return out.transpose(1, 2)


@pytest.fixture(scope="module")
def kernels():
    """The torch op and the ExecuTorch kernel, registered once for the module."""
    load_kernel_library()
    assert kernel_registered()


# --- Python reference ---------------------------------------------------------------------------

@pytest.mark.parametrize("t,start,s,h,hkv,d,group", [
    (1, 0, 1, 4, 2, 64, 32),  # first token, cache narrowed to start + T
    (1, 37, 64, 4, 2, 64, 32),  # decode in a static cache longer than start + T
    (1, 20, 21, 14, 2, 64, 32),  # Qwen2.5-0.5B heads, narrowed cache
    (6, 0, 6, 4, 4, 64, 64),  # prefill from 0, H == Hkv
    (5, 11, 40, 6, 2, 32, 16),  # prefill at start_pos > 0 in a static cache
])
def test_reference_matches_dequantized_sdpa(t, start, s, h, hkv, d, group):
    register_op()
    q, cache = make_case(2, t, h, hkv, d, group, s, seed=t * 100 + start)
    scale = d ** -0.5
    expected = sdpa_expected(q, cache, start, scale)
    got = torch.ops.edgevlm.int4_sdpa(q, *cache, start, scale)
    assert got.shape == q.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    out = torch.empty(0)
    returned = torch.ops.edgevlm.int4_sdpa.out(q, *cache, start, scale, out=out)
    assert returned is out
    torch.testing.assert_close(out, got, atol=0, rtol=0)


def test_reference_ignores_positions_past_the_new_tokens():
    register_op()
    q, cache = make_case(1, 2, 4, 2, 64, 32, 30)
    changed = [x.clone() for x in cache]
    for x in changed:
        x[:, 12:] = x[:, 12:].flip(0) + 1  # garbage from position start + T = 12 on
    torch.testing.assert_close(torch.ops.edgevlm.int4_sdpa(q, *cache, 10, 0.125),
                               torch.ops.edgevlm.int4_sdpa(q, *changed, 10, 0.125), atol=0, rtol=0)


def test_register_op_is_idempotent():
    q, cache = make_case(1, 2, 4, 2, 64, 32, 30)
    register_op()
    first = torch.ops.edgevlm.int4_sdpa(q, *cache, 10, 0.125)
    register_op()  # a second registration neither raises nor replaces the kernels
    out = torch.empty_like(first)
    torch.ops.edgevlm.int4_sdpa.out(q, *cache, 10, 0.125, out=out)
    torch.testing.assert_close(torch.ops.edgevlm.int4_sdpa.default(q, *cache, 10, 0.125), first, atol=0, rtol=0)
    torch.testing.assert_close(out, first, atol=0, rtol=0)


@pytest.mark.parametrize("mutate,message", [
    (lambda c: (c[0].float(),) + c[1:], r"k_codes must be uint8 \[B, S, Hkv, D/2\].*torch.float32"),
    (lambda c: (c[0][..., :16],) + c[1:], r"k_codes last dim must be head_dim/2 = 64/2.*got 16"),
    (lambda c: c[:4] + (c[4].float(),) + c[5:], r"v_scale must be float16"),
    (lambda c: c[:3] + (c[3][:, :, :1],) + c[4:], r"v_codes must have the same \[S, Hkv\]"),
])
def test_bad_inputs_name_the_problem(mutate, message):
    register_op()
    q, cache = make_case(1, 1, 4, 2, 64, 32, 16)
    with pytest.raises(ValueError, match=message):
        torch.ops.edgevlm.int4_sdpa(q, *mutate(cache), 3, 0.125)


def test_start_pos_past_the_cache_is_rejected():
    register_op()
    q, cache = make_case(1, 2, 4, 2, 64, 32, 16)
    with pytest.raises(ValueError, match=r"start_pos 15 \+ 2 new tokens exceeds the cache length 16"):
        torch.ops.edgevlm.int4_sdpa(q, *cache, 15, 0.125)
    with pytest.raises(ValueError, match=r"query heads 4 must be a multiple of kv heads 3"):
        q3, cache3 = make_case(1, 1, 4, 3, 64, 32, 16)
        torch.ops.edgevlm.int4_sdpa(q3, *cache3, 0, 0.125)


# --- ExecuTorch kernel ----------------------------------------------------------------------------

class Attention(torch.nn.Module):
    """What a decoder layer does with the cache: the start position arrives as a tensor."""

    def __init__(self, t: int, s: int, scale: float):
        super().__init__()
        self.t, self.s, self.scale = t, s, scale

    def forward(self, q, k_codes, k_scale, k_zero, v_codes, v_scale, v_zero, start_pos):
        start = start_pos[0].item()
        torch._check(start >= 0)
        torch._check(start + self.t <= self.s)
        return torch.ops.edgevlm.int4_sdpa(q, k_codes, k_scale, k_zero, v_codes, v_scale, v_zero, start,
                                           self.scale)


def write_program(path, q, cache, t, s, scale):
    from executorch.exir import to_edge_transform_and_lower

    example = (q, *cache, torch.tensor([0]))
    exported = torch.export.export(Attention(t, s, scale), example, strict=False)
    program = to_edge_transform_and_lower(exported).to_executorch()
    ops = {str(n.target) for n in program.exported_program().graph.nodes if n.op == "call_function"}
    assert "edgevlm.int4_sdpa.out" in ops  # to_executorch picked the .out overload
    path.write_bytes(program.buffer)
    return path


def load_method(path):
    from executorch.runtime import Runtime

    return Runtime.get().load_program(str(path)).load_method("forward")


@pytest.fixture
def threads(request):
    """Resize ExecuTorch's thread pool for one test (more threads than kv heads: positions get split)."""
    from executorch.extension.pybindings import portable_lib

    before = portable_lib._threadpool_get_thread_count()
    if request.param:
        portable_lib._unsafe_reset_threadpool(request.param)
    yield request.param
    if request.param:
        portable_lib._unsafe_reset_threadpool(before)


@pytest.mark.parametrize("b,t,h,hkv,d,group,s,starts,threads", [
    (1, 1, 4, 2, 64, 32, 64, (0, 17, 63), None),  # decode: two rows per kv head, dot products
    (1, 9, 4, 2, 64, 32, 64, (30, 0, 55), None),  # prefill at start_pos > 0: 18 rows, two row tiles
    (1, 1, 14, 2, 64, 32, 1100, (5, 700, 1099), 8),  # Qwen2.5-0.5B decode, positions split over threads
    (2, 3, 2, 2, 128, 128, 40, (37, 0), None),  # batch 2, MHA, head_dim 128
    (1, 4, 6, 3, 48, 16, 50, (9, 46), None),  # a shape without a specialization: generic loops
    (1, 1, 32, 2, 80, 16, 300, (0, 150, 299), 8),  # MiniCPM4 decode: head_dim 80, groups of 16
    (1, 7, 32, 2, 80, 16, 64, (0, 40), None),  # MiniCPM4 prefill
], ids=["decode", "prefill", "qwen-decode-split", "batch2-d128", "generic-d48", "minicpm4-d80-decode",
        "minicpm4-d80-prefill"], indirect=["threads"])
def test_executorch_kernel_matches_reference(kernels, tmp_path, b, t, h, hkv, d, group, s, starts, threads):
    scale = d ** -0.5
    q, cache = make_case(b, t, h, hkv, d, group, s, seed=s)
    method = load_method(write_program(tmp_path / "int4_sdpa.pte", q, cache, t, s, scale))
    for start in starts:  # one program, several start positions
        q = torch.randn(b, t, h, d, generator=torch.Generator().manual_seed(start))
        got = method.execute([q, *cache, torch.tensor([start])])[0]
        expected = int4_sdpa_reference(q, *cache, start, scale)
        assert got.shape == expected.shape
        err = (got - expected).abs().max().item()
        assert err < 1e-4 * expected.abs().max().item(), f"start_pos {start}: max abs err {err}"


def test_executorch_kernel_rejects_start_pos_past_the_cache(kernels, tmp_path, capfd):
    q, cache = make_case(1, 2, 4, 2, 64, 32, 16)
    method = load_method(write_program(tmp_path / "int4_sdpa.pte", q, cache, 2, 16, 0.125))
    with pytest.raises(RuntimeError):
        method.execute([q, *cache, torch.tensor([15])])
    assert "start_pos 15 + 2 new tokens exceeds the cache length 16" in capfd.readouterr().err


class CacheWrite(torch.nn.Module):
    """A layer's cache write: buffers updated in place at a start position that arrives as a tensor."""

    def __init__(self, s: int, hkv: int, d: int, group: int):
        super().__init__()
        self.register_buffer("codes", torch.zeros(1, s, hkv, d // 2, dtype=torch.uint8))
        self.register_buffer("scale", torch.zeros(1, s, hkv, d // group, dtype=torch.float16))
        self.register_buffer("zero", torch.zeros(1, s, hkv, d // group, dtype=torch.float16))

    def forward(self, value, start_pos):
        start = start_pos[0].item()
        torch._check_is_size(start)
        torch._check(start + value.shape[1] <= self.codes.shape[1])
        torch.ops.edgevlm.int4_update_cache(value, self.codes, self.scale, self.zero, start)
        return self.codes.clone(), self.scale.clone(), self.zero.clone()


@pytest.mark.parametrize("d,group", [(64, 32), (80, 16)], ids=["d64-g32", "minicpm4-d80-g16"])
def test_update_cache_kernel_is_bit_exact_with_the_reference(kernels, tmp_path, d, group):
    """edgevlm::int4_update_cache in ExecuTorch writes the codes, scales and zeros kv_cache.quantize
    gives, byte for byte, at the start position, keeps earlier rows, and takes prefill and decode
    through one program (the mutation lands in the program's own buffers)."""
    from executorch.exir import to_edge_transform_and_lower

    s, hkv = 24, 2
    seq = torch.export.Dim("seq", min=1, max=s - 1)
    exported = torch.export.export(CacheWrite(s, hkv, d, group), (torch.zeros(1, 3, hkv, d), torch.tensor([0])),
                                   dynamic_shapes=({1: seq}, None), strict=False)
    program = to_edge_transform_and_lower(exported).to_executorch()
    assert "edgevlm.int4_update_cache.out" in {str(n.target) for n in program.exported_program().graph.nodes}
    (tmp_path / "write.pte").write_bytes(program.buffer)
    method = load_method(tmp_path / "write.pte")
    eager = CacheWrite(s, hkv, d, group)
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(1, 9, hkv, d, generator=gen) * 3
    rows[0, 2, 1, :group] = 0.25  # a constant group: the scale clamps to its floor
    for value, start in [(rows[:, :7], 0), (rows[:, 7:8], 7), (rows[:, 8:9] * 40, 8)]:
        got = method.execute([value, torch.tensor([start])])
        expected = eager(value, torch.tensor([start]))
        for g, e in zip(got, expected):
            assert torch.equal(g, e)
    codes, scale, zero = quantize(rows[:, :8], 4, group)
    assert torch.equal(got[0][:, :8], codes) and torch.equal(got[1][:, :8], scale)


def test_update_cache_rejects_a_mismatched_cache():
    register_op()
    codes = torch.zeros(1, 8, 2, 16, dtype=torch.uint8)  # D/2 = 16: a 32-wide head
    scale = torch.zeros(1, 8, 2, 1, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"codes must be uint8 \[B, S, Hkv, D/2\] for D=64"):
        torch.ops.edgevlm.int4_update_cache(torch.zeros(1, 1, 2, 64), codes, scale, scale.clone(), 0)
    with pytest.raises(ValueError, match=r"start_pos 8 \+ 1 rows exceeds the cache length 8"):
        torch.ops.edgevlm.int4_update_cache(torch.zeros(1, 1, 2, 32), codes, scale, scale.clone(), 8)


# --- build ----------------------------------------------------------------------------------------

def test_build_reuses_the_cached_library(tmp_path, monkeypatch):
    from edgevlm.export.manifest import sha256_path

    monkeypatch.setenv("EDGEVLM_HOME", str(tmp_path))
    first = build_kernel_library()
    assert first.is_file() and first.is_relative_to(tmp_path / "kernels")
    built = first.stat().st_mtime_ns
    second = build_kernel_library()
    assert second == first and second.stat().st_mtime_ns == built
    assert not [p.name for p in first.parent.iterdir() if p.name.endswith(".tmp")]  # no temp files left behind
    assert (first.parent / f"{first.name}.sha256").read_text().split()[0] == sha256_path(first)  # its record


def test_missing_compiler_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVLM_HOME", str(tmp_path))
    monkeypatch.setenv("EDGEVLM_CXX", str(tmp_path / "no-such-g++"))
    with pytest.raises(EdgeVLMError, match="not found") as err:
        build_kernel_library()
    assert "apt-get install g++" in err.value.fix
