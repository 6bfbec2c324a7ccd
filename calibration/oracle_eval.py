"""Score a model on the synthetic VQA held-out set: exact-match accuracy and answer perplexity.

`evaluate` takes plain functions, so the eager model, an exported recipe (`edgevlm run` on
artifacts) or anything else that answers a question about an image is scored the same way:

    generate_fn(image, question) -> answer text
    score_fn(image, question, answer) -> (summed negative log-likelihood, token count) of the
        answer tokens plus the stop token, under teacher forcing (optional: perplexity).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from edgevlm.calibration.vqa import QUESTION_KINDS, Sample, dataset
from edgevlm.progress import progress_bar

GenerateFn = Callable[[object, str], str]
ScoreFn = Callable[[object, str, str], tuple[float, int]]
HELDOUT_SIZE = 300  # the standard held-out set: `heldout` split, indices 0..299


def normalise(text: str) -> str:
    return " ".join(text.strip().rstrip(".").split()).casefold()


def heldout(count: int = HELDOUT_SIZE) -> list[Sample]:
    """The first `count` held-out samples: the same set whatever model is scored."""
    return dataset("heldout", count)


def evaluate(samples: Sequence[Sample], generate_fn: GenerateFn, score_fn: ScoreFn | None = None,
             keep_answers: bool = False, description: str = "held-out VQA") -> dict:
    """Accuracy overall and per question kind; perplexity when score_fn is given."""
    # a bar on a terminal; in a log, a count line every 30 s (scoring a recipe takes minutes)
    with progress_bar(len(samples), description, report_every_s=30) as advance:
        return _evaluate(samples, generate_fn, score_fn, keep_answers, advance)


def _evaluate(samples, generate_fn, score_fn, keep_answers, advance) -> dict:
    correct, by_kind, answers = 0, {k: [0, 0] for k in QUESTION_KINDS}, []
    nll, tokens = 0.0, 0
    for s in samples:
        advance()
        image = s.image()
        predicted = generate_fn(image, s.question)
        ok = normalise(predicted) == normalise(s.answer)
        correct += ok
        by_kind[s.kind][0] += ok
        by_kind[s.kind][1] += 1
        if keep_answers:
            answers.append({"index": s.index, "kind": s.kind, "question": s.question, "answer": s.answer,
                            "predicted": predicted, "correct": ok})
        if score_fn is not None:
            n, t = score_fn(image, s.question, s.answer)
            nll, tokens = nll + n, tokens + t
    result = {
        "samples": len(samples),
        "exact_match": correct / max(1, len(samples)),
        "by_kind": {k: {"exact_match": c / n, "samples": n} for k, (c, n) in by_kind.items() if n},
    }
    if score_fn is not None:
        result["answer_perplexity"] = math.exp(nll / max(1, tokens))
        result["answer_tokens"] = tokens
    if keep_answers:
        result["answers"] = answers
    return result


def answer_ids(tokenizer, answer: str) -> list[int]:
    """Target ids of an answer: its tokens then the chat format's end-of-turn token."""
    return tokenizer.encode(answer) + [tokenizer.token_id(tokenizer.eos_token)]


def eager_generate_fn(loaded, max_new_tokens: int = 8) -> GenerateFn:
    from edgevlm.generate import generate
    from edgevlm.preprocess import preprocess

    def run(image, question: str) -> str:
        inputs = preprocess([image], question, loaded.tokenizer, loaded.config, loaded.processor_config)
        return generate(loaded, inputs, max_new_tokens=max_new_tokens).text

    return run


def eager_score_fn(loaded) -> ScoreFn:
    from edgevlm.preprocess import preprocess

    @torch.inference_mode()
    def score(image, question: str, answer: str) -> tuple[float, int]:
        model, tok, cfg = loaded.model, loaded.tokenizer, loaded.config
        inputs = preprocess([image], question, tok, cfg, loaded.processor_config)
        target = answer_ids(tok, answer)
        ids = torch.cat([inputs.input_ids, torch.tensor(target[:-1], dtype=torch.long)])
        vision = model.encode_images(inputs.pixel_values, inputs.tgt_sizes, inputs.temporal_ids)
        embeds = model.embed_inputs(ids, vision, inputs.image_bounds)
        logits = model.llm(inputs_embeds=embeds[None].to(loaded.dtype)).logits[0].float()
        start = len(inputs.input_ids) - 1  # the logits that predict the first answer token
        logp = torch.log_softmax(logits[start:start + len(target)], dim=-1)
        return float(-logp[torch.arange(len(target)), torch.tensor(target)].sum()), len(target)

    return score


def evaluate_checkpoint(model_dir, count: int = HELDOUT_SIZE, dtype: str = "float32",
                        keep_answers: bool = False) -> dict:
    """The eager reference's held-out score for a checkpoint directory (e.g. the shipped oracle)."""
    from edgevlm.checkpoint.loader import load_model

    loaded = load_model(model_dir, dtype=dtype)
    return evaluate(heldout(count), eager_generate_fn(loaded), eager_score_fn(loaded), keep_answers)


# ---- exported artifacts (`edgevlm export` output), through export/run.py's runner ------------------


def pipeline_fns(pipeline, max_new_tokens: int = 8) -> tuple[GenerateFn, ScoreFn]:
    """generate_fn and score_fn over an export/run.py Pipeline (artifacts, eager parts or a mix)."""

    def run(image, question: str) -> str:
        return pipeline.generate([image], question, max_new_tokens=max_new_tokens).text

    def score(image, question: str, answer: str) -> tuple[float, int]:
        target = answer_ids(pipeline.tokenizer, answer)
        return pipeline.score([image], question, target), len(target)

    return run, score


def artifact_fns(artifacts_dir, max_new_tokens: int = 8) -> tuple[GenerateFn, ScoreFn]:
    """generate_fn and score_fn that use only the exported artifacts (vision artifact + decoder)."""
    from edgevlm.export.run import ArtifactRunner

    return pipeline_fns(ArtifactRunner(artifacts_dir), max_new_tokens)


def evaluate_artifacts(artifacts_dir, count: int = HELDOUT_SIZE, keep_answers: bool = False) -> dict:
    """The held-out score of an exported recipe: the same samples and metrics as the eager model."""
    generate_fn, score_fn = artifact_fns(artifacts_dir)
    return evaluate(heldout(count), generate_fn, score_fn, keep_answers)
