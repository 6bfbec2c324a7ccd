"""edgevlm-tiny, the quality oracle: the synthetic VQA task, the shipped checkpoint, the trainer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from edgevlm.calibration import vqa

N = 60  # samples checked per test: every question kind appears


def _colour_pixels(image, colour: str) -> np.ndarray:
    """(x, y) of every pixel exactly the palette colour (shapes are drawn without antialiasing)."""
    pixels = np.asarray(image)
    ys, xs = np.nonzero(np.all(pixels == np.array(vqa.COLOURS[colour], dtype=np.uint8), axis=-1))
    return np.stack([xs, ys], axis=1)


def test_samples_are_deterministic_and_splits_disjoint():
    a, b = vqa.dataset("train", 8), vqa.dataset("train", 8)
    assert [(s.scene, s.question, s.answer) for s in a] == [(s.scene, s.question, s.answer) for s in b]
    assert np.array_equal(np.asarray(a[3].image()), np.asarray(b[3].image()))
    held = vqa.dataset("heldout", 8)
    assert not {s.scene for s in held} & {s.scene for s in vqa.dataset("train", 200)}
    with pytest.raises(ValueError, match="unknown split"):
        vqa.sample("test", 0)


def test_answers_agree_with_the_scene_description():
    kinds = set()
    for s in vqa.dataset("heldout", N):
        kinds.add(s.kind)
        shapes = s.scene.shapes
        assert len({sh.colour for sh in shapes}) == len(shapes)  # colours are distinct: names are unique
        if s.kind == "count":
            assert s.answer == str(len(shapes))
        elif s.kind == "colour":
            kind = s.question.removeprefix("What color is the ").removesuffix("?")
            assert [sh.colour for sh in shapes if sh.kind == kind] == [s.answer]
        elif s.kind == "shape":
            colour = s.question.removeprefix("What shape is ").removesuffix("?")
            assert [sh.kind for sh in shapes if sh.colour == colour] == [s.answer]
        elif s.kind in ("word", "number"):
            assert s.answer == s.scene.text and s.answer.isdigit() == (s.kind == "number")
    assert kinds == set(vqa.QUESTION_KINDS)


def test_answers_agree_with_the_rendered_pixels():
    """Decode the image independently of the scene description: palette colours present, where
    their pixels lie, what colour sits at each shape's centre, and dark text pixels."""
    for s in vqa.dataset("heldout", N):
        image = s.image()
        present = [c for c in vqa.COLOURS if len(_colour_pixels(image, c)) >= 20]
        assert sorted(present) == sorted(sh.colour for sh in s.scene.shapes)
        for sh in s.scene.shapes:
            x0, y0, x1, y1 = sh.box
            # The centroid of a triangle with its apex on top is at 2/3 of its height.
            cx, cy = (x0 + x1) // 2, (y0 + 2 * y1) // 3 if sh.kind == "triangle" else (y0 + y1) // 2
            assert image.getpixel((cx, cy)) == vqa.COLOURS[sh.colour]
        if s.kind == "count":
            assert s.answer == str(len(present))
        if s.kind == "position":
            words = s.question.split()
            a, b = words[2], words[-2]
            mean_x = {c: _colour_pixels(image, c)[:, 0].mean() for c in (a, b)}
            assert s.answer == ("left" if mean_x[a] < mean_x[b] else "right")
        if s.kind in ("word", "number"):
            x0, y0, x1, y1 = s.scene.text_box
            dark = np.asarray(image.crop((x0, y0, x1, y1))).max(axis=-1) < 100
            assert dark.sum() > 20  # the text is drawn, inside its own cell


def test_image_sizes_exercise_slicing():
    from edgevlm.preprocess import slice_layout
    from edgevlm.presets import get_preset

    sc = get_preset("edgevlm-tiny").config.slice_config
    grids = {slice_layout(s.scene.size, sc.max_slice_nums, sc.scale_resolution, sc.patch_size).grid
             for s in vqa.dataset("train", N)}
    assert None in grids and len(grids - {None}) >= 3  # unsliced images and several grid shapes


def test_tokenizer_keeps_answers_compact():
    from edgevlm.calibration.train_oracle import build_tokenizer

    tok = build_tokenizer()
    for answer in list(vqa.COLOURS) + list(vqa.KINDS) + ["left", "right", "7", "42"] + list(vqa.WORDS):
        assert len(tok.encode(answer)) == 1, answer


