"""The layer-by-layer LLM builder (export/llm_build.py): AWQ equal to the whole-model oracle, the
backends' quantized forms equal to their libraries' own quantizers, the float reference it keeps,
and the checkpoint source equal to the in-memory one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from edgevlm.calibration.awq import SETTINGS, awq_scaled, calibration_embeddings
from edgevlm.export.llm_build import WeightPlan, build_llm
from edgevlm.export.llm_source import CheckpointLayers, ModuleLayers
from tests import awq_oracle

TINY = ["minicpmv-2.6-tiny", "minicpmv-4.0-tiny", "minicpmv-4.5-tiny", "minicpmv-2.5-tiny"]


def _assert_same_awq(old, old_summary, new, new_summary):
    """Same alpha per group, and the same scaled + clipped weights up to float rounding."""
    alphas = {k: v["alpha"] for k, v in old_summary["groups"].items()}
    assert {k: v["alpha"] for k, v in new_summary["groups"].items()} == alphas
    new_params = dict(new.named_parameters())
    for name, value in old.named_parameters():
        if name == "model.embed_tokens.weight":  # the built LLM holds the table as a buffer
            continue
        got = new_params[name]
        assert torch.allclose(got, value, rtol=1e-5, atol=1e-6 * value.abs().max().item()), name
    # (the oracle's clipped_fraction is always 0: it compares the weights after writing them back)
    new_clips = [c["clipped_fraction"] for g in new_summary["groups"].values() for c in g["clip"]]
    assert all(0 < f < 1 for f in new_clips)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_layerwise_awq_equals_the_whole_model_oracle(name, symmetric, loaded_models):
    loaded = loaded_models[name]
    embeddings = calibration_embeddings(loaded, count=3)
    old, old_summary = awq_oracle.awq_scaled(loaded.model.llm, embeddings, 32, symmetric=symmetric)
    new, new_summary = awq_scaled(loaded.model.llm, embeddings, 32, symmetric=symmetric)
    _assert_same_awq(old, old_summary, new, new_summary)
    assert new_summary["output_mse_awq"] == pytest.approx(old_summary["output_mse_awq"], rel=1e-3)
    x = embeddings[0][None]
    assert torch.allclose(new(inputs_embeds=x).logits, old(inputs_embeds=x).logits, atol=1e-4)


def _qwen05b_shaped(layers: int = 2, vocab: int = 4096):
    """Qwen2.5-0.5B widths (896 hidden, 14 heads of 64, 2 kv heads, 4864 MLP), few layers and a small
    vocabulary: the oracle's [512, vocab, 28] clip tensor must fit a CI runner."""
    from edgevlm.model.llm import build_llm as build_reference
    from edgevlm.presets import get_preset

    cfg = dataclasses.replace(get_preset("minicpmv-2.6-llm0.5b").config.llm, num_hidden_layers=layers,
                              vocab_size=vocab)
    torch.manual_seed(0)
    llm = build_reference(cfg).eval().requires_grad_(False)
    for p in llm.parameters():  # transformers' init leaves norms at 1 and biases at 0: vary them
        p.add_(torch.randn_like(p) * 0.02)
    return llm


@pytest.mark.slow
def test_layerwise_awq_equals_the_oracle_at_05b_width():
    llm = _qwen05b_shaped()
    g = torch.Generator().manual_seed(1)
    # 5200 tokens: the 4096-row subsample (drawn in forward order) is exercised too
    embeddings = [torch.randn(2600, 896, generator=g) * (1 + 4 * (torch.rand(896, generator=g) < 0.02))
                  for _ in range(2)]
    old, old_summary = awq_oracle.awq_scaled(llm, embeddings, 32, symmetric=True)
    new, new_summary = awq_scaled(llm, embeddings, 32, symmetric=True)
    _assert_same_awq(old, old_summary, new, new_summary)


