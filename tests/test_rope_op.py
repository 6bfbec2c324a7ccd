"""edgevlm::rope: rotary embedding (+ the INT4 cache's Hadamard rotation) of new query/key rows.

The Python reference is checked against the rotation written out pair by pair, the ExecuTorch
kernel against the reference through real .pte programs (decode, prefill on the thread pool,
head dims 48/64/128), and bad inputs for their messages.
"""

from __future__ import annotations

import math

import pytest
import torch

from edgevlm.export.decoder.int4_attention import kernel_registered, load_kernel_library, register_op
from edgevlm.export.decoder.kv_cache import hadamard
from edgevlm.export.decoder.rope_op import rope_reference


def tables(s: int, d: int, base: float = 10000.0):
    """HF-style rotary tables [S, D]: the same angle for element i and i + D/2."""
    inv = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = torch.arange(s, dtype=torch.float64)[:, None] * inv[None]
    angles = torch.cat([angles, angles], -1)
    return angles.cos().float(), angles.sin().float()


@pytest.fixture(scope="module")
def kernels():
    load_kernel_library()
    assert kernel_registered()


def test_reference_rotates_each_pair_by_its_position_angle():
    register_op()
    b, t, h, d, start = 1, 3, 2, 8, 5
    x = torch.randn(b, t, h, d, generator=torch.Generator().manual_seed(0))
    cos, sin = tables(16, d)
    got = rope_reference(x, cos, sin, start, False)
    half = d // 2
    for ti in range(t):
        for i in range(half):
            c, s = cos[start + ti, i], sin[start + ti, i]
            lo, hi = x[:, ti, :, i], x[:, ti, :, i + half]
            assert torch.allclose(got[:, ti, :, i], lo * c - hi * s, atol=1e-6)
            assert torch.allclose(got[:, ti, :, i + half], hi * c + lo * s, atol=1e-6)
    rotated = rope_reference(x, cos, sin, start, True)
    assert torch.allclose(rotated, got @ hadamard(d), atol=1e-6)
    # a rotation then an orthonormal matrix: every row keeps its length
    assert torch.allclose(rotated.norm(dim=-1), x.norm(dim=-1), rtol=1e-5)
    assert torch.equal(torch.ops.edgevlm.rope(x, cos, sin, start, True), rotated)


class Rope(torch.nn.Module):
    """What a decoder layer does: the tables are buffers, the start position arrives as a tensor."""

    def __init__(self, s: int, d: int, rotate: bool):
        super().__init__()
        cos, sin = tables(s, d)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        self.rotate = rotate

    def forward(self, x, start_pos):
        start = start_pos[0].item()
        torch._check_is_size(start)
        torch._check(start + x.shape[1] <= self.cos.shape[0])
        return torch.ops.edgevlm.rope(x, self.cos, self.sin, start, self.rotate)


def rope_program(tmp_path, s, h, d, rotate):
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    register_op()
    seq = torch.export.Dim("seq", min=1, max=s - 1)
    exported = torch.export.export(Rope(s, d, rotate), (torch.zeros(1, 2, h, d), torch.tensor([0])),
                                   dynamic_shapes=({1: seq}, None), strict=False)
    program = to_edge_transform_and_lower(exported).to_executorch()
    assert "edgevlm.rope.out" in {str(n.target) for n in program.exported_program().graph.nodes}
    path = tmp_path / "rope.pte"
    path.write_bytes(program.buffer)
    return Runtime.get().load_program(str(path)).load_method("forward")


@pytest.mark.parametrize("h,d,rotate", [(14, 64, True), (4, 128, True), (32, 80, True), (3, 48, True),
                                        (3, 48, False), (2, 64, False)],
                         ids=["qwen-d64-hadamard", "d128-hadamard", "minicpm4-d80-block-hadamard",
                              "d48-block-hadamard", "d48-plain", "d64-plain"])
def test_executorch_kernel_matches_reference(kernels, tmp_path, h, d, rotate):
    s = 512
    method = rope_program(tmp_path, s, h, d, rotate)
    cos, sin = tables(s, d)
    gen = torch.Generator().manual_seed(d)
    # decode rows, then a prefill past the kernel's single-thread cut-off (T * H >= 256 rows)
    for t, start in [(1, 0), (1, 300), (1, s - 1), (40, 17), (200, 311)]:
        x = torch.randn(1, t, h, d, generator=gen) * 3
        got = method.execute([x, torch.tensor([start])])[0]
        expected = rope_reference(x, cos, sin, start, rotate)
        assert got.shape == expected.shape
        err = (got - expected).abs().max().item()
        assert err < 1e-5 * expected.abs().max().item() * math.sqrt(d), f"T={t} start={start}: max abs err {err}"


def test_executorch_kernel_rejects_rows_past_the_table(kernels, tmp_path, capfd):
    method = rope_program(tmp_path, 32, 2, 64, True)
    with pytest.raises(RuntimeError):
        method.execute([torch.zeros(1, 3, 2, 64), torch.tensor([30])])
    assert "rope: start_pos + new rows exceeds the rotary table" in capfd.readouterr().err


def test_bad_inputs_name_the_problem():
    register_op()
    cos, sin = tables(8, 48)
    with pytest.raises(ValueError, match=r"edgevlm::rope: head dim 47 must be even"):
        torch.ops.edgevlm.rope(torch.zeros(1, 1, 2, 47), torch.zeros(8, 47), torch.zeros(8, 47), 0, True)
    with pytest.raises(ValueError, match=r"start_pos 7 \+ 2 rows exceeds the rotary table of 8"):
        torch.ops.edgevlm.rope(torch.zeros(1, 2, 2, 48), cos, sin, 7, False)
    with pytest.raises(ValueError, match=r"cos and sin must be float32 \[S, 48\]"):
        torch.ops.edgevlm.rope(torch.zeros(1, 1, 2, 48), cos[:, :32], sin[:, :32], 0, False)
