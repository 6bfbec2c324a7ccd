"""Train edgevlm-tiny, the quality oracle, on synthetic VQA (calibration/vqa.py) on the CPU.

Training sees exactly what inference and the exported artifacts see: each sample goes through
edgevlm's preprocessing (LLaVA-UHD slicing, NaViT patches, chat prompt with image placeholders)
and the real MiniCPMV forward (vision tower -> resampler -> embeddings -> Qwen2), with teacher
forcing and the loss on the answer tokens and the end-of-turn token only. AdamW, linear warm-up
then cosine decay, a fixed number of steps: the same seed reproduces the same checkpoint on the
same software stack. The result is written in the official layout (fp16 safetensors) through
the checkpoint writer, with the tokenizer trained on the task's text.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from edgevlm.calibration import vqa
from edgevlm.calibration.oracle_aux import SceneHead, scene_targets
from edgevlm.calibration.oracle_eval import answer_ids, evaluate_checkpoint
from edgevlm.calibration.oracle_reference import ReferenceHead, reference_targets
from edgevlm.calibration.options import TrainConfig  # noqa: F401  (re-exported; torch-free for the CLI)

log = logging.getLogger("edgevlm.train_oracle")
PRESET = "edgevlm-tiny"


def build_tokenizer():
    from edgevlm.tokenizer import Tokenizer
    from edgevlm.tokenizer import build_tokenizer as build

    backend, config = build("qwen2", 1024, extra_lines=tuple(vqa.corpus_lines()))
    return Tokenizer(backend, config, "generated (edgevlm-tiny)")


def encode_sample(sample: vqa.Sample, tokenizer, config) -> dict:
    """Preprocess one sample as inference does, then append the teacher-forced answer."""
    from edgevlm.preprocess import preprocess

    inputs = preprocess([sample.image()], sample.question, tokenizer, config)
    target = answer_ids(tokenizer, sample.answer)
    ids = torch.cat([inputs.input_ids, torch.tensor(target[:-1], dtype=torch.long)])
    labels = torch.full_like(ids, -100)
    prompt_len = len(inputs.input_ids)
    # Position p predicts token p+1: the last prompt position predicts the first answer token.
    labels[prompt_len - 1:] = torch.tensor(target, dtype=torch.long)
    question_start = int(inputs.image_bounds[:, 1].max()) if len(inputs.image_bounds) else 0
    return {"ids": ids, "labels": labels, "pixel_values": inputs.pixel_values, "tgt_sizes": inputs.tgt_sizes,
            "bounds": inputs.image_bounds, "scene": scene_targets(sample.scene),
            "refs": reference_targets(sample.scene, inputs.input_ids, question_start, tokenizer)}


def batch_loss(model, batch: list[dict], scene_head: SceneHead | None = None,
               reference_head: ReferenceHead | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(answer loss, scene loss, reference loss) of a right-padded batch, vision batched across
    samples. The answer loss is the mean cross-entropy over answer tokens; the other two are the
    auxiliary heads' (oracle_aux, oracle_reference; zero without the head)."""
    pixel_values = [pv for item in batch for pv in item["pixel_values"]]
    tgt_sizes = torch.cat([item["tgt_sizes"] for item in batch])
    device = next(model.parameters()).device
    vision = model.encode_images([pv.to(device) for pv in pixel_values], tgt_sizes)
    scene_loss = torch.zeros((), device=device)
    if scene_head is not None:
        scene_loss = scene_head.loss(vision, [len(item["pixel_values"]) for item in batch],
                                     [item["scene"] for item in batch])
    embeds, offset = [], 0
    for item in batch:
        n = len(item["pixel_values"])
        embeds.append(model.embed_inputs(item["ids"].to(device), vision[offset:offset + n], item["bounds"]))
        offset += n
    length = max(len(e) for e in embeds)
    width = embeds[0].shape[-1]
    inputs = torch.zeros(len(batch), length, width, device=device)
    mask = torch.zeros(len(batch), length, dtype=torch.long, device=device)
    labels = torch.full((len(batch), length), -100, dtype=torch.long, device=device)
    for i, (e, item) in enumerate(zip(embeds, batch)):
        inputs[i, :len(e)] = e
        mask[i, :len(e)] = 1
        labels[i, :len(e)] = item["labels"]
    out = model.llm.model(inputs_embeds=inputs, attention_mask=mask, output_hidden_states=reference_head is not None)
    hidden = out.last_hidden_state
    reference_loss = torch.zeros((), device=device)
    if reference_head is not None:
        reference_loss = reference_head.loss(out.hidden_states, [item["refs"] for item in batch])
    # The vocabulary projection only where there is a label: a few positions per sample, not every prompt token.
    answered = labels != -100
    logits = model.llm.lm_head(hidden[answered])
    return F.cross_entropy(logits.float(), labels[answered]), scene_loss, reference_loss


