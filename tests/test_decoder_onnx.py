"""ONNX decoder (ONNX Runtime CPU): parity with ExportDecoder, MatMulNBits weights, INT4 KV as graph
I/O, generation from ONNX artifacts alone, and recipe validation."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import onnx
import pytest
import torch
import yaml

from edgevlm.errors import ConfigError
from edgevlm.export.decoder.graph import ExportDecoder
from edgevlm.export.decoder.onnx_graph import (DecoderOnnxSpec, export_decoder_onnx, op_census, quantize_weights,
                                               session)
from edgevlm.export.decoder.stateless import empty_cache
from edgevlm.export.driver import export_model
from edgevlm.export.decoder.kv_cache import KVCacheSpec
from edgevlm.export.manifest import read_manifest
from edgevlm.export.recipes import load_recipe
from edgevlm.export.run import ArtifactRunner, first_divergence
from edgevlm.export.verify import PASS, verify_artifacts

MAX_SEQ = 128


def _recipe(tmp_path, decoder: dict):
    data = {"name": "ort-test", "vision": [{"backend": "ort", "precision": "fp32"}], "decoder": [decoder]}
    path = tmp_path / "ort-test.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_recipe(str(path))


def _run_onnx(sess, steps, past):
    """Feed (embeds, pos) steps through the graph, cache outputs back in; returns the logits per step."""
    names = [i.name for i in sess.get_inputs()]
    out = []
    for embeds, pos in steps:
        result = sess.run(None, dict(zip(names, [embeds.numpy(), np.array([pos], dtype=np.int64)] + past)))
        out.append(result[0])
        past = result[1:]
    return out


def _run_torch(decoder, steps):
    decoder.reset()
    with torch.no_grad():
        return [decoder(embeds, torch.tensor([pos])).numpy() for embeds, pos in steps]


def _steps(hidden, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(1, 9, hidden, generator=g), 0), (torch.randn(1, 1, hidden, generator=g), 9),
            (torch.randn(1, 1, hidden, generator=g), 10)]


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def fp32_artifacts(tiny_checkpoints, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx-run")
    recipe = _recipe(root, {"backend": "ort", "weights": "fp32", "kv_cache": "fp32", "max_seq_len": 256})
    return export_model(tiny_checkpoints["minicpmv-2.6-tiny"], recipe, root / "out")


@pytest.fixture(scope="module")
def qwen2_int4_kv(loaded_models, tmp_path_factory):
    """2.6-tiny (Qwen2) with fp32 weights and an INT4 KV cache: (llm, spec, .onnx path)."""
    llm = loaded_models["minicpmv-2.6-tiny"].model.llm.float().eval()
    spec = DecoderOnnxSpec(max_seq_len=MAX_SEQ, weights="fp32", cache=KVCacheSpec("int4", 32, True))
    path = tmp_path_factory.mktemp("onnx-kv") / "decoder.onnx"
    export_decoder_onnx(llm, spec, path)
    return llm, spec, path


def test_onnx_artifacts_reproduce_reference_tokens(fp32_artifacts, loaded_models):
    from edgevlm.defaults import demo_image
    from edgevlm.generate import generate
    from edgevlm.preprocess import preprocess

    loaded = loaded_models["minicpmv-2.6-tiny"]
    manifest = read_manifest(fp32_artifacts)
    entry = next(a for a in manifest["artifacts"] if a["part"] == "decoder")
    assert entry["target"] == "ort" and entry["file"] == "minicpmv-2.6.decoder.ort-cpu.fp32-kvfp32.onnx"
    assert entry["graphs"]["token_embedding"]["file"] == "minicpmv-2.6.embed.ort-cpu.fp32.onnx"
    inputs = preprocess([demo_image()], "Describe.", loaded.tokenizer, loaded.config, loaded.processor_config)
    reference = generate(loaded, inputs, max_new_tokens=8)
    runner = ArtifactRunner(fp32_artifacts)
    result = runner.generate([demo_image()], "Describe.", max_new_tokens=8)
    assert result.vision_artifact.endswith(".fp32.onnx")
    assert result.tokens == reference.tokens and first_divergence(reference.tokens, result.tokens) is None
    gap = max((a - b).abs().max().item() for a, b in zip(reference.step_logits, result.step_logits))
    assert gap < 1e-3
    again = runner.generate([demo_image()], "Describe.", max_new_tokens=8)  # reset() between conversations
    assert again.tokens == result.tokens


def test_verify_checks_the_onnx_decoder(fp32_artifacts):
    results = [r for r in verify_artifacts(fp32_artifacts) if ".decoder." in r.artifact or ".embed." in r.artifact]
    checks = {(r.artifact.split(".")[2], r.check): r for r in results}
    assert set(checks) == {("decoder", "checksum"), ("embed", "checksum"), ("decoder", "io contract"),
                           ("embed", "io contract"), ("decoder", "numerics")}
    assert all(r.status == PASS for r in results), [(r.artifact, r.check, r.detail) for r in results]
    assert checks[("decoder", "numerics")].metrics["relative_max_error"] <= 1e-4


def test_verify_catches_a_changed_decoder_file(fp32_artifacts, tmp_path):
    import shutil

    copy_dir = tmp_path / "copy"
    shutil.copytree(fp32_artifacts, copy_dir)
    embed = next(copy_dir.glob("*.embed.*.onnx"))
    embed.write_bytes(embed.read_bytes() + b"\0")
    failed = [r for r in verify_artifacts(copy_dir) if r.status != PASS]
    assert [(r.artifact, r.check) for r in failed] == [(embed.name, "checksum")]


def test_fp32_qwen2_parity_with_export_decoder(fp32_artifacts, loaded_models):
    llm = loaded_models["minicpmv-2.6-tiny"].model.llm.float().eval()
    entry = next(a for a in read_manifest(fp32_artifacts)["artifacts"] if a["part"] == "decoder")
    reference = ExportDecoder(llm, 256, KVCacheSpec("fp32")).eval()
    past = [np.zeros(s["shape"], dtype=s["dtype"]) for s in entry["inputs"] if s["name"].startswith("past.")]
    assert len(past) == 2 * llm.config.num_hidden_layers
    steps = _steps(llm.config.hidden_size)
    for got, want in zip(_run_onnx(session(fp32_artifacts / entry["file"]), steps, past), _run_torch(reference, steps)):
        assert _rel(got, want) <= 1e-4


def test_fp32_qwen3_parity_with_export_decoder(loaded_models, tmp_path):
    llm = loaded_models["minicpmv-4.5-tiny"].model.llm.float().eval()
    spec = DecoderOnnxSpec(max_seq_len=MAX_SEQ, weights="fp32", cache=KVCacheSpec("fp32"))
    path = export_decoder_onnx(llm, spec, tmp_path / "qwen3.onnx")[0]
    reference = ExportDecoder(llm, MAX_SEQ, spec.cache).eval()
    steps = _steps(llm.config.hidden_size, seed=1)
    got = _run_onnx(session(path), steps, [t.numpy() for t in empty_cache(reference)])
    for a, b in zip(got, _run_torch(reference, steps)):
        assert _rel(a, b) <= 1e-4


def test_int4_kv_cache_graph_matches_torch_int4_cache(qwen2_int4_kv):
    llm, spec, path = qwen2_int4_kv
    reference = ExportDecoder(llm, MAX_SEQ, spec.cache).eval()
    sess = session(path)
    past = [t.numpy() for t in empty_cache(reference)]
    cache_inputs = [i for i in sess.get_inputs() if i.name.startswith("past.")]
    assert [i.name for i in cache_inputs[:3]] == ["past.0.k_codes", "past.0.k_scale", "past.0.k_zero"]
    # 2.6-tiny: one kv head of 128 (Qwen2-7B's head size), groups of 32
    assert cache_inputs[0].type == "tensor(uint8)" and cache_inputs[0].shape == [1, 1, MAX_SEQ, 64]
    assert cache_inputs[1].type == "tensor(float16)" and cache_inputs[1].shape == [1, 1, MAX_SEQ, 4]
    steps = _steps(llm.config.hidden_size, seed=2)
    for got, want in zip(_run_onnx(sess, steps, past), _run_torch(reference, steps)):
        assert _rel(got, want) <= 1e-4
    # The graph's cache outputs are the torch cache's buffers, byte for byte in layout.
    names = [i.name for i in sess.get_inputs()]
    out = sess.run(None, dict(zip(names, [steps[0][0].numpy(), np.array([0])] + past)))
    _run_torch(reference, steps[:1])
    codes = reference.caches[0].v_codes.numpy()
    assert np.mean(out[1 + 3] == codes) > 0.99  # v codes of layer 0 (a rounding tie may flip a code)


def _dequantized_weights(quantized: onnx.ModelProto, fp32: onnx.ModelProto, llm) -> int:
    """Put each MatMulNBits weight, dequantized, into the torch Linear it came from; returns how many."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in quantized.graph.initializer}
    originals = {i.name: numpy_helper.to_array(i) for i in fp32.graph.initializer}
    linears = {m.weight.detach().numpy().T.tobytes(): m for m in llm.modules() if isinstance(m, torch.nn.Linear)}
    done = 0
    for node in quantized.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        n, k, block = attrs["N"], attrs["K"], attrs["block_size"]
        packed = inits[node.input[1]].reshape(n, -1)
        codes = np.stack([packed & 0xF, packed >> 4], -1).reshape(n, -1)[:, :k].astype(np.float32)
        scales = inits[node.input[2]].reshape(n, -1)
        zp = np.full_like(scales, 8.0)
        if len(node.input) > 3 and node.input[3]:
            zpp = inits[node.input[3]].reshape(n, -1)
            zp = np.stack([zpp & 0xF, zpp >> 4], -1).reshape(n, -1)[:, :scales.shape[1]].astype(np.float32)
        weight = (codes.reshape(n, -1, block) - zp[..., None]) * scales[..., None]
        module = linears[originals[node.input[1].removesuffix("_Q4")].tobytes()]
        module.weight.data = torch.from_numpy(weight.reshape(n, k).astype(np.float32))
        done += 1
    return done


