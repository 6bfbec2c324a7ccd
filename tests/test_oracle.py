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


def _named(question: str, prefix: str, suffix: str) -> str:
    assert question.startswith(prefix) and question.endswith(suffix), question
    return question.removeprefix(prefix).removesuffix(suffix)


def test_answers_agree_with_the_scene_description():
    kinds = set()
    for s in vqa.dataset("heldout", N):
        kinds.add(s.kind)
        shapes = s.scene.shapes
        assert len({sh.colour for sh in shapes}) == len(shapes)  # colours are distinct: names are unique
        assert s.answer in vqa.ANSWERS[s.kind] and (s.kind, s.question, s.answer) in vqa.questions(s.scene)
        if s.kind == "count":
            assert s.answer == str(len(shapes))
        elif s.kind == "colour":
            kind = _named(s.question, "What color is the ", "?")
            assert [sh.colour for sh in shapes if sh.kind == kind] == [s.answer]
        elif s.kind == "shape":
            colour = _named(s.question, "What shape is the ", " one?")
            assert [sh.kind for sh in shapes if sh.colour == colour] == [s.answer]
        elif s.kind in ("word", "small_word"):
            assert s.answer == s.scene.text and s.scene.small_text == (s.kind == "small_word")
    assert kinds == set(vqa.QUESTION_KINDS)


def test_answers_are_balanced_so_the_question_cannot_give_them_away():
    """Answer-first sampling: per kind, every answer about equally often and no question string
    that predicts its answer (the collapse calibration/ORACLE_DIAGNOSIS.md found came from priors)."""
    from collections import Counter, defaultdict

    samples = vqa.dataset("train", 3000)
    for kind in vqa.QUESTION_KINDS:
        answers = Counter(s.answer for s in samples if s.kind == kind)
        n = sum(answers.values())
        expected = n / len(vqa.ANSWERS[kind])
        assert set(answers) == set(vqa.ANSWERS[kind])
        # chi-square over the kind's answers, far below the 0.1 % critical value (29.6 at 11 d.o.f.)
        assert sum((c - expected) ** 2 / expected for c in answers.values()) < 30, (kind, answers)
    by_question = defaultdict(Counter)
    for s in samples:
        by_question[s.question][s.answer] += 1
    blind = sum(c.most_common(1)[0][1] for c in by_question.values()) / len(samples)
    chance = sum(1 / len(vqa.ANSWERS[s.kind]) for s in samples) / len(samples)
    # The best question-only guess, fitted on these very samples (optimistic), is near chance.
    assert blind < chance + 0.08, (blind, chance)


def test_small_words_need_the_slices_and_large_words_do_not():
    """`small_word` glyphs are about a patch tall in the overview and about two in the slices;
    `word` glyphs are >= 2.3 patches tall in the overview."""
    from edgevlm.preprocess import slice_layout

    heights = {"word": [], "small_word": []}
    for s in vqa.dataset("heldout", 400):
        if s.kind not in heights:
            continue
        layout = slice_layout(s.scene.size, 4, vqa.SCALE, vqa.PATCH)
        x0, y0, x1, y1 = vqa._font(s.scene.font_size).getbbox(s.scene.text)
        overview = (y1 - y0) * layout.source_size[0] / s.scene.size[0] / vqa.PATCH
        sliced = (y1 - y0) * layout.refine_size[0] / s.scene.size[0] / vqa.PATCH if layout.grid else None
        heights[s.kind].append((overview, sliced))
        if s.kind == "small_word":
            assert layout.grid is not None and overview < 1.4 and sliced > 1.35 * overview
        else:
            assert overview >= 2.2
    assert len(heights["small_word"]) > 30 and len(heights["word"]) > 30
    assert np.median([sl for _, sl in heights["small_word"]]) >= 1.9