def test_shipped_oracle_answers_held_out_questions():
    """The shipped checkpoint loads (fp16 on disk) and beats the question-prior baseline."""
    from edgevlm.calibration.oracle_eval import evaluate_checkpoint

    from edgevlm import defaults

    model_dir = defaults.oracle_model_dir()
    assert defaults.ensure_default_model() == model_dir
    size = sum(p.stat().st_size for p in model_dir.iterdir())
    assert size <= 25 * 1024 ** 2
    from edgevlm.calibration.train_oracle import build_tokenizer

    from edgevlm.tokenizer import load_tokenizer

    # The shipped tokenizer is the one training used (rebuilt deterministically from the task text).
    assert load_tokenizer(model_dir).backend.get_vocab() == build_tokenizer().backend.get_vocab()
    result = evaluate_checkpoint(model_dir, count=40)
    # Answering every question of a kind with that kind's most common training answer scores 0.15
    # on these 40 samples (0.25 on the 300-sample held-out set); the oracle scores 0.375 (0.35).
    assert result["exact_match"] >= 0.3, result
    assert 1.0 < result["answer_perplexity"] < 3.0


def test_train_oracle_cli_learns_and_reproduces(tmp_path):
    from edgevlm.checkpoint.loader import load_model
    from edgevlm.cli.main import main

    def run(out):
        args = ["train-oracle", "--out", str(out), "--steps", "6", "--batch-size", "2", "--lr", "3e-3",
                "--warmup-steps", "1", "--workers", "0", "--eval-samples", "2", "--threads", "1", "--log-every", "1",
                "--json", str(tmp_path / f"{out.name}.result.json")]
        assert main(args) == 0
        return [json.loads(line)["loss"] for line in (tmp_path / f"{out.name}.train.jsonl").read_text().splitlines()]

    losses = run(tmp_path / "a")
    assert len(losses) == 6 and sum(losses[-2:]) < sum(losses[:2]) - 1.0, losses
    summary = json.loads((tmp_path / "a" / "oracle_train.json").read_text())
    assert summary["steps_done"] == 6 and summary["heldout"]["samples"] == 2
    assert math.isfinite(summary["heldout"]["answer_perplexity"])
    result = json.loads((tmp_path / "a.result.json").read_text())  # --json
    assert result["schema"] == "edgevlm.train-oracle/1" and result["summary"]["steps_done"] == 6
    assert result["metrics"] == str(tmp_path / "a.train.jsonl")
    assert {f["file"] for f in result["files"]} >= {"config.json", "model-00001-of-00001.safetensors"}
    loaded = load_model(tmp_path / "a")
    assert loaded.config.query_num == 16 and loaded.tokenizer.encode("circle") == build_ids("circle")
    run(tmp_path / "b")
    shard = "model-00001-of-00001.safetensors"
    assert (tmp_path / "a" / shard).read_bytes() == (tmp_path / "b" / shard).read_bytes()


def build_ids(text: str) -> list[int]:
    from edgevlm.calibration.train_oracle import build_tokenizer

    return build_tokenizer().encode(text)


def test_oracle_diagnosis_priors_and_geometry(tmp_path):
    """The model-free parts of calibration/oracle_diagnosis.py: blind baselines and the image as the
    oracle sees it (the model experiments take minutes; `python -m edgevlm.calibration.oracle_diagnosis`)."""
    from edgevlm.calibration import oracle_diagnosis as diagnosis
    from edgevlm.checkpoint.loader import load_config

    held = vqa.dataset("heldout", 60)
    priors = diagnosis.priors(400, held)
    assert set(priors["by_kind"]) == set(vqa.QUESTION_KINDS)
    for kind, row in priors["by_kind"].items():
        assert 0 <= row["question_prior"] <= 1 and row["chance"] == 1 / len(diagnosis.ANSWER_SETS[kind])
        assert sum(row["answer_distribution"].values()) == row["samples"]
    assert 0 < priors["blind_loss_per_token"] < math.log(100)
    geometry = diagnosis.geometry(held, load_config(diagnosis.DEFAULT_MODEL))
    assert geometry["scale_resolution"] == 112 and sum(geometry["slices_per_image"].values()) == 60
    report = {"model": "m", "samples": 60, "seed": 0, "threads": 1, "final_train_loss": None, "priors": priors,
              "geometry": geometry, "timings_s": {"priors": 0.1}}
    assert "| **all** | 60 |" in diagnosis.markdown(report)