def _vision_gradient_share(model) -> float:
    """The vision tower + resampler's share of the squared gradient norm: the collapse detector.
    When it falls towards zero the decoder is answering from the question alone
    (calibration/ORACLE_DIAGNOSIS.md: 47 % at step 0, 0.6 % by step 50 in the collapsed oracle). With
    the scene loss on, the share includes that loss's gradient (0.95-0.98 in the shipped run), so it
    no longer tells whether the decoder uses vision: the held-out ablation does."""
    vision, total = 0.0, 0.0
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        sq = float(p.grad.detach().float().pow(2).sum())
        total += sq
        if name.startswith(("vpm.", "resampler.")):
            vision += sq
    return vision / total if total else 0.0


def _warmup_lr(step: int, peak: float, warmup_steps: int) -> float:
    return peak * min(1.0, (step + 1) / warmup_steps)


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return _warmup_lr(step, cfg.lr, cfg.warmup_steps)
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def build_model(seed: int):
    """The preset's model with the checkpoint writer's seeded per-key initialisation (small normal
    weights, unit norms, random resampler queries: module defaults would leave the queries at zero,
    and identical queries pool every slice into one vector)."""
    from edgevlm.checkpoint.layout import build_on_meta, expected_parameters
    from edgevlm.checkpoint.loader import _finish_meta_model
    from edgevlm.checkpoint.writer import init_tensor
    from edgevlm.presets import get_preset

    config = get_preset(PRESET).build_config()
    model = build_on_meta(config)
    state = {k: init_tensor(k, shape, seed) for k, (shape, _) in expected_parameters(config).items()}
    model.load_state_dict(state, strict=False, assign=True)
    _finish_meta_model(model, config)
    return config, model


class _Batches(torch.utils.data.Dataset):
    """Batch `step` of the training stream: a pure function of the step, so workers keep order."""

    def __init__(self, cfg: TrainConfig, tokenizer, config):
        self.cfg, self.tokenizer, self.config = cfg, tokenizer, config

    def __len__(self) -> int:
        return self.cfg.steps

    def __getitem__(self, step: int) -> list[dict]:
        size, kinds = self.cfg.batch_size, curriculum_kinds(step, self.cfg.curriculum_steps)
        named = dict(self.cfg.kind_weights)
        weights = tuple(named.get(k, 1.0) for k in kinds) if named else None
        return [encode_sample(vqa.sample("train", step * size + i, kinds=kinds, weights=weights), self.tokenizer,
                              self.config) for i in range(size)]


def curriculum_kinds(step: int, curriculum_steps: int) -> tuple[str, ...]:
    """The question kinds of a training step: colour + count first (their answers need the pixels and
    break the answer-prior collapse), then + shape + position, then every kind."""
    if step < curriculum_steps:
        return ("count", "colour")
    if step < 2 * curriculum_steps:
        return ("count", "colour", "shape", "position")
    return vqa.QUESTION_KINDS


