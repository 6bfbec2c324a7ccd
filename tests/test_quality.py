"""The quality report: AWQ against round-to-nearest, recipe rows judged by the accuracy gates,
`verify` re-applying them, the decoder ablation and the per-layer SQNR, on the shipped oracle."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from edgevlm import defaults
from edgevlm.calibration.oracle_eval import heldout

SAMPLES = 8


@pytest.fixture(scope="module")
def oracle():
    from edgevlm.checkpoint.loader import load_model

    return load_model(defaults.oracle_model_dir())


def _held_out_embeddings(loaded, count: int) -> list[torch.Tensor]:
    from edgevlm.preprocess import preprocess

    out = []
    for s in heldout(count):
        inputs = preprocess([s.image()], s.question, loaded.tokenizer, loaded.config, loaded.processor_config)
        with torch.no_grad():
            vision = loaded.model.encode_images(inputs.pixel_values, inputs.tgt_sizes, inputs.temporal_ids)
            out.append(loaded.model.embed_inputs(inputs.input_ids, vision, inputs.image_bounds))
    return out


def test_awq_keeps_the_float_function_and_lowers_its_calibration_error(oracle):
    from edgevlm.calibration.awq import awq_scaled, calibration_embeddings
    from edgevlm.export.decoder.pte import DecoderPteSpec, quantize_weights

    scaled, summary = awq_scaled(oracle.model.llm, calibration_embeddings(oracle, count=8), group_size=32)
    assert summary["output_mse_awq"] < summary["output_mse_rtn"]
    test = _held_out_embeddings(oracle, 12)  # held-out prompts: never seen by the calibration
    spec = DecoderPteSpec(weights="8da4w", group_size=32)
    rtn, awq = quantize_weights(oracle.model.llm, spec), quantize_weights(scaled, spec)
    errors = {"rtn": 0.0, "awq": 0.0}
    signal = 0.0
    with torch.no_grad():
        for e in test:
            ref = oracle.model.llm(inputs_embeds=e[None]).logits
            # Scales folded into the norms and clipped ranges: the float function is nearly unchanged.
            float_scaled = scaled(inputs_embeds=e[None]).logits
            assert (float_scaled - ref).abs().max() < 0.5 * ref.abs().max()
            signal += float((ref ** 2).sum())
            for name, model in (("rtn", rtn), ("awq", awq)):
                errors[name] += float(((model(inputs_embeds=e[None]).logits - ref) ** 2).sum())
    # AWQ minimises each group's output error on the calibration prompts (asserted above); whether that
    # carries to held-out logits depends on the model. Measured: 55 % lower than RTN on the first oracle,
    # 16 % lower on the second, 17 % HIGHER on the shipped one (3.81e4 RTN -> 4.44e4 AWQ, 8 calibration
    # prompts): the quality report's decoder ablation is the task-level judge. Bound: no large regression.
    assert errors["awq"] < 1.3 * errors["rtn"], errors


def test_awq_scales_alone_are_float_exact(oracle):
    from edgevlm.calibration.awq import awq_scaled, calibration_embeddings

    scaled, _ = awq_scaled(oracle.model.llm, calibration_embeddings(oracle, count=4), group_size=32, clip=False)
    e = _held_out_embeddings(oracle, 1)[0]
    with torch.no_grad():
        ref = oracle.model.llm(inputs_embeds=e[None]).logits
        assert torch.allclose(scaled(inputs_embeds=e[None]).logits, ref, atol=1e-4 * float(ref.abs().max()))


def test_awq_rejects_a_group_size_that_does_not_divide(oracle):
    from edgevlm.calibration.awq import awq_scaled
    from edgevlm.errors import ConfigError

    with pytest.raises(ConfigError, match="does not divide"):
        awq_scaled(oracle.model.llm, [], group_size=48)


@pytest.fixture(scope="module")
def report(tmp_path_factory, oracle):
    from edgevlm.calibration.quality import QualityOptions, quality_report
    from edgevlm.export.recipes import QualitySpec, load_recipe

    base = load_recipe("ort")
    recipe = dataclasses.replace(
        base, name="ort-quality-test", vision=tuple(v for v in base.vision if v.precision in ("fp32", "int8")),
        decoder=(dataclasses.replace(base.decoder[0], weight_calibration="awq", max_seq_len=512),),
        # wide bounds: 8 samples move accuracy in 12.5-point steps; the gate logic is tested by tampering below
        quality=QualitySpec({"vision": 100.0, "decoder": 100.0, "end_to_end": 100.0}))
    out = tmp_path_factory.mktemp("quality")
    options = QualityOptions(samples=SAMPLES, ablation=False, kv_error=False, max_patches=128)
    return quality_report(defaults.oracle_model_dir(), [recipe], out, options), out / recipe.name


def test_report_rows_isolate_each_artifact(report):
    from edgevlm.reports.quality import to_markdown, validate

    result, root = report
    validate(result)
    by_key = {(r["component"], r.get("precision")): r for r in result["rows"]}
    assert sorted(k[0] for k in by_key) == ["decoder", "end_to_end", "vision", "vision"]
    assert len([r for r in result["rows"] if r["component"] == "end_to_end"]) == 2  # one per vision artifact
    fp32 = by_key[("vision", "fp32")]
    # The fp32 vision artifact beside the eager LLM reproduces the reference answers and perplexity.
    assert fp32["exact_match"] == result["reference"]["exact_match"]
    assert abs(fp32["perplexity_increase"]) < 1e-3 * result["reference"]["answer_perplexity"]
    assert (fp32["answers_lost"], fp32["answers_gained"], fp32["mcnemar_p"]) == (0, 0, 1.0)  # answer by answer
    assert "answers" not in result["reference"] and not any("answers" in r for r in result["rows"])
    decoder = by_key[("decoder", "int4-kvint4")]
    assert decoder["weight_calibration"] == "awq" and decoder["kv_cache"] == "int4"
    assert all(r["samples"] == SAMPLES and r["status"] == "pass" for r in result["rows"])
    manifest = json.loads((root / "manifest.json").read_text())
    weights = next(a for a in manifest["artifacts"] if a["part"] == "decoder")["weights"]
    assert weights["calibration"]["method"] == "awq" and "layers.0.qkv" in weights["calibration"]["alpha"]
    assert all(v["max_patches"] == 128 for v in manifest["artifacts"] if v["part"] == "vision")
    markdown = to_markdown(result)
    assert "| ort-quality-test | decoder |" in markdown and "Per-layer SQNR" in markdown


def test_layer_sqnr_locates_quantization_noise(report):
    result, _ = report
    tables = {t["artifact"].split(".")[-2]: t for t in result["layer_sqnr"]}
    fp32, int8 = tables["fp32"], tables["int8"]
    assert fp32["status"] == int8["status"] == "ok"
    assert [s["stage"] for s in int8["stages"]][:2] == ["vpm.embeddings", "layers.0"]
    assert len(int8["stages"]) == len(fp32["stages"]) == 3 + 3  # embeddings, 3 layers, post-norm, output
    assert all(s["sqnr_db"] > 80 for s in fp32["stages"])  # fp32 ONNX vs torch: rounding only
    # int8 MatMuls start after the (float) patch embedding: the noise appears at layer 0 and stays.
    assert int8["stages"][0]["sqnr_db"] > 80 and all(s["sqnr_db"] < 70 for s in int8["stages"][1:])


def test_verify_reapplies_the_accuracy_gates(report):
    from edgevlm.export.verify import FAIL, PASS, verify_artifacts

    _, root = report
    accuracy = [c for c in verify_artifacts(root) if c.check == "task accuracy"]
    assert len(accuracy) == 5 and all(c.status == PASS for c in accuracy)
    stored = json.loads((root / "quality.json").read_text())
    try:
        tampered = json.loads(json.dumps(stored))
        tampered["rows"][0]["drop_points"] = 100.5  # beyond the recipe's 100-point bound
        tampered["rows"][1]["sha256"] = "0" * 64  # scored other bytes than the manifest's
        (root / "quality.json").write_text(json.dumps(tampered))
        checks = [c for c in verify_artifacts(root) if c.check == "task accuracy"]
        assert checks[0].status == FAIL and "accuracy drop <= 100 points" in checks[0].detail
        assert checks[1].status == FAIL and "re-run edgevlm quality" in checks[1].detail
        assert all(c.status == PASS for c in checks[2:])
    finally:
        (root / "quality.json").write_text(json.dumps(stored))


def test_decoder_ablation_fp32_row_is_the_reference(oracle):
    from edgevlm.calibration.quality import decoder_ablation, pipeline, score

    samples = heldout(6)
    reference = score(samples, pipeline(oracle))
    rows = decoder_ablation(oracle, samples, reference, group_size=32)
    assert [(r["weights"], r["kv_cache"]) for r in rows] == [
        (w, c) for w in ("fp32", "int4 rtn", "int4 awq") for c in ("fp32", "int4")]
    # The export graph run eagerly over an fp32 cache is the reference model.
    assert rows[0]["exact_match"] == reference["exact_match"]
    assert abs(rows[0]["perplexity_increase"]) < 1e-4 * reference["answer_perplexity"]
    assert rows[0]["awq"]["output_mse_awq"] < rows[0]["awq"]["output_mse_rtn"]
    assert all(r["perplexity_increase"] != 0 for r in rows[1:])  # every quantized part changes the scores


def test_recipe_quality_and_weight_calibration_are_validated(tmp_path):
    from edgevlm.errors import ConfigError
    from edgevlm.export.recipes import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text("name: r\nvision: []\nquality: {max_accuracy_drop: {decoderr: 2}}\n")
    with pytest.raises(ConfigError, match="decoderr"):
        load_recipe(str(path))
    path.write_text("name: r\nvision: []\ndecoder: [{backend: executorch, weight_calibration: gptq}]\n")
    with pytest.raises(ConfigError, match="rtn, awq"):
        load_recipe(str(path))


def test_qnn_rows_cap_the_emulator_and_score_the_qdq_model_on_every_sample(tmp_path):
    """The HTP emulator scores a capped subset, judged by how many answers it shares with the
    artifact's own QDQ model, which scores every sample on the CPU EP and takes the accuracy gate."""
    from edgevlm.calibration.quality import QualityOptions, quality_report
    from edgevlm.export.manifest import read_manifest
    from edgevlm.export.recipes import load_recipe
    from edgevlm.export.verify import FAIL, PASS, verify_task_accuracy

    recipe = dataclasses.replace(load_recipe("android-sd8g3"), decoder=())
    options = QualityOptions(samples=3, emulated_samples=2, ablation=False, kv_error=False, max_patches=128)
    result = quality_report(defaults.oracle_model_dir(), [recipe], tmp_path, options)
    emulated, simulated = result["rows"]
    assert emulated["runtime"].endswith("(emulated)") and emulated["samples"] == 2
    assert simulated["runtime"].startswith(emulated["artifact"].replace(".onnx", ".qdq.onnx"))
    assert simulated["samples"] == 3 and simulated["reference_exact_match"] == result["reference"]["exact_match"]
    # HTP numerics and the QDQ model on CPU kernels agree closely: the answers' perplexity barely moves.
    for row in (emulated, simulated):
        assert abs(row["perplexity_increase"]) < 0.05 * row["answer_perplexity"], row
    assert emulated["same_answers_as_qdq"] == 2 and emulated["status"] == "pass"
    assert emulated["gate"]["describe"] == "same answers as its QDQ model >= 95 %"
    assert simulated["gate"]["describe"] == "accuracy drop <= 1 points" and "same_answers_as_qdq" not in simulated
    root = tmp_path / recipe.name
    assert [c.status for c in verify_task_accuracy(root, read_manifest(root))] == [PASS, PASS]
    stored = json.loads((root / "quality.json").read_text())
    stored["rows"][0]["same_answers_as_qdq"] = 1  # 1 of 2: the emulator no longer answers as its twin
    (root / "quality.json").write_text(json.dumps(stored))
    first = verify_task_accuracy(root, read_manifest(root))[0]
    assert first.status == FAIL and "1/2 answers as its QDQ model" in first.detail
    (table,) = result["layer_sqnr"]
    assert table["status"] == "ok" and table["onnx"].endswith(".qdq.onnx")
    assert 15 < table["stages"][-1]["sqnr_db"] < 80  # 16-bit activations, 8-bit weights