def test_shapes_are_large_enough_to_tell_apart():
    """Shapes get the largest cell the scene allows: in the overview (the view every image has) a
    shape is >= 2.2 patches wide for 90 % of shapes (it was 1.7 when six cells were always used, and
    a 3-layer tower barely learned circle/square/triangle at that size; ORACLE_DIAGNOSIS.md §7)."""
    from edgevlm.preprocess import slice_layout

    sides = []
    for s in vqa.dataset("heldout", 300):
        layout = slice_layout(s.scene.size, 4, vqa.SCALE, vqa.PATCH)
        sides += [(sh.box[2] - sh.box[0]) * layout.source_size[0] / s.scene.size[0] / vqa.PATCH
                  for sh in s.scene.shapes]
    assert np.percentile(sides, 10) >= 2.2 and np.median(sides) >= 2.7, np.percentile(sides, [10, 50, 90])


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
        if s.kind in ("word", "small_word"):
            x0, y0, x1, y1 = s.scene.text_box
            dark = np.asarray(image.crop((x0, y0, x1, y1))).max(axis=-1) < 100
            assert dark.sum() > 20  # the text is drawn, inside its own region


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
    for answer in sorted({a for answers in vqa.ANSWERS.values() for a in answers}):
        assert len(tok.encode(answer)) == 1, answer


HELDOUT_TEST = 500  # held-out samples for the shipped oracle's checks


@pytest.fixture(scope="module")
def shipped_ablation():
    """The shipped checkpoint (fp16 on disk, run in fp32) on the first 500 held-out samples: as it
    is, with its vision embeddings zeroed, and with Gaussian noise at 20 dB SQNR on them."""
    from edgevlm.calibration import oracle_diagnosis as diagnosis
    from edgevlm.checkpoint.loader import load_model

    from edgevlm import defaults

    held = vqa.dataset("heldout", HELDOUT_TEST)
    loaded = load_model(defaults.oracle_model_dir())
    result = diagnosis.ablation(loaded, held, seed=0, conditions=("vision", "zeroed", "noise_20db"))
    return held, result, diagnosis.priors(3000, held)


def _half_width(p: float, n: int) -> float:
    """95 % normal-approximation confidence half-width of a proportion."""
    return 1.96 * math.sqrt(p * (1 - p) / n)


def test_shipped_oracle_reads_the_image(shipped_ablation):
    """What the shipped oracle does read, on 500 held-out samples (95 % confidence half-width ~3.3
    points at its ~83 % exact match, ~3.8 at the ~26 % question prior; ~5-11 points per kind).
    Measured: 83.2 % as it is, 22.6 % with vision zeroed, question prior 25.6 %; count 100 % ->
    24.4 % zeroed, shape of a named colour 98.7 % -> 29.9 %, left/right of two named shapes 93.9 % ->
    51.2 %, colour of a named shape 46.5 % -> 15.1 %, word 70.9 % -> 8.9 %, small word (slices only)
    90.0 % -> 7.8 %."""
    held, result, priors = shipped_ablation
    accuracy, zeroed = result["vision"]["exact_match"], result["zeroed"]["exact_match"]
    prior = priors["overall"]["question_prior"]
    assert accuracy >= prior + 0.5, (accuracy, prior, _half_width(accuracy, len(held)))
    assert zeroed <= prior + 0.03, (zeroed, prior)  # issue 21's target: without vision, only the prior
    kinds, zeroed_kinds = result["vision"]["by_kind"], result["zeroed"]["by_kind"]
    assert kinds["count"]["exact_match"] >= 0.95 and zeroed_kinds["count"]["exact_match"] <= 0.4
    assert kinds["small_word"]["exact_match"] >= 0.75  # read in the high-resolution slices
    assert kinds["shape"]["exact_match"] >= 0.85 and kinds["position"]["exact_match"] >= 0.8  # a lookup by colour
    for kind in ("colour", "shape", "position", "word", "small_word"):  # read from the image, lost without it
        chance = 1 / len(vqa.ANSWERS[kind])
        assert kinds[kind]["exact_match"] >= chance + 0.15, (kind, kinds[kind])
        assert kinds[kind]["exact_match"] >= zeroed_kinds[kind]["exact_match"] + 0.25, kind