def test_matmulnbits_weights_match_torch_with_the_same_int4_weights(qwen2_int4_kv, tmp_path):
    llm, spec, fp32_path = qwen2_int4_kv
    layers = llm.config.num_hidden_layers
    # accuracy_level None: fp32 compute, so the only difference from torch is the int4 weights themselves.
    int4 = DecoderOnnxSpec(max_seq_len=MAX_SEQ, weights="int4", group_size=32, accuracy_level=None, cache=spec.cache)
    model = quantize_weights(fp32_path, int4)
    path = tmp_path / "int4.onnx"
    onnx.save(model, str(path))
    census = op_census(path)
    assert census["MatMulNBits"] == 7 * layers + 1  # q, k, v, o, gate, up, down per layer + lm_head
    assert census.get("Gemm", 0) == 0 and census["MatMul"] >= 2 * layers  # attention + Hadamard stay float
    dequantized = copy.deepcopy(llm)
    assert _dequantized_weights(model, onnx.load(str(fp32_path)), dequantized) == 7 * layers + 1
    reference = ExportDecoder(dequantized, MAX_SEQ, spec.cache).eval()
    steps = _steps(llm.config.hidden_size, seed=3)
    got = _run_onnx(session(path), steps, [t.numpy() for t in empty_cache(reference)])
    want = _run_torch(reference, steps)
    fp32 = _run_torch(ExportDecoder(llm, MAX_SEQ, spec.cache).eval(), steps)
    for a, b, c in zip(got, want, fp32):
        # Same int4 weights: fp32-accumulation differences only. Against fp32 weights: far larger.
        assert _rel(a, b) <= 1e-4 < _rel(a, c)


