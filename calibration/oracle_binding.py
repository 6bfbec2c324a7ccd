"""Is the answer to a binding question in the oracle's vision rows, and in a form its decoder can read?

Two question kinds the trained oracle answers poorly need attributes bound across objects: the
colour of a named shape among distractors, and whether one named colour sits left or right of
another. Three readers are trained on a model's overview rows (the resampler's [Q, D] output for
the source view) of training-stream scenes and scored on held-out ones of the same stream:

- `flat`: a linear probe on the flattened rows: it may read a fact from *which* row holds it;
- `attention`: one learned query per named attribute attends over the rows by content (no row
  index, as the decoder's attention reads them: its values carry no position), an MLP answers;
- `attention+index`: the same reader with a learned embedding added per row index.

Colour of a named shape: a logistic probe per target shape (`flat`), or the target's query.
Left/right: `flat` regresses each colour's x-centre (ridge) and compares the two named colours'
predictions; the attention readers take one query per named colour and classify left/right.
If `flat` reads a fact the decoder does not answer, the information is there and the reading is
what fails; the attention readers say whether a content-matching reader can get it.
(`python -m edgevlm.calibration.oracle_diagnosis --skip ... --binding-train N`; ORACLE_DIAGNOSIS §8.)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgevlm.calibration import vqa

POSITION_STREAM_START = 10_000_000  # the left/right scenes' train-stream indices: apart from the colour ones


def overview_rows(model, config, scene: vqa.Scene) -> torch.Tensor:
    from edgevlm.calibration.oracle_experiments import scene_views

    return scene_views(model, config, scene)[-1][0].clone()


class AttentionReader(nn.Module):
    """Two content-matched reads of a view's rows (one learned query per key), then an MLP."""

    def __init__(self, keys: int, classes: int, width: int, rows: int, with_index: bool, hidden: int = 128):
        super().__init__()
        self.query = nn.Embedding(keys, hidden)
        self.key, self.value = nn.Linear(width, hidden), nn.Linear(width, hidden)
        self.index = nn.Parameter(torch.zeros(rows, width)) if with_index else None
        self.out = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Linear(hidden, classes))
        self.scale = hidden ** -0.5

    def read(self, rows: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        if self.index is not None:
            rows = rows + self.index
        weights = torch.softmax(torch.einsum("bqh,bh->bq", self.key(rows), self.query(key)) * self.scale, -1)
        return torch.einsum("bq,bqh->bh", weights, self.value(rows))

    def forward(self, rows, first, second):
        return self.out(torch.cat([self.read(rows, first), self.read(rows, second)], -1))


def attention_accuracy(rows: torch.Tensor, first, second, labels, keys: int, classes: int, n_train: int,
                       with_index: bool, seed: int, steps: int = 1500) -> float:
    torch.manual_seed(seed)
    reader = AttentionReader(keys, classes, rows.shape[-1], rows.shape[1], with_index)
    mean, std = rows[:n_train].mean((0, 1)), rows[:n_train].std((0, 1)) + 1e-5
    x = (rows - mean) / std
    optimizer = torch.optim.Adam(reader.parameters(), 2e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, n_train, (128,), generator=generator)
        loss = F.cross_entropy(reader(x[i], first[i], second[i]), labels[i])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = reader(x[n_train:], first[n_train:], second[n_train:]).argmax(-1)
    return float((predicted == labels[n_train:]).float().mean())


def _colour_of_shape(model, config, n_train: int, n_test: int, seed: int, steps: int) -> dict:
    from edgevlm.calibration.oracle_experiments import logistic_probe

    samples = [vqa.sample("train", i, kinds=("colour",)) for i in range(n_train + n_test)]
    rows = torch.stack([overview_rows(model, config, s.scene) for s in samples])
    target = torch.tensor([vqa.KINDS.index(s.question.split()[-1].rstrip("?")) for s in samples])
    colour = torch.tensor([list(vqa.COLOURS).index(s.answer) for s in samples])
    flat, labels = rows.flatten(1).numpy(), colour.numpy()
    right = total = 0
    for k in range(len(vqa.KINDS)):  # the flat probe has no query: one probe per named shape
        mask = (target == k).numpy()
        x, y = flat[mask], labels[mask]
        cut = int(mask[:n_train].sum())
        right += logistic_probe(x[:cut], y[:cut], x[cut:], y[cut:], seed) * (len(y) - cut)
        total += len(y) - cut
    out = {"flat": right / total, "test_samples": n_test}
    for with_index in (False, True):
        out["attention+index" if with_index else "attention"] = attention_accuracy(
            rows, target, target, colour, len(vqa.KINDS), len(vqa.COLOURS), n_train, with_index, seed, steps)
    return out


def _left_right(model, config, n_train: int, n_test: int, seed: int, steps: int) -> dict:
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    colours = list(vqa.COLOURS)
    samples = [vqa.sample("train", POSITION_STREAM_START + i, kinds=("position",)) for i in range(n_train + n_test)]
    rows = torch.stack([overview_rows(model, config, s.scene) for s in samples])
    words = [s.question.split() for s in samples]  # "Is the A shape left or right of the B shape?"
    first = torch.tensor([colours.index(w[2]) for w in words])
    second = torch.tensor([colours.index(w[-2]) for w in words])
    side = torch.tensor([("left", "right").index(s.answer) for s in samples])
    flat = rows.flatten(1).numpy()
    scaler = StandardScaler().fit(flat[:n_train])
    z = scaler.transform(flat)
    regressions = {}
    for c in colours:  # each colour's x-centre, from every training scene that has it
        pairs = [(i, sh.centre[0] / s.scene.size[0]) for i, s in enumerate(samples[:n_train])
                 for sh in s.scene.shapes if sh.colour == c]
        regressions[c] = Ridge(alpha=100.0).fit(z[[i for i, _ in pairs]], [x for _, x in pairs])
    right = 0
    for i in range(n_train, n_train + n_test):
        xa = regressions[colours[int(first[i])]].predict(z[i:i + 1])[0]
        xb = regressions[colours[int(second[i])]].predict(z[i:i + 1])[0]
        right += int((xa >= xb) == bool(side[i]))
    out = {"flat": right / n_test, "test_samples": n_test}
    for with_index in (False, True):
        out["attention+index" if with_index else "attention"] = attention_accuracy(
            rows, first, second, side, len(colours), 2, n_train, with_index, seed, steps)
    return out


def binding_probes(model, config, n_train: int, n_test: int, seed: int, reader_steps: int = 1500) -> dict:
    """Held-out accuracy of each reader on each binding kind (chance: 1/6 and 1/2)."""
    return {"colour": _colour_of_shape(model, config, n_train, n_test, seed, reader_steps),
            "position": _left_right(model, config, n_train, n_test, seed, reader_steps),
            "chance": {"colour": 1 / len(vqa.COLOURS), "position": 0.5}}


def markdown(result: dict) -> list[str]:
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    lines = ["## Binding: is the answer in the overview rows, and readable by content? (held-out %)", "",
             "| reader | colour of a named shape | left/right of two named colours |", "|---|---|---|"]
    for reader in ("flat", "attention", "attention+index"):
        lines.append(f"| {reader} | {pct(result['colour'][reader])} | {pct(result['position'][reader])} |")
    lines += [f"| chance | {pct(result['chance']['colour'])} | {pct(result['chance']['position'])} |", ""]
    return lines