@pytest.mark.xfail(strict=True, reason="issue 21 targets the shipped oracle does not meet yet: 83.2 % exact match "
                                       "(target 85 %), 20 dB noise costs nothing (target 5 points), colour of a "
                                       "named shape 46.5 % (chance + 30 = 46.7); see oracle_train.json")
def test_shipped_oracle_meets_the_issue_targets(shipped_ablation):
    held, result, _ = shipped_ablation
    accuracy, noisy = result["vision"]["exact_match"], result["noise_20db"]["exact_match"]
    assert accuracy >= 0.85 and accuracy - noisy >= 0.05
    for kind, row in result["vision"]["by_kind"].items():
        assert row["exact_match"] >= 1 / len(vqa.ANSWERS[kind]) + 0.3, kind


def test_shipped_oracle_files_and_tokenizer():
    """The shipped checkpoint fits its budget, loads, and its tokenizer is the one training builds."""
    from edgevlm.calibration.oracle_eval import evaluate_checkpoint
    from edgevlm.calibration.train_oracle import build_tokenizer

    from edgevlm import defaults
    from edgevlm.tokenizer import load_tokenizer

    model_dir = defaults.oracle_model_dir()
    assert defaults.ensure_default_model() == model_dir
    assert sum(p.stat().st_size for p in model_dir.iterdir()) <= 30 * 1024 ** 2
    assert load_tokenizer(model_dir).backend.get_vocab() == build_tokenizer().backend.get_vocab()
    summary = json.loads((model_dir / "oracle_train.json").read_text())
    assert summary["parameters"] <= 30_000_000
    result = evaluate_checkpoint(model_dir, count=24)
    assert 1.0 <= result["answer_perplexity"] < 2.0, result  # 1.23 on the first 600


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


def test_binding_probes_find_what_the_decoder_misses():
    """oracle_binding on the shipped oracle, small: the flat probe reads colour-of-a-named-shape and
    left/right from the overview rows far above chance (1500 scenes: 99.6 % both; ORACLE_DIAGNOSIS §8),
    and the report renders every reader."""
    from edgevlm import defaults
    from edgevlm.calibration.oracle_binding import binding_probes, markdown
    from edgevlm.checkpoint.loader import load_model

    loaded = load_model(defaults.oracle_model_dir(), dtype="float32")
    result = binding_probes(loaded.model, loaded.config, n_train=240, n_test=120, seed=0, reader_steps=200)
    assert result["colour"]["flat"] >= result["chance"]["colour"] + 0.4, result
    assert result["position"]["flat"] >= result["chance"]["position"] + 0.2, result
    for kind in ("colour", "position"):
        assert all(0 <= result[kind][r] <= 1 for r in ("attention", "attention+index"))
    text = "\n".join(markdown(result))
    assert "| flat |" in text and "| attention+index |" in text


def test_ablation_noise_at_any_level():
    """`noise_<N>db` conditions: 60 dB of noise leaves every answer as it was; unknown names fail loudly."""
    from edgevlm import defaults
    from edgevlm.calibration.oracle_diagnosis import ablation
    from edgevlm.checkpoint.loader import load_model

    loaded = load_model(defaults.oracle_model_dir(), dtype="float32")
    held = vqa.dataset("heldout", 12)
    result = ablation(loaded, held, seed=0, conditions=("vision", "noise_60db", "noise_0db"))
    assert result["noise_60db"]["same_as_vision"] == 1.0
    assert result["noise_0db"]["same_as_vision"] < 1.0  # noise as strong as the signal changes answers
    with pytest.raises(ValueError, match="unknown ablation condition 'noise_loud'"):
        ablation(loaded, held, seed=0, conditions=("vision", "noise_loud"))