def test_phone_recipes_export_against_the_oracle_with_its_cache_length():
    """The phone recipes ask for a 2048-token cache; the oracle has 1024 positions. quality caps the
    cache (prompts are < 200 tokens, so no score changes) and the report says so."""
    from edgevlm.calibration.quality import fit_cache_to_oracle
    from edgevlm.checkpoint.loader import load_config
    from edgevlm.export.recipes import load_recipe, resolve_for_model
    from edgevlm.reports.quality import to_markdown

    config = load_config(defaults.oracle_model_dir())
    positions = config.llm.max_position_embeddings
    phone = load_recipe("android-sd8g3")
    assert phone.decoder[0].max_seq_len > positions
    capped, changed = fit_cache_to_oracle(phone, positions)
    assert [t.max_seq_len for t in capped.decoder] == [positions]
    assert changed == {phone.decoder[0].backend: [phone.decoder[0].max_seq_len, positions]}
    resolve_for_model(capped, config)  # now accepted by the export
    short = dataclasses.replace(phone, decoder=(dataclasses.replace(phone.decoder[0], max_seq_len=512),))
    assert fit_cache_to_oracle(short, positions) == (short, {})
    report = {"model": {"dir": "m"}, "heldout": {"samples": 1}, "status": "pass", "rows": [],
              "reference": {"exact_match": 0.5, "answer_perplexity": 1.5, "samples": 1},
              "recipes": [{"name": phone.name, "artifacts_dir": "x", "decoder_max_seq_len_capped": changed}]}
    assert f"exported with {positions} positions, not the recipe's 2048" in to_markdown(report)