def test_bad_decoder_recipe_combinations_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="ort has no weight scheme '8da4w'.*\n.*fp32, int4"):
        _recipe(tmp_path, {"backend": "ort", "weights": "8da4w"})
    with pytest.raises(ConfigError, match="executorch has no weight scheme 'int4'.*\n.*fp32, 8da4w$"):
        _recipe(tmp_path, {"backend": "executorch", "weights": "int4"})
    with pytest.raises(ConfigError, match="no weight-only int4 \\(4w\\).*fp32 weights.*\n.*use weights: 8da4w"):
        _recipe(tmp_path, {"backend": "executorch", "weights": "4w"})
    with pytest.raises(ConfigError, match="executorch has no weight scheme 'int4'"):
        _recipe(tmp_path, {"backend": "executorch", "weights": "int4"})
    with pytest.raises(ConfigError, match="vision_in_pte"):
        _recipe(tmp_path, {"backend": "ort", "weights": "int4", "vision_in_pte": True})
    recipe = load_recipe("ort")
    assert [(d.backend, d.weights, d.kv_cache, d.group_size, d.max_seq_len) for d in recipe.decoder] == [
        ("ort", "int4", "int4", 32, 2048)]


def test_run_refuses_a_changed_decoder_graph(fp32_artifacts, tmp_path, capsys):
    import shutil

    from edgevlm.cli.main import main

    copy_dir = shutil.copytree(fp32_artifacts, tmp_path / "copy")
    decoder = next(copy_dir.glob("*.decoder.*.onnx"))
    data = bytearray(decoder.read_bytes())
    data[len(data) // 2] ^= 0x01
    decoder.write_bytes(bytes(data))
    assert main(["run", "--artifacts", str(copy_dir), "--prompt", "Describe.", "--max-new-tokens", "2"]) == 1
    assert f"{decoder.name} does not match its manifest" in capsys.readouterr().err


@pytest.mark.slow
def test_built_int4_graph_equals_the_library_quantizer_and_its_qdq_form(loaded_models, tmp_path):
    """The export quantizes before exporting (NBitsLinear -> com.microsoft MatMulNBits); the graph must
    compute what onnxruntime's own MatMulNBitsQuantizer makes of the fp32 graph, and
    `weight_format: qdq` (DequantizeLinear int4 + MatMul) the same again."""
    from edgevlm.export.decoder.onnx_graph import weight_plan
    from edgevlm.export.llm_build import build_llm
    from edgevlm.export.llm_source import ModuleLayers

    llm = loaded_models["minicpmv-4.5-tiny"].model.llm.float().eval()
    outputs = {}
    for symmetric in (False, True):
        base = DecoderOnnxSpec(max_seq_len=MAX_SEQ, weights="int4", group_size=32, symmetric=symmetric,
                               accuracy_level=None, cache=KVCacheSpec("int4", 32, True))
        fp32_path = export_decoder_onnx(llm, dataclasses.replace(base, weights="fp32"), tmp_path / "fp32.onnx")[0]
        onnx.save(quantize_weights(fp32_path, base), str(tmp_path / "library.onnx"))
        built = build_llm(ModuleLayers(llm), weight_plan(base)).llm
        paths = {"library": tmp_path / "library.onnx"}
        for fmt in ("matmulnbits", "qdq"):
            paths[fmt] = export_decoder_onnx(built, dataclasses.replace(base, weight_format=fmt),
                                             tmp_path / f"{fmt}-{symmetric}.onnx")[0]
        census = op_census(paths["qdq"])
        assert "MatMulNBits" not in census and census["DequantizeLinear"] == 7 * 2 + 1
        types = {i.data_type for i in onnx.load(str(paths["qdq"])).graph.initializer}
        assert (onnx.TensorProto.INT4 if symmetric else onnx.TensorProto.UINT4) in types
        steps = _steps(llm.config.hidden_size, seed=4)
        reference = ExportDecoder(llm, MAX_SEQ, base.cache).eval()
        past = [t.numpy() for t in empty_cache(reference)]
        outputs = {name: _run_onnx(session(path), steps, past) for name, path in paths.items()}
        # ORT fuses DequantizeLinear + MatMul back into MatMulNBits with int8 activations (its
        # accuracy level 4): unfused, the QDQ graph computes exactly what MatMulNBits does in fp32
        outputs["qdq"] = _run_onnx(_unoptimized(paths["qdq"]), steps, past)
        for a, b, c in zip(outputs["matmulnbits"], outputs["library"], outputs["qdq"]):
            assert _rel(a, b) <= 1e-5 and _rel(c, b) <= 1e-5


def _unoptimized(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
