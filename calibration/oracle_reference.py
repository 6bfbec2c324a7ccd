"""Auxiliary grounding supervision on the oracle's decoder while it trains.

The binding probes (calibration/oracle_binding.py, ORACLE_DIAGNOSIS §8) found the answers to
"what colour is the circle?" and "is the red shape left of the blue one?" in the vision rows, and
a decoder that does not fetch them: the answer loss alone has to teach it, through one token, to
look up each named object among the image rows and then compare. This head asks for the lookup
itself: at every question token that names one object of the scene (a colour or a shape kind
that only one shape has), a linear read-out of the decoder's hidden state after `layer` layers
must give that object's colour, shape and horizontal centre. The later layers then only have to
copy and compare. Like the scene head, it is thrown away after training; the checkpoint is the
plain model.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgevlm.calibration import vqa
from edgevlm.calibration.oracle_aux import COLOURS

KINDS = tuple(vqa.KINDS)


@lru_cache(maxsize=4)
def _name_tokens(tokenizer) -> dict[int, tuple[str, str]]:
    """token id -> ("colour" | "kind", name) for the names that are one token (all of them with the
    oracle's tokenizer, which is trained on the task's text)."""
    names = {}
    for field, values in (("colour", COLOURS), ("kind", KINDS)):
        for name in values:
            ids = tokenizer.encode(" " + name)
            if len(ids) == 1:
                names[ids[0]] = (field, name)
    return names


def reference_targets(scene: vqa.Scene, input_ids: torch.Tensor, question_start: int, tokenizer) -> torch.Tensor:
    """[R, 4] rows (token position, colour index, kind index, x-centre in [0, 1]) for every token
    from `question_start` on that names exactly one shape of the scene."""
    names = _name_tokens(tokenizer)
    rows = []
    for position in range(question_start, len(input_ids)):
        named = names.get(int(input_ids[position]))
        if named is None:
            continue
        field, name = named
        matches = [s for s in scene.shapes if getattr(s, field) == name]
        if len(matches) == 1:
            shape = matches[0]
            rows.append((position, COLOURS.index(shape.colour), KINDS.index(shape.kind),
                         shape.centre[0] / scene.size[0]))
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


class ReferenceHead(nn.Module):
    """Colour, shape and x-centre of the named object, read linearly from a decoder hidden state."""

    def __init__(self, width: int, layer: int):
        super().__init__()
        self.layer = layer  # index into the decoder's hidden states: 0 = embeddings, 1 = after layer 1, ...
        self.read = nn.Linear(width, len(COLOURS) + len(KINDS) + 1)

    def loss(self, hidden_states: tuple[torch.Tensor, ...], targets: list[torch.Tensor]) -> torch.Tensor:
        """hidden_states: the decoder's per-layer states [B, T, D]; targets: one [R, 4] per sample."""
        states = hidden_states[self.layer]
        picked = [states[i, t[:, 0].long()] for i, t in enumerate(targets) if len(t)]
        if not picked:
            return states.sum() * 0.0
        rows = torch.cat([t for t in targets if len(t)]).to(states.device)
        out = self.read(torch.cat(picked).float())
        n_colours = len(COLOURS)
        colour = F.cross_entropy(out[:, :n_colours], rows[:, 1].long())
        kind = F.cross_entropy(out[:, n_colours:n_colours + len(KINDS)], rows[:, 2].long())
        # x10 as in the scene head: a [0, 1] squared error starts near 0.05 where the others start near 1-2 nats
        x_centre = 10.0 * F.mse_loss(torch.sigmoid(out[:, -1]), rows[:, 3])
        return colour + kind + x_centre