def test_kinds_the_oracle_only_guesses_are_left_out_of_the_rows():
    """A kind scored near chance (the oracle guesses) would gate noise; a kind with too few samples
    to tell is kept; margin 0 keeps everything. The report says what was left out."""
    from edgevlm.calibration.quality import kinds_the_oracle_reads
    from edgevlm.reports.quality import to_markdown

    by_kind = {"count": {"exact_match": 1.0, "samples": 40}, "position": {"exact_match": 0.45, "samples": 40},
               "shape": {"exact_match": 0.40, "samples": 40}, "word": {"exact_match": 0.0, "samples": 5}}
    read, left_out = kinds_the_oracle_reads({"by_kind": by_kind}, 0.15)
    assert read == ["count", "word"] and set(left_out) == {"position", "shape"}
    assert left_out["position"] == {"exact_match": 0.45, "chance": 0.5, "samples": 40}
    assert kinds_the_oracle_reads({"by_kind": by_kind}, 0.0) == (list(by_kind), {})
    report = {"model": {"dir": "m"}, "status": "pass", "rows": [],
              "heldout": {"samples": 85, "drawn": 125, "kinds_left_out": left_out, "min_kind_margin": 0.15},
              "reference": {"exact_match": 0.5, "answer_perplexity": 1.5, "samples": 85}}
    text = to_markdown(report)
    assert "position (45.0% against 50.0% chance, 40 samples)" in text and "85 of 125" in text


