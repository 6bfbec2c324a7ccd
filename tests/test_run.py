"""Generation from the artifacts alone: fp32 artifacts reproduce the eager greedy tokens exactly."""

from __future__ import annotations

import pytest
import yaml

from edgevlm.errors import PromptError
from edgevlm.export.driver import export_model
from edgevlm.export.manifest import read_manifest
from edgevlm.export.recipes import load_recipe
from edgevlm.export.run import ArtifactRunner, first_divergence


def _recipe(tmp_path, name, weights, kv, max_seq_len=512):
    data = {"name": name, "vision": [{"backend": "ort", "precision": "fp32"}],
            "decoder": [{"backend": "executorch", "weights": weights, "kv_cache": kv, "kv_group_size": 32,
                         "max_seq_len": max_seq_len}]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_recipe(str(path))


@pytest.fixture(scope="module")
def fp32_artifacts(tiny_checkpoints, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    return export_model(tiny_checkpoints["minicpmv-2.6-tiny"], _recipe(root, "fp32", "fp32", "fp32"), root / "out")


def test_fp32_artifacts_reproduce_reference_tokens(fp32_artifacts, loaded_models):
    from edgevlm.defaults import demo_image
    from edgevlm.generate import generate
    from edgevlm.preprocess import preprocess

    loaded = loaded_models["minicpmv-2.6-tiny"]
    manifest = read_manifest(fp32_artifacts)
    (cache,) = [a["kv_cache"] for a in manifest["artifacts"] if a["part"] == "decoder"]
    assert "kv_cache" not in manifest and cache["format"] == "fp32" and cache["max_seq_len"] == 512
    inputs = preprocess([demo_image()], "Describe.", loaded.tokenizer, loaded.config, loaded.processor_config)
    reference = generate(loaded, inputs, max_new_tokens=8)
    runner = ArtifactRunner(fp32_artifacts)
    streamed = []
    result = runner.generate([demo_image()], "Describe.", max_new_tokens=8, on_token=streamed.append)
    assert result.prompt_tokens == len(inputs.input_ids) and result.vision_artifact.endswith(".fp32.onnx")
    assert result.tokens == reference.tokens and first_divergence(reference.tokens, result.tokens) is None
    assert "".join(streamed) == result.text or result.stopped_by == "stop_token"
    gap = max((a - b).abs().max().item() for a, b in zip(reference.step_logits, result.step_logits))
    assert gap < 1e-3


def test_prompt_longer_than_the_cache_is_a_clear_error(fp32_artifacts):
    from PIL import Image

    runner = ArtifactRunner(fp32_artifacts)
    big = Image.new("RGB", (1344, 1344), "white")  # 1 + 9 slices of 64 queries: beyond 512 positions
    with pytest.raises(PromptError, match="decoder's cache holds 512.*\n.*larger max_seq_len"):
        runner.generate([big], "Describe.", max_new_tokens=4)


def test_generation_stops_at_the_end_of_the_cache(tiny_checkpoints, tmp_path):
    out = export_model(tiny_checkpoints["minicpmv-2.6-tiny"], _recipe(tmp_path, "short", "fp32", "int4", 112),
                       tmp_path / "short", part="all")
    decoder = next(a for a in read_manifest(out)["artifacts"] if a["part"] == "decoder")
    # the INT4 cache runs on our kernels: named in the manifest, their sources shipped and checksummed
    assert set(decoder["custom_ops"]) == {"edgevlm::int4_sdpa.out", "edgevlm::int4_update_cache.out",
                                          "edgevlm::rope.out"}
    from edgevlm.device_tests.decoder_profile import program_calls

    called = program_calls(out / decoder["file"], "text_decoder")["kernels"]
    assert {f"{name}.out" for name in called if not name.startswith("aten::")} == set(decoder["custom_ops"])
    assert {e["file"] for e in decoder["extra_files"]} == {
        "kernels/int4_sdpa.cpp", "kernels/int4_kv_update.cpp", "kernels/rope.cpp", "kernels/int4_sdpa_blocks.h",
        "kernels/int4_kv_common.h"}
    assert decoder["kv_cache"]["attention"] == "custom"
    assert decoder["kv_cache"]["layout"].startswith("codes uint8 [B, S")
    runner = ArtifactRunner(out)
    result = runner.generate([], "Hi", max_new_tokens=500)  # text only: prompt ~10 tokens
    assert result.stopped_by in ("max_seq_len", "stop_token")
    if result.stopped_by == "max_seq_len":
        assert result.prompt_tokens + len(result.tokens) == 112 + 1


def test_first_divergence():
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert first_divergence([1, 2], [1, 2, 3]) == 2


def test_bench_times_the_manifest_decoder(fp32_artifacts, tmp_path):
    """`edgevlm bench` on a directory with a decoder .pte: the vision table and the decoder report,
    both schema-valid, the decoder timed at contexts clipped to its 512-token cache."""
    import json

    from edgevlm.cli.main import main
    from edgevlm.device_tests.schema import validate_bench

    out = tmp_path / "bench.json"
    assert main(["bench", "--artifacts", str(fp32_artifacts), "--runs", "2", "--json", str(out)]) == 0
    vision, decoders = json.loads(out.read_text())
    validate_bench(vision)
    validate_bench(decoders)
    (result,) = decoders["results"]
    assert result["status"] == "ok" and result["kv_cache"]["format"] == "fp32"
    assert sorted(result["decoder"]["decode"], key=int) == ["128", "1024", "4096"]
    for context in ("1024", "4096"):  # beyond the 512-token cache: present, with the reason
        assert result["decoder"]["decode"][context] == {
            "unavailable": f"context {context} exceeds the program's 512-token cache"}
    timing = result["decoder"]["decode"]["128"]
    # a tiny model sits in cache, so its share of the DRAM roofline may exceed 100%: only its presence is checked
    assert timing["tokens_per_s"] > 0 and timing["roofline"]["percent"] > 0


def test_artifact_steps_run_with_torch_on_one_thread(fp32_artifacts):
    """torch's own work in the decode loop (output copies, argmax) stays on the calling thread while
    the .pte runs, so torch's OpenMP threads never spin on the cores of ExecuTorch's pool; the
    caller's thread count comes back afterwards, also when a step fails."""
    import torch

    from edgevlm.export.decoder.pte import torch_on_one_thread

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runner = ArtifactRunner(fp32_artifacts)
        seen, step = [], runner.session.step
        runner.session.step = lambda embeds, pos: seen.append(torch.get_num_threads()) or step(embeds, pos)
        result = runner.generate([], "Hi", max_new_tokens=3)
        assert len(seen) == len(result.tokens) - (result.stopped_by == "stop_token") + 1 and set(seen) == {1}
        # the runner's timing line counts the decode steps it made (the prefill is timed apart)
        assert result.timings["decode_steps"] == len(seen) - 1
        assert f"over {len(seen) - 1} steps" in result.speed_line() or len(seen) == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="boom"), torch_on_one_thread():
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_run_cli_streams_tokens_and_reports_where_the_time_went(fp32_artifacts, capsys):
    from edgevlm.cli.main import main

    assert main(["run", "--artifacts", str(fp32_artifacts), "--prompt", "Hi", "--max-new-tokens", "3"]) == 0
    err = capsys.readouterr().err
    decoder = next(a for a in read_manifest(fp32_artifacts)["artifacts"] if a["part"] == "decoder")
    assert "prompt tokens" in err and f"decoder {decoder['file']}" in err
    assert "vision 0 ms, prefill" in err and "tok/s" in err  # text only: no slice went through the encoder
