"""`edgevlm train-oracle` and `edgevlm oracle-eval`: train and score edgevlm-tiny, the quality oracle."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


def train_oracle_args(p: argparse.ArgumentParser) -> None:
    from edgevlm.calibration.options import SCENE_HEADS, TrainConfig

    d = TrainConfig()
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write (replaced if present)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", type=int, default=d.steps, help="schedule length in optimizer steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (AdamW, warm-up then cosine)")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--minutes", type=float, help="wall-clock cap: stop early (the step reached is recorded)")
    p.add_argument("--stop-after", type=int, help="stop after N steps without changing the schedule "
                                                   "(replays a run that --minutes cut short)")
    p.add_argument("--curriculum-steps", type=int, default=d.curriculum_steps,
                   help="steps of colour + count questions only, then as many adding shape + position, then every "
                        "kind (0: every kind from the start)")
    p.add_argument("--scene-loss-weight", type=float, default=d.scene_loss_weight,
                   help="weight of the auxiliary scene loss on the vision rows (calibration/oracle_aux.py; 0: off)")
    p.add_argument("--scene-head", choices=SCENE_HEADS, default=d.scene_head,
                   help="the scene loss's read-out: flat (linear on the flattened rows), rows (an MLP per row, "
                        "pooled: facts must sit in a row's content) or both (rows for the shapes, flat for the word)")
    p.add_argument("--reference-loss-weight", type=float, default=d.reference_loss_weight,
                   help="weight of the grounding loss on the decoder: at each question token naming one object, "
                        "its colour, shape and x-centre (calibration/oracle_reference.py; 0: off)")
    p.add_argument("--reference-layer", type=int, default=d.reference_layer,
                   help="the decoder hidden state the grounding loss reads (1 = after the first layer)")
    p.add_argument("--kind-weights", type=_kind_weights, default=d.kind_weights, metavar="KIND=W,...",
                   help="how often training draws each question kind (default: "
                        f"{','.join(f'{k}={w:g}' for k, w in d.kind_weights)}; unnamed kinds 1; '' = uniform; "
                        "the held-out set stays uniform)")
    p.add_argument("--threads", type=int, help="torch threads (default: every core)")
    p.add_argument("--workers", type=int, default=1, help="data-loader processes preparing batches")
    p.add_argument("--eval-samples", type=int, default=d.eval_samples, help="held-out samples scored at the end")
    p.add_argument("--log-every", type=int, default=d.log_every, help="steps per metrics record")
    p.add_argument("--metrics", type=Path, help="JSON-lines training metrics (default: OUT.train.jsonl)")
    p.add_argument("--json", type=Path, help="also write the result (schema edgevlm.train-oracle/1: the training "
                                             "summary, the checkpoint's files with sha256) here")


def _kind_weights(text: str) -> tuple[tuple[str, float], ...]:
    from edgevlm.calibration.vqa import QUESTION_KINDS

    pairs = []
    for item in filter(None, text.split(",")):
        kind, _, weight = item.partition("=")
        if kind not in QUESTION_KINDS:
            raise argparse.ArgumentTypeError(f"unknown question kind {kind!r}; known: {', '.join(QUESTION_KINDS)}")
        try:
            value = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: the weight must be a number, e.g. {kind}=1.5") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{item!r}: the weight must be above 0")
        pairs.append((kind, value))
    return tuple(pairs)


def train_oracle(args) -> int:
    import torch

    from edgevlm.calibration.train_oracle import TrainConfig, train
    from edgevlm.errors import ConfigError

    if args.steps < 1 or args.batch_size < 1:
        raise ConfigError("--steps and --batch-size must be at least 1", "e.g. --steps 1500 --batch-size 8")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.reference_loss_weight and not 1 <= args.reference_layer <= 3:  # edgevlm-tiny's decoder has 3 layers
        raise ConfigError(f"--reference-layer {args.reference_layer} is not a decoder layer of edgevlm-tiny",
                          "use 1, 2 or 3")
    cfg = dataclasses.replace(TrainConfig(), seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                              warmup_steps=args.warmup_steps, max_minutes=args.minutes, stop_after=args.stop_after,
                              workers=args.workers, eval_samples=args.eval_samples,
                              curriculum_steps=args.curriculum_steps, scene_loss_weight=args.scene_loss_weight,
                              scene_head=args.scene_head, kind_weights=args.kind_weights,
                              reference_loss_weight=args.reference_loss_weight, reference_layer=args.reference_layer,
                              log_every=max(1, args.log_every))
    metrics = args.metrics or args.out.with_name(args.out.name + ".train.jsonl")
    summary = train(args.out, cfg, show_progress=True, metrics_path=metrics, threads=args.threads)
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out} (metrics: {metrics})", file=sys.stderr)
    if args.json:
        from edgevlm.cli.json_result import files_written, write_json

        write_json(args.json, {"schema": "edgevlm.train-oracle/1", "out": str(args.out), "metrics": str(metrics),
                               "summary": summary, "files": files_written(args.out)})
    return 0


def oracle_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, help="checkpoint directory (default: the shipped edgevlm-tiny)")
    p.add_argument("--artifacts", type=Path, help="score exported artifacts (an `edgevlm export` directory) instead")
    p.add_argument("--samples", type=int, default=300, help="held-out samples (the standard set is the first 300)")
    p.add_argument("--json", type=Path, help="also write the result, with every answer, here")


def oracle_eval(args) -> int:
    from edgevlm import defaults
    from edgevlm.calibration.oracle_eval import evaluate_artifacts, evaluate_checkpoint

    if args.artifacts:
        result = evaluate_artifacts(args.artifacts, args.samples, keep_answers=bool(args.json))
    else:
        result = evaluate_checkpoint(args.model or defaults.oracle_model_dir(), args.samples,
                                     keep_answers=bool(args.json))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "answers"}, indent=2))
    return 0
