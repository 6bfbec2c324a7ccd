"""The option dataclasses of `edgevlm train-oracle` and `edgevlm quality`, apart from the code that
runs them: the CLI reads their defaults while it builds its parser, and that must not import torch
(`edgevlm --help` would take seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


SCENE_HEADS = ("flat", "rows", "both")  # TrainConfig.scene_head; calibration/oracle_aux.py SceneHead


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 4400  # the length of the schedule (39 min with 2 threads + 1 loader here, idle machine)
    batch_size: int = 16
    lr: float = 3e-4  # 1e-3 collapses onto the answer prior (calibration/ORACLE_DIAGNOSIS.md)
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    eval_samples: int = 600
    log_every: int = 20
    max_minutes: float | None = None  # a wall-clock cap; the step it stopped at is recorded
    stop_after: int | None = None  # end after this many steps, schedule unchanged (replays a capped run)
    workers: int = 0  # data-loader processes rendering and preprocessing samples ahead of the model
    # Curriculum: colour + count questions only for this many steps, then + shape + position for as
    # many, then every kind. Without it training settles on the answer prior before the vision tower
    # learns anything (calibration/ORACLE_DIAGNOSIS.md); 0 = every kind from the start.
    curriculum_steps: int = 300
    # Weight of the auxiliary scene loss on the vision rows (calibration/oracle_aux.py); 0 = answers only.
    scene_loss_weight: float = 1.0
    # The scene head's read-out (SCENE_HEADS): flat = linear on the flattened rows,
    # rows = one MLP per row, pooled (facts must sit in a row's content, where the decoder reads them),
    # both = rows for the shapes, flat for the word (the shipped oracle).
    scene_head: str = "both"
    # Weight of the grounding loss on the decoder (calibration/oracle_reference.py): at each question
    # token naming one object, the hidden state after `reference_layer` layers must give its colour,
    # shape and x-centre. 0 = off.
    reference_loss_weight: float = 1.0
    reference_layer: int = 2
    # (kind, weight) pairs: how often training draws each question kind (unnamed kinds 1; () = uniform).
    # The held-out set stays uniform over kinds; answers stay uniform within a kind.
    # More left/right and shape draws: their answers need the decoder to look a named object up.
    kind_weights: tuple[tuple[str, float], ...] = (("position", 1.8), ("shape", 1.3), ("count", 0.5))


@dataclass(frozen=True)
class QualityOptions:
    samples: int = 300  # held-out samples (the standard set is the first 300)
    # Question kinds the eager oracle answers less than this far above chance are left out of every
    # row: its guesses flip under any perturbation and would gate noise (quality.kinds_the_oracle_reads).
    min_kind_margin: float = 0.15
    ablation: bool = True  # the eager decoder ablation (weights x cache)
    ablation_group_size: int = 32
    layer_sqnr: bool = True
    kv_error: bool = True
    reuse: bool = False  # reuse an existing export in OUT/<recipe> instead of exporting again
    # Static patch count of the vision artifacts (None: the recipe's). The oracle's slices hold at
    # most 72 patches; padding them to a phone recipe's 1120 costs the HTP emulator ~4 s a slice.
    # Padded rows are masked, but they take part in calibration ranges: say so when it differs.
    max_patches: int | None = None
    # The x86 QNN HTP emulator (~0.6 s a slice at w8a16, ~4.6 s at w4a16) scores the first N held-out
    # samples, judged by agreement with the artifact's own QDQ model, which scores every sample on the
    # CPU EP and takes the accuracy gates (calibration/quality_rows.py). Other runtimes score every sample.
    emulated_samples: int | None = 60
    # on_stage(name, record | None): each long step's start and end (resources.StageRecorder; the CLI prints them)
    on_stage: Callable | None = None
