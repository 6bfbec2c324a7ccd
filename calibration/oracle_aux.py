"""Auxiliary scene supervision on the vision rows while the oracle trains.

The decoder's answer loss reaches the vision tower only through a 3-layer decoder that first has
to learn where to look, so binding (the shape of *the red one*, left/right of two named shapes)
and small text are learned slowly (calibration/ORACLE_DIAGNOSIS.md §6). A head on the resampler
outputs (linear on the flattened rows, or an MLP per row pooled over them: SceneHead), trained
beside the answer loss and thrown away afterwards, tells the vision pathway directly what a scene
holds: which (colour, shape) pairs, how many shapes, where each colour sits left to right, and
which word is written. The shipped checkpoint is the plain MiniCPM-V model; the head never ships.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgevlm.calibration import vqa
from edgevlm.calibration.options import SCENE_HEADS

COLOURS = tuple(vqa.COLOURS)
PAIRS = tuple((c, k) for c in COLOURS for k in vqa.KINDS)
MAX_SHAPES = 6
WORDS = vqa.WORDS  # class len(WORDS) = no word


def scene_targets(scene: vqa.Scene) -> dict[str, torch.Tensor]:
    """What the head must read from one image: pair multi-hot, count, x-centre per colour (with a
    mask for absent colours) and the word (or none)."""
    pairs = torch.zeros(len(PAIRS))
    x_centre = torch.zeros(len(COLOURS))
    x_mask = torch.zeros(len(COLOURS))
    for shape in scene.shapes:
        pairs[PAIRS.index((shape.colour, shape.kind))] = 1.0
        i = COLOURS.index(shape.colour)
        x_centre[i] = shape.centre[0] / scene.size[0]
        x_mask[i] = 1.0
    word = WORDS.index(scene.text) if scene.text else len(WORDS)
    return {"pairs": pairs, "count": torch.tensor(min(len(scene.shapes), MAX_SHAPES)), "x_centre": x_centre,
            "x_mask": x_mask, "word": torch.tensor(word)}


class SceneHead(nn.Module):
    """The read-out of a view's vision rows [Q, D] per target.

    `flat`: one linear map of the view's flattened rows. It can read a fact from *which* row holds
    it, a layout the decoder cannot use: its attention matches rows by content, and the values it
    copies carry no row index (the shipped oracle's rows give colour-of-a-named-shape and left/right
    to a flat linear probe at 99.6 % while the decoder answers 40 % and 44 %; ORACLE_DIAGNOSIS §8).
    `rows`: one MLP applied to every row alike, max- and mean-pooled over the view's rows, then the
    linear targets: a fact counts only if some row's content carries it, as the decoder reads it.
    `both`: the rows read-out for pairs, count and positions, the flat one for the word (a word
    spans several rows: the per-row read-out alone cost the word kinds 24 and 12 points, §8)."""

    def __init__(self, queries: int, width: int, kind: str = "flat", hidden: int = 256):
        super().__init__()
        if kind not in SCENE_HEADS:
            raise ValueError(f"unknown scene head {kind!r}; known: {', '.join(SCENE_HEADS)}")
        self.kind = kind
        flat, pooled = queries * width, 2 * hidden
        if kind != "flat":
            self.row = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        scene = flat if kind == "flat" else pooled
        self.pairs = nn.Linear(scene, len(PAIRS))
        self.count = nn.Linear(scene, MAX_SHAPES + 1)
        self.x_centre = nn.Linear(scene, len(COLOURS))
        self.word = nn.Linear(pooled if kind == "rows" else flat, len(WORDS) + 1)

    def _features(self, vision: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scene features, word features) per view."""
        flat = vision.flatten(1)
        if self.kind == "flat":
            return flat, flat
        rows = self.row(vision)
        pooled = torch.cat([rows.amax(1), rows.mean(1)], -1)
        return pooled, (pooled if self.kind == "rows" else flat)

    def logits(self, vision: torch.Tensor, views_per_image: list[int]) -> dict[str, torch.Tensor]:
        """vision: [views, Q, D] for a batch of images whose views are consecutive, overview first.
        Pairs, count and positions are read from each image's overview; the word from the most
        confident view (a small word is legible only in a slice). One row per image."""
        scene, for_word = self._features(vision)
        starts = torch.tensor([0] + views_per_image[:-1]).cumsum(0)
        overview = scene[starts]
        word = torch.stack([self.word(for_word[s:s + n]).amax(0) for s, n in zip(starts.tolist(), views_per_image)])
        return {"pairs": self.pairs(overview), "count": self.count(overview), "x_centre": self.x_centre(overview),
                "word": word}

    def loss(self, vision: torch.Tensor, views_per_image: list[int], targets: list[dict]) -> torch.Tensor:
        out = self.logits(vision, views_per_image)
        stack = {key: torch.stack([t[key] for t in targets]).to(vision.device) for key in targets[0]}
        pairs = F.binary_cross_entropy_with_logits(out["pairs"], stack["pairs"], reduction="sum")
        pairs = pairs / max(1.0, float(stack["pairs"].sum()))
        count = F.cross_entropy(out["count"], stack["count"])
        x_error = (torch.sigmoid(out["x_centre"]) - stack["x_centre"]) ** 2 * stack["x_mask"]
        # x10: a [0, 1] position's squared error is ~0.05 untrained, where the other terms start near 1-2 nats
        x_centre = 10.0 * x_error.sum() / max(1.0, float(stack["x_mask"].sum()))
        word = F.cross_entropy(out["word"], stack["word"])
        return pairs + count + x_centre + word