def test_quantized_weights_equal_the_libraries_quantizers(loaded_models):
    """torchao's quantize_ and onnxruntime's MatMulNBits block quantizer give the codes the builder
    writes, block by block."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    from edgevlm.export.decoder.onnx_graph import DecoderOnnxSpec
    from edgevlm.export.quantized_modules import IntxLinear, NBitsLinear, row_blocks

    weight = torch.randn(300, 256, generator=torch.Generator().manual_seed(0))
    reference = torch.nn.Sequential(torch.nn.Linear(256, 300, bias=False))
    reference[0].weight.data = weight.clone()
    quantize_(reference, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
                                                                 weight_granularity=PerGroup(32)))
    ours = IntxLinear.from_rows(row_blocks(weight, rows=64), "8da4w", 32)  # several blocks
    torchao = reference[0].weight
    assert torch.equal(ours.qdata, torchao.qdata) and torch.equal(ours.scale, torchao.scale)
    x = torch.randn(2, 5, 256)
    assert torch.equal(ours(x), reference(x))
    # MatMulNBits: the block quantizer's layout, dequantized as the op does it
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                 DefaultWeightOnlyQuantizer)

    for symmetric in (True, False):
        nbits = NBitsLinear.from_rows(row_blocks(weight, rows=64), 32, symmetric, None)
        packed, scales, _ = DefaultWeightOnlyQuantizer(DefaultWeightOnlyQuantConfig(
            block_size=32, is_symmetric=symmetric, quant_format=QuantFormat.QOperator)).qbits_block_quant(
            weight.T.contiguous().numpy())
        assert np.array_equal(nbits.packed.numpy(), packed)
        assert np.array_equal(nbits.scales.numpy(), scales.reshape(-1))
        error = (nbits.dequantized_weight() - weight).abs().max() / weight.abs().max()
        assert 0 < error < 0.1
    assert DecoderOnnxSpec().weights == "int4"


def test_probe_logits_are_the_reference_models(loaded_models):
    for name in ("minicpmv-2.6-tiny", "minicpmv-4.0-tiny"):
        llm = loaded_models[name].model.llm
        probe = torch.randn(11, llm.config.hidden_size, generator=torch.Generator().manual_seed(3))
        built = build_llm(ModuleLayers(llm), WeightPlan("8da4w"), probes=[probe])
        with torch.no_grad():
            want = llm(inputs_embeds=probe[None]).logits[0, -1]
        assert torch.allclose(built.probe_logits[0], want, atol=1e-5 * want.abs().max().item())


@pytest.mark.parametrize("name", ["minicpmv-4.0-tiny", "minicpmv-2.6-tiny"])
def test_checkpoint_source_builds_what_the_in_memory_source_builds(name, tiny_checkpoints, loaded_models):
    """Streaming layers from the shards gives the same LLM as copying them from the loaded model."""
    from edgevlm.checkpoint.loader import CheckpointReader

    loaded = loaded_models[name]
    stream = CheckpointLayers(CheckpointReader(tiny_checkpoints[name]), loaded.config.llm)
    ids = torch.tensor([3, 17, 42, 5])
    assert torch.equal(stream.embed(ids), ModuleLayers(loaded.model.llm).embed(ids))
    embeddings = calibration_embeddings(loaded, count=2)
    plan = WeightPlan("int4", symmetric=False, embedding="int8", awq=SETTINGS["awq-fast"])
    a = build_llm(stream, plan, embeddings, [embeddings[0]])
    b = build_llm(ModuleLayers(loaded.model.llm), plan, embeddings, [embeddings[0]])
    assert torch.equal(a.probe_logits[0], b.probe_logits[0])
    state_a, state_b = a.llm.state_dict(), b.llm.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def test_int8_embedding_is_close_and_a_quarter_of_the_bytes(loaded_models):
    from edgevlm.export.quantized_modules import quantized_embedding

    table = loaded_models["minicpmv-2.6-tiny"].model.llm.get_input_embeddings().weight.detach()
    module = quantized_embedding(table, "int8", scale=12.0)
    ids = torch.arange(table.shape[0])
    got, want = module(ids), table * 12.0
    assert (got - want).abs().max() <= (want.abs().amax(-1, keepdim=True) / 127 / 2 + 1e-6).max()
    stored = module.codes.nbytes + module.scales.nbytes
    assert stored < 0.3 * table.float().nbytes


def test_one_source_serves_several_builds(loaded_models):
    """A build fills its own copy of the skeleton: the next build from the same source starts clean."""
    llm = loaded_models["minicpmv-4.0-tiny"].model.llm  # MiniCPM4: the embedding scale must survive
    source = ModuleLayers(llm)
    probe = torch.randn(6, llm.config.hidden_size, generator=torch.Generator().manual_seed(5))
    first = build_llm(source, WeightPlan("8da4w", embedding="int8"), probes=[probe])
    second = build_llm(source, WeightPlan("fp32"), probes=[probe])
    ids = torch.tensor([1, 2, 3])
    assert torch.allclose(second.llm.get_input_embeddings()(ids), llm.get_input_embeddings()(ids))
    assert torch.equal(first.probe_logits[0], second.probe_logits[0])
    assert type(second.llm.model.layers[0].self_attn.q_proj) is torch.nn.Linear


def _lower(module, width, share=True):
    import contextlib

    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    from edgevlm.export.decoder.pte import share_constants_in_lowering

    seq = torch.export.Dim("seq", min=1, max=64)
    exported = torch.export.export(module, (torch.zeros(1, 4, width),), dynamic_shapes=({1: seq},), strict=False)
    with share_constants_in_lowering() if share else contextlib.nullcontext():
        program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()],
                                              compile_config=EdgeCompileConfig(_check_ir_validity=False)).to_executorch()
    graph = program.exported_program().graph_module
    return [getattr(graph, n).processed_bytes for n, _ in graph.named_children() if n.startswith("lowered_module")]


def test_plain_int4_linears_lower_to_torchaos_xnnpack_program():
    """IntxLinear (plain buffers) gives XNNPACK byte for byte the program torchao's tensor subclass gives
    it, so decode speed is the same by construction; sharing constants in the lowering changes nothing."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    from edgevlm.export.quantized_modules import IntxLinear, row_blocks

    g = torch.Generator().manual_seed(0)
    w1, w2 = torch.randn(384, 256, generator=g), torch.randn(256, 384, generator=g)
    reference = torch.nn.Sequential(torch.nn.Linear(256, 384, bias=False), torch.nn.SiLU(),
                                    torch.nn.Linear(384, 256, bias=False))
    reference[0].weight.data, reference[2].weight.data = w1.clone(), w2.clone()
    quantize_(reference, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(32)))
    ours = torch.nn.Sequential(IntxLinear.from_rows(row_blocks(w1), "8da4w", 32), torch.nn.SiLU(),
                               IntxLinear.from_rows(row_blocks(w2), "8da4w", 32))
    blobs = _lower(ours, 256)
    assert len(blobs) == 1 and blobs == _lower(reference, 256) == _lower(ours, 256, share=False)