def train(out_dir: Path, cfg: TrainConfig, show_progress: bool = True, metrics_path: Path | None = None,
          threads: int | None = None) -> dict:
    """Train, write the checkpoint to out_dir and return the summary (also saved as oracle_train.json)."""
    from edgevlm.checkpoint.writer import write_checkpoint
    from edgevlm.progress import progress_bar

    # Threads: the argument, else $EDGEVLM_TRAIN_THREADS, else every core.
    torch.set_num_threads(threads or int(os.environ.get("EDGEVLM_TRAIN_THREADS") or 0) or os.cpu_count() or 1)
    config, model = build_model(cfg.seed)
    tokenizer = build_tokenizer()
    loader = torch.utils.data.DataLoader(_Batches(cfg, tokenizer, config), batch_size=None, shuffle=False,
                                         num_workers=cfg.workers, prefetch_factor=4 if cfg.workers else None)
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "norm" in n or "embed" in n]
    decay = [p for n, p in model.named_parameters() if not (p.ndim < 2 or "norm" in n or "embed" in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    scene_head = None
    if cfg.scene_loss_weight:
        torch.manual_seed(cfg.seed)
        scene_head = SceneHead(config.query_num, config.llm.hidden_size, cfg.scene_head)
        groups.append({"params": list(scene_head.parameters()), "weight_decay": 0.0})
    reference_head = None
    if cfg.reference_loss_weight:
        torch.manual_seed(cfg.seed + 1)
        reference_head = ReferenceHead(config.llm.hidden_size, cfg.reference_layer)
        groups.append({"params": list(reference_head.parameters()), "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    history, window, scene_window, reference_window, vision_share = [], [], [], [], []
    steps_done, stopped_early = 0, False
    model.train()
    with (open(metrics_path, "w") if metrics_path else contextlib.nullcontext()) as metrics, \
            progress_bar(cfg.steps, "training edgevlm-tiny", enabled=show_progress) as advance:
        for step, batch in enumerate(loader):
            over_time = cfg.max_minutes is not None and time.perf_counter() - wall0 > cfg.max_minutes * 60
            if over_time or (cfg.stop_after is not None and step >= cfg.stop_after):
                stopped_early = True
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            loss, scene_loss, reference_loss = batch_loss(model, batch, scene_head, reference_head)
            optimizer.zero_grad(set_to_none=True)
            (loss + cfg.scene_loss_weight * scene_loss + cfg.reference_loss_weight * reference_loss).backward()
            vision_share.append(_vision_gradient_share(model))
            torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], cfg.grad_clip)
            optimizer.step()
            window.append(loss.item())
            scene_window.append(scene_loss.item())
            reference_window.append(reference_loss.item())
            steps_done = step + 1
            advance(1)
            if steps_done % cfg.log_every == 0 or steps_done == cfg.steps:
                record = {"step": steps_done, "loss": round(sum(window) / len(window), 4),
                          "lr": round(lr_at(step, cfg), 6), "wall_s": round(time.perf_counter() - wall0, 1),
                          "vision_grad_share": float(f"{sum(vision_share) / len(vision_share):.3g}")}
                if scene_head is not None:
                    record["scene_loss"] = round(sum(scene_window) / len(scene_window), 4)
                if reference_head is not None:
                    record["reference_loss"] = round(sum(reference_window) / len(reference_window), 4)
                window, scene_window, reference_window, vision_share = [], [], [], []
                history.append(record)
                log.info("step %d loss %.4f", record["step"], record["loss"], extra=record)
                if metrics:
                    metrics.write(json.dumps(record) + "\n")
                    metrics.flush()
    train_wall, train_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    model.eval()
    write_checkpoint(config, out_dir, dtype="float16", state_dict=model.state_dict(),
                     tokenizer_lines=tuple(vqa.corpus_lines()), overwrite=True, show_progress=False)
    summary = {"preset": PRESET, "config": asdict(cfg), "steps_done": steps_done, "stopped_early": stopped_early,
               "train_wall_s": round(train_wall, 1), "train_cpu_s": round(train_cpu, 1),
               "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in model.parameters()),
               "final_loss": history[-1]["loss"] if history else None, "torch": torch.__version__}
    if cfg.eval_samples:
        # The written fp16 checkpoint, loaded back in fp32: what ships is what is scored.
        result = evaluate_checkpoint(out_dir, cfg.eval_samples)
        summary["heldout"] = {k: v for k, v in result.items() if k != "answers"}
    (Path(out_dir) / "oracle_train.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