def test_paired_counts_lost_and_gained_answers_with_an_exact_mcnemar_p():
    from edgevlm.calibration.quality import paired

    def answers(correct, start=0):
        return [{"index": start + i, "correct": c} for i, c in enumerate(correct)]

    reference = answers([True] * 10 + [False] * 2)
    # 2 lost of 60 cannot tell a worse artifact from chance; 8 lost against 1 gained can (p = 20/512).
    assert paired(answers([False, False] + [True] * 8 + [False] * 2), reference) == {
        "answers_lost": 2, "answers_gained": 0, "mcnemar_p": 0.5}
    many = answers([False] * 8 + [True] * 2 + [True, False])
    assert paired(many, reference) == {"answers_lost": 8, "answers_gained": 1, "mcnemar_p": round(20 / 512, 4)}
    assert paired(reference, reference)["mcnemar_p"] == 1.0
    assert paired(answers([True] * 5), reference)["answers_lost"] == 0  # a row on the first samples
    with pytest.raises(ValueError, match="different samples"):
        paired(answers([True] * 5, start=3), reference)


def test_a_drop_of_exactly_the_bound_passes():
    """3 answers lost of 300 is one point; in floats (248/300 - 245/300) * 100 is 1.0000000000000009,
    which once failed a 1-point gate (ios-m4 with 4-bit palettization, issue 21's quality table)."""
    from edgevlm.export.gates import accuracy_gate

    gate = accuracy_gate("vision")
    drop = 100 * (248 / 300 - 245 / 300)  # as calibration/quality.py computes it
    assert drop > 1.0 and gate.max_drop_points == 1.0  # the float artefact is real
    assert gate.passes(drop)
    assert not gate.passes(100 * (248 / 300 - 244 / 300))  # 4 answers (1.33 points) fail
