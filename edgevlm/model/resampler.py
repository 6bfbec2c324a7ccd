"""Perceiver resampler (`resampler.*`): 64 learned queries cross-attend to one slice's patches.

Two variants share weights and names:
- 2.5-style (2.5, 2.6, 4.0): keys = features + 2D sincos position of each patch, values = features.
- 4.5 "3D": keys = features (+ a 1D sincos temporal embedding for video frames), values =
  features + 2D position; frames of one temporal group are concatenated so up to 6 frames share
  64 output tokens. (This asymmetry is what the public 4.5 implementations do.)

Positional inputs are computed on the host with numpy float32, exactly as the official code does,
so an exported artifact can take them as plain inputs (`forward_padded`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def sincos_frequencies(embed_dim: int) -> np.ndarray:
    """[embed_dim // 2] float32 frequencies of sincos_1d, as the official code computes them (numpy's
    float32 power: libm's powf on most hosts, SVML's on AVX-512 ones, an ulp apart on a few)."""
    omega = np.arange(embed_dim // 2, dtype=np.float32)
    omega /= embed_dim / 2.0
    return 1.0 / 10000 ** omega


def sincos_1d(embed_dim: int, positions: np.ndarray) -> np.ndarray:
    """[M] positions -> [M, embed_dim]: sin of the first half frequencies, then cos (float32)."""
    omega = sincos_frequencies(embed_dim)
    out = np.einsum("m,d->md", positions.reshape(-1).astype(np.float32), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


@lru_cache(maxsize=256)
def sincos_2d(embed_dim: int, h: int, w: int) -> np.ndarray:
    """[h*w, embed_dim] row-major: first half encodes the column index, second half the row."""
    cols, rows = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    emb = np.concatenate([sincos_1d(embed_dim // 2, cols), sincos_1d(embed_dim // 2, rows)], axis=1)
    emb.setflags(write=False)  # cached: never mutate
    return emb


def resampler_position_inputs(tgt_sizes, max_len: int, embed_dim: int, temporal: bool,
                              temporal_ids: list[int] | None = None):
    """(key_pos, value_pos, key_padding_mask) as numpy for slices of the given patch grids.

    temporal_ids: one per slice (-1 = not a video frame), 4.5 only. A host function (no weights),
    so runtimes feeding an exported encoder compute exactly what the eager model does.
    """
    b, d = len(tgt_sizes), embed_dim
    pos2d = np.zeros((b, max_len, d), dtype=np.float32)
    pad = np.ones((b, max_len), dtype=bool)
    for i, (h, w) in enumerate(tgt_sizes):
        pos2d[i, : h * w] = sincos_2d(d, int(h), int(w))
        pad[i, : h * w] = False
    if not temporal:
        return pos2d, np.zeros_like(pos2d), pad
    key_pos = np.zeros_like(pos2d)
    if temporal_ids is not None:
        for i, t in enumerate(temporal_ids):
            if t >= 0:
                key_pos[i, :] = sincos_1d(d, np.array([t]))[0]
    return key_pos, pos2d, pad


class Resampler(nn.Module):
    def __init__(self, num_queries: int, embed_dim: int, num_heads: int, kv_dim: int, temporal: bool = False):
        super().__init__()
        self.num_queries = num_queries
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.temporal = temporal
        self.query = nn.Parameter(torch.zeros(num_queries, embed_dim))
        self.kv_proj = nn.Linear(kv_dim, embed_dim, bias=False)
        # nn.MultiheadAttention only to own the packed in_proj/out_proj parameters under their
        # official names; the math is written out in `_attend` so it exports cleanly.
        self.attn = nn.MultiheadAttention(embed_dim, num_heads)
        self.ln_q = nn.LayerNorm(embed_dim, eps=1e-6)
        self.ln_kv = nn.LayerNorm(embed_dim, eps=1e-6)
        self.ln_post = nn.LayerNorm(embed_dim, eps=1e-6)
        self.proj = nn.Parameter(embed_dim ** -0.5 * torch.randn(embed_dim, embed_dim))

    # ---- host-side positional inputs -----------------------------------------------------------

    def position_inputs(self, tgt_sizes, max_len: int, temporal_ids: list[int] | None = None):
        return resampler_position_inputs(tgt_sizes, max_len, self.embed_dim, self.temporal, temporal_ids)

    # ---- forward --------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, tgt_sizes: torch.Tensor,
                temporal_ids: list[list[int]] | None = None) -> torch.Tensor:
        """Reference path. x [B, L, kv_dim] padded vision features; returns [G, Q, D].

        Without temporal grouping G = B (one output per slice). For 4.5 video, `temporal_ids`
        lists groups of per-frame ids ([[-1], [-1], [2, 6, 9]]); each group yields one output.
        """
        sizes = [tuple(int(v) for v in s) for s in tgt_sizes.tolist()]
        flat_ids = [t for group in temporal_ids for t in group] if temporal_ids else None
        if flat_ids is not None and len(flat_ids) != x.shape[0]:
            raise ValueError(f"temporal_ids name {len(flat_ids)} slices but x holds {x.shape[0]}")
        key_pos, value_pos, pad = (torch.from_numpy(a) for a in
                                   self.position_inputs(sizes, x.shape[1], flat_ids))
        kv = self.ln_kv(self.kv_proj(x))
        keys, values = kv + key_pos.to(kv.dtype), kv + value_pos.to(kv.dtype)
        if self.temporal and flat_ids is not None and max(flat_ids) >= 0:
            keys, values, pad = _merge_groups(keys, values, pad, [len(g) for g in temporal_ids])
        return self._attend(keys, values, pad)

    def forward_padded(self, x: torch.Tensor, key_pos: torch.Tensor, value_pos: torch.Tensor,
                       key_padding_mask: torch.Tensor) -> torch.Tensor:
        """Static-shape path: every positional input precomputed on the host (export contract)."""
        kv = self.ln_kv(self.kv_proj(x))
        return self._attend(kv + key_pos, kv + value_pos, key_padding_mask)

    def _attend(self, keys: torch.Tensor, values: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        bias = torch.zeros(key_padding_mask.shape, dtype=keys.dtype, device=keys.device)
        return self.attend(keys, values, bias.masked_fill(key_padding_mask, float("-inf")))

    def attend(self, keys: torch.Tensor, values: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        """Cross-attention of the learned queries over keys/values; key_bias [B, N] is added to the scores."""
        b, n, d = keys.shape
        h, hd = self.num_heads, d // self.num_heads
        w_q, w_k, w_v = self.attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.attn.in_proj_bias.chunk(3)
        q = F.linear(self.ln_q(self.query), w_q, b_q)  # [Q, D], shared by every slice
        q = q.view(1, self.num_queries, h, hd).transpose(1, 2).expand(b, h, self.num_queries, hd)
        k = F.linear(keys, w_k, b_k).view(b, n, h, hd).transpose(1, 2)
        v = F.linear(values, w_v, b_v).view(b, n, h, hd).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + key_bias[:, None, None, :].to(q.dtype)
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, self.num_queries, d)
        out = self.attn.out_proj(out)
        return self.ln_post(out) @ self.proj


def _merge_groups(keys, values, pad, group_sizes: list[int]):
    """Concatenate the patches of each temporal group's frames into one key/value sequence."""
    merged_k, merged_v, merged_pad, start = [], [], [], 0
    for size in group_sizes:
        end = start + size
        merged_k.append(keys[start:end].reshape(-1, keys.shape[-1]))
        merged_v.append(values[start:end].reshape(-1, values.shape[-1]))
        merged_pad.append(pad[start:end].reshape(-1))
        start = end
    pad_seq = torch.nn.utils.rnn.pad_sequence
    return (pad_seq(merged_k, batch_first=True), pad_seq(merged_v, batch_first=True),
            pad_seq(merged_pad, batch_first=True, padding_value=True))
