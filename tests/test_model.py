"""The reference model's parts against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgevlm.model.minicpmv import pad_slices
from edgevlm.model.resampler import Resampler, sincos_1d, sincos_2d
from edgevlm.preprocess import navit_position_ids

torch.manual_seed(0)


def _random_resampler(temporal=False, d=256, kv=64, heads=2, queries=8):
    r = Resampler(queries, d, heads, kv, temporal=temporal)
    with torch.no_grad():
        for p in r.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return r.eval()


def test_sincos_matches_formula():
    d, h, w = 16, 3, 5
    emb = sincos_2d(d, h, w)
    quarter = d // 4
    for r in range(h):
        for c in range(w):
            row = emb[r * w + c]
            for i in range(quarter):
                freq = 1.0 / 10000 ** (i / quarter)
                # first half: the column coordinate (sin then cos); second half: the row
                assert math.isclose(row[i], math.sin(c * freq), abs_tol=1e-6)
                assert math.isclose(row[quarter + i], math.cos(c * freq), abs_tol=1e-6)
                assert math.isclose(row[2 * quarter + i], math.sin(r * freq), abs_tol=1e-6)
                assert math.isclose(row[3 * quarter + i], math.cos(r * freq), abs_tol=1e-6)
    np.testing.assert_allclose(sincos_1d(8, np.array([0.0]))[0], [0, 0, 0, 0, 1, 1, 1, 1])


@pytest.mark.parametrize("h, w", [(70, 70), (1, 1), (32, 32), (5, 7), (1, 70), (70, 1), (35, 140)])
def test_navit_position_ids(h, w):
    ids = navit_position_ids(h, w, 70)
    assert ids.shape == (h * w,)
    rows, cols = ids // 70, ids % 70
    # independent: patch i of n covers fractional coordinate i/n, bucket = floor(i/n * 70) up to fp error
    exp_rows = torch.tensor([math.floor(i / h * 70 + 1e-4) for i in range(h)]).repeat_interleave(w)
    exp_cols = torch.tensor([math.floor(j / w * 70 + 1e-4) for j in range(w)]).repeat(h)
    assert torch.equal(rows, exp_rows) and torch.equal(cols, exp_cols)
    if (h, w) == (70, 70):
        assert torch.equal(ids, torch.arange(4900))


def test_navit_position_ids_follow_the_official_float32_step_on_every_side():
    """Issue [8/8]'s finding: the official embedding divides by a tgt_sizes *tensor* (float32 step);
    a Python-int division (float64 step) buckets sides 25, 49, 50, 55 and 58 differently. Every side
    1..70 against both arithmetics: ours must be the float32 one."""
    boundaries = torch.arange(1 / 70, 1.0, 1 / 70)
    differs = []
    for side in range(1, 71):
        ours = navit_position_ids(side, 1, 70)
        float32_step = torch.bucketize(torch.arange(0, 1 - 1e-6, 1 / torch.tensor(side, dtype=torch.int32)),
                                       boundaries, right=True) * 70
        float64_step = torch.bucketize(torch.arange(0, 1 - 1e-6, 1 / side), boundaries, right=True) * 70
        assert torch.equal(ours, float32_step), side
        if not torch.equal(ours, float64_step):
            differs.append(side)
    assert differs == [25, 49, 50, 55, 58]


def test_resampler_attention_equals_torch_multihead_attention():
    r = _random_resampler()
    x = torch.randn(3, 20, 64)
    sizes = torch.tensor([[4, 5], [2, 3], [3, 3]])
    out = r(x, sizes)
    # independent path: nn.MultiheadAttention with the same packed weights, official 2.5 formulation
    kv = r.ln_kv(r.kv_proj(x)).permute(1, 0, 2)
    pos = torch.nn.utils.rnn.pad_sequence([torch.tensor(sincos_2d(256, h, w)) for h, w in sizes.tolist()],
                                          batch_first=True)
    pos = torch.cat([pos, torch.zeros(3, 20 - pos.shape[1], 256)], 1).permute(1, 0, 2)
    mask = torch.arange(20)[None] >= (sizes[:, 0] * sizes[:, 1])[:, None]
    q = r.ln_q(r.query).unsqueeze(1).repeat(1, 3, 1)
    ref = r.attn(q, kv + pos, kv, key_padding_mask=mask)[0].permute(1, 0, 2)
    ref = r.ln_post(ref) @ r.proj
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("temporal", [False, True])
def test_resampler_padded_batch_equals_slice_by_slice(temporal):
    r = _random_resampler(temporal=temporal)
    sizes = [(4, 5), (2, 3), (7, 1), (1, 1)]
    feats = [torch.randn(h * w, 64) for h, w in sizes]
    batch = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    padded = torch.cat([batch, torch.randn(4, 5, 64) * 100], 1)  # garbage in the padding must not matter
    out = r(padded, torch.tensor(sizes))
    for i, (f, s) in enumerate(zip(feats, sizes)):
        torch.testing.assert_close(out[i], r(f[None], torch.tensor([s]))[0], atol=1e-5, rtol=1e-5)


def test_45_temporal_groups_merge_frames():
    r = _random_resampler(temporal=True)
    sizes = torch.tensor([[3, 4], [3, 4], [3, 4], [2, 2]])
    x = torch.randn(4, 12, 64)
    out = r(x, sizes, temporal_ids=[[5, 6, 9], [-1]])
    assert out.shape == (2, 8, 256)
    # group 0 by hand: keys = features + temporal sincos, values = features + 2D position, frames concatenated
    kv = r.ln_kv(r.kv_proj(x[:3]))
    t = torch.from_numpy(sincos_1d(256, np.array([5.0, 6.0, 9.0])))[:, None, :]
    pos = torch.from_numpy(sincos_2d(256, 3, 4))[None]
    keys, values = (kv + t).reshape(1, 36, 256), (kv + pos).reshape(1, 36, 256)
    torch.testing.assert_close(out[0], r._attend(keys, values, torch.zeros(1, 36, dtype=torch.bool))[0])
    # an image slice (temporal id -1) in a video batch equals the plain image path
    torch.testing.assert_close(out[1], r(x[3:, :4], sizes[3:])[0], atol=1e-5, rtol=1e-5)


def test_vision_tower_padding_is_invisible(loaded_models):
    model = loaded_models["minicpmv-2.6-tiny"].model
    sizes = torch.tensor([[3, 5], [6, 2], [1, 4]])
    slices = [torch.randn(3, 14, int(h * w) * 14) for h, w in sizes.tolist()]
    with torch.no_grad():
        batched = model.vision_features(slices, sizes)
        for i, s in enumerate(slices):
            alone = model.vision_features([s], sizes[i:i + 1])
            n = int(sizes[i].prod())
            torch.testing.assert_close(batched[i, :n], alone[0, :n], atol=1e-5, rtol=1e-5)
        # static padding to a larger fixed length changes nothing for real patches
        b, m, p = pad_slices(slices, sizes, 70, max_patches=64)
        fixed = model.vpm(b, m, p)
        torch.testing.assert_close(fixed[:, :15][m[:, :15]], batched[m[:, :15]], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["minicpmv-2.5-tiny", "minicpmv-4.5-tiny"])
def test_eager_tower_equals_the_traced_one(name, loaded_models):
    """The eager tower (transformers' Idefics2 layers) and the hand-written one the exporter traces,
    on the same parameters: bit-equal on real patches of a padded batch (grid sides where Idefics2's
    own position bucketing would differ included)."""
    from edgevlm.model.siglip import traced_copy

    loaded = loaded_models[name]
    sizes = torch.tensor([[25, 49], [7, 11], [1, 3]])
    slices = [torch.randn(3, 14, int(h * w) * 14, generator=torch.Generator().manual_seed(i))
              for i, (h, w) in enumerate(sizes.tolist())]
    b, m, p = pad_slices(slices, sizes, 70)
    with torch.no_grad():
        eager = loaded.model.vpm(b, m, p)
        traced = traced_copy(loaded.model.vpm, loaded.config.vision_config)(b, m, p)
    assert torch.equal(eager[m], traced[m])


def test_patch_rows_equal_image_patches(loaded_models):
    """A slice given as a row of patches embeds exactly like the 2-D image's patches in raster order."""
    model = loaded_models["minicpmv-2.6-tiny"].model
    image = torch.randn(1, 3, 3 * 14, 5 * 14)
    row = image.unfold(2, 14, 14).unfold(3, 14, 14)  # [1, 3, 3, 5, 14, 14]
    row = row.permute(0, 1, 4, 2, 3, 5).reshape(1, 3, 14, 15 * 14)
    conv = model.vpm.embeddings.patch_embedding
    with torch.no_grad():
        torch.testing.assert_close(conv(row).flatten(2), conv(image).flatten(2), atol=1e-5, rtol=1e-5)


def test_minicpm_scaling_reduces_to_llama_when_neutral():
    """MiniCPM's muP plumbing: with neutral factors it equals a plain transformers Llama."""
    from transformers import LlamaForCausalLM

    from edgevlm.model.llm import build_llm, hf_config
    from edgevlm.presets import get_preset

    cfg = get_preset("minicpmv-4.0-tiny").build_config().llm
    cfg.scale_emb, cfg.scale_depth, cfg.dim_model_base = 1.0, math.sqrt(cfg.num_hidden_layers), cfg.hidden_size
    cfg.rope_scaling = None
    mini = build_llm(cfg).eval()
    plain = LlamaForCausalLM(hf_config(cfg)).eval()
    plain.load_state_dict(mini.state_dict())
    ids = torch.randint(0, cfg.vocab_size, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(mini(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
    # and the real factors do change the output in the documented places
    cfg2 = get_preset("minicpmv-4.0-tiny").build_config().llm
    scaled = build_llm(cfg2).eval()
    scaled.load_state_dict(mini.state_dict())
    emb = scaled.get_input_embeddings()(ids)
    torch.testing.assert_close(emb, plain.get_input_embeddings()(ids) * cfg2.scale_emb)
    assert scaled.lm_head.divisor == cfg2.hidden_size / cfg2.dim_model_base


@pytest.mark.parametrize("name", ["minicpmv-2.5-tiny", "minicpmv-2.6-tiny", "minicpmv-4.0-tiny", "minicpmv-4.5-tiny"])
def test_incremental_decode_matches_full_forward(name, loaded_models):
    """The KV-cached step-by-step logits equal one full forward pass (the cache is used correctly)."""
    from transformers import DynamicCache

    llm = loaded_models[name].model.llm
    embeds = torch.randn(1, 12, llm.config.hidden_size) * 0.1
    with torch.no_grad():
        full = llm(inputs_embeds=embeds).logits[0]
        cache = DynamicCache(config=llm.config)
        steps = [llm(inputs_embeds=embeds[:, :8], past_key_values=cache, use_cache=True).logits[0]]
        for t in range(8, 12):
            steps.append(llm(inputs_embeds=embeds[:, t:t + 1], past_key_values=cache, use_cache=True).logits[0])
    torch.testing.assert_close(torch.cat(steps), full, atol=1e-4, rtol=1e-4)
