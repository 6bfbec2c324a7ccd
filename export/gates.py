"""Numeric comparison of an artifact's output with the eager fp32 reference, and the quality gates
of SPEC section 5 keyed by precision."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def max_abs_error(ref: np.ndarray, test: np.ndarray) -> float:
    return float(np.max(np.abs(ref.astype(np.float64) - test.astype(np.float64))))


def relative_max_error(ref: np.ndarray, test: np.ndarray) -> float:
    """Max abs error divided by the output's scale (its max magnitude)."""
    return max_abs_error(ref, test) / max(float(np.max(np.abs(ref))), 1e-12)


def cosine(ref: np.ndarray, test: np.ndarray) -> float:
    a, b = ref.astype(np.float64).ravel(), test.astype(np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300))


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio: 10 log10(|ref|^2 / |ref - test|^2)."""
    ref64 = ref.astype(np.float64)
    noise = float(np.sum((ref64 - test.astype(np.float64)) ** 2))
    if noise == 0.0:
        return float("inf")
    return float(10 * np.log10(np.sum(ref64 ** 2) / noise))


@dataclass(frozen=True)
class Gate:
    metric: str  # relative_max_error | cosine | sqnr_db
    bound: float
    higher_is_better: bool

    def passes(self, value: float) -> bool:
        return value >= self.bound if self.higher_is_better else value <= self.bound

    def describe(self) -> str:
        return f"{self.metric} {'>=' if self.higher_is_better else '<='} {self.bound:g}"

    def to_dict(self) -> dict:
        return asdict(self)


GATES = {
    "fp32": Gate("relative_max_error", 1e-4, False),
    "fp16": Gate("cosine", 0.999, True),
}
QUANTIZED_GATE = Gate("sqnr_db", 25.0, True)


def gate_for(precision: str, weight_compression: str = "none") -> Gate:
    """SPEC section 5. Compressed weights (Core ML int8/palettized fp16 programs) make a quantized
    encoder, so they take the quantized gate whatever the activation precision."""
    if weight_compression not in (None, "none"):
        return QUANTIZED_GATE
    return GATES.get(precision, QUANTIZED_GATE)


def compare(ref: np.ndarray, test: np.ndarray) -> dict:
    return {"max_abs_error": max_abs_error(ref, test), "relative_max_error": relative_max_error(ref, test),
            "cosine": cosine(ref, test), "sqnr_db": sqnr_db(ref, test)}


# Task-accuracy gates (SPEC section 5, issue 5): the largest drop in the quality oracle's held-out
# exact-match accuracy, in points, an artifact may cost against the eager fp32 reference. Each row
# of `edgevlm quality` isolates one part (vision artifact + eager LLM, eager vision + decoder
# artifact) or runs the whole recipe; `edgevlm verify` re-applies the same gates to the stored report.
ACCURACY_DROP_POINTS = {"vision": 1.0, "decoder": 2.0, "end_to_end": 3.0}


@dataclass(frozen=True)
class AccuracyGate:
    component: str  # vision | decoder | end_to_end
    max_drop_points: float

    def passes(self, drop_points: float) -> bool:
        # Rounded: 3 answers of 300 is (248 - 245) / 300 * 100 = 1.0000000000000009 points in floats,
        # and a drop of exactly the bound passes. 1e-6 points is far below one answer of any sample.
        return round(drop_points, 6) <= self.max_drop_points

    def describe(self) -> str:
        return f"accuracy drop <= {self.max_drop_points:g} points"

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy_gate(component: str, bounds: dict | None = None) -> AccuracyGate:
    """The component's gate: the recipe's `quality.max_accuracy_drop` bound, else the default."""
    if component not in ACCURACY_DROP_POINTS:
        raise ValueError(f"no accuracy gate for component {component!r}; known: {sorted(ACCURACY_DROP_POINTS)}")
    return AccuracyGate(component, float((bounds or {}).get(component, ACCURACY_DROP_POINTS[component])))


def manifest_accuracy_gates(manifest: dict) -> dict[str, AccuracyGate]:
    """The gates a manifest records; exports made before they were recorded get the defaults."""
    stored = manifest["recipe"].get("accuracy_gates")
    if not stored:
        return {c: accuracy_gate(c) for c in ACCURACY_DROP_POINTS}
    return {c: AccuracyGate(**g) for c, g in stored.items()}


@dataclass(frozen=True)
class AgreementGate:
    """A slow emulated runtime (the QNN HTP emulator) scores a subset of the held-out samples, too
    few to resolve a 1-3 point bound (one answer in 60 is 1.7 points). Its simulated twin (the same
    QDQ model on the ORT CPU EP) scores every sample and takes the accuracy gate; the emulated row
    is judged by how many answers it shares with the twin on the subset, which says whether the
    twin's verdict stands for the artifact."""

    component: str
    min_same_answers: float = 0.95

    def passes(self, same_answers: int, samples: int) -> bool:
        return same_answers >= self.min_same_answers * samples

    def describe(self) -> str:
        return f"same answers as its QDQ model >= {100 * self.min_same_answers:g} %"

    def to_dict(self) -> dict:
        return asdict(self)
