"""What a backend provides, and the registry that finds one by name.

Backends are imported lazily by name, so a missing SDK (coremltools, onnxruntime-qnn, qai-hub)
only matters when that backend is used, and then fails with an error naming the package.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgevlm.errors import EdgeVLMError, EnvironmentProblem


class BackendError(EdgeVLMError):
    """A backend cannot export or run something; names the op/shape/dtype and the way out."""


class MissingTool(EnvironmentProblem, BackendError):
    """A package, SDK, compiler or credential this machine lacks (exit code 3, not bad input)."""


@dataclass
class VisionExportRequest:
    """Everything a backend needs to write a vision-encoder artifact."""

    encoder: Any  # export.vision.StaticVisionEncoder (fp32, eval)
    example: dict[str, np.ndarray]  # one static-shape input batch
    calibration: list[dict[str, np.ndarray]]  # input batches for quantization (may be empty)
    precision: str  # fp32 | fp16 | int8 | w8a16 | w4a16
    options: dict = field(default_factory=dict)
    stem: str = "vision"  # file name stem, from the naming grammar
    # model and preprocessing facts a backend may write into its artifact (Core ML metadata):
    # model_id, model_version, patch_size, norm_mean, ... (export/driver.py model_facts)
    model_facts: dict = field(default_factory=dict)


@dataclass
class WrittenArtifact:
    """A file (or package directory) a backend wrote, plus what the manifest should say about it."""

    path: Path
    runtime: str  # the runtime that executes it on device, e.g. "coreml", "onnxruntime-qnn"
    details: dict = field(default_factory=dict)  # backend specifics recorded in the manifest


@runtime_checkable
class VisionBackend(Protocol):
    """What every vision backend provides; callers use these members directly (no probing), and
    tests/test_backends_protocol.py checks every registered backend has them all."""

    name: str
    # True when `run` simulates the device runtime (HTP emulator, Core ML interpreter): its results
    # are numerics, its timings are not device latency.
    emulated: bool
    # The additive attention bias for padded patches the encoder is exported with: a quantized
    # runtime needs a small one (its scores share a 16-bit range with it), float ones take MASK_NEG.
    mask_value: float
    # How many slices per verification image `verify` runs by default (None: all): slow emulators
    # check one per image unless asked for all (--all-slices).
    verify_slices_per_case: int | None

    def target_token(self, options: dict) -> str:
        """The <target> field of the artifact naming grammar (DESIGN.md) for these recipe options."""

    def export(self, request: VisionExportRequest, out_dir: Path) -> list[WrittenArtifact]:
        """Write the artifact(s) into out_dir (a temporary directory the caller publishes)."""

    def runtime_available(self) -> str | None:
        """Why this machine cannot execute the artifact, or None if it can."""

    def describe_io(self, artifact: Path, details: dict) -> dict:
        """{"inputs"|"outputs": {name: (shape, dtype)}} as the artifact itself declares them."""

    def run(self, artifact: Path, inputs: dict[str, np.ndarray], details: dict) -> np.ndarray:
        """Execute the artifact on this machine's runtime; returns vision_embeds."""


# name -> "module:Class"; modules live in this package and are imported only when asked for.
VISION_BACKENDS = {
    "ort": "edgevlm.backends.ort:OrtVisionBackend",
    "coreml": "edgevlm.backends.coreml:CoreMLVisionBackend",
    "qnn": "edgevlm.backends.qnn:QnnVisionBackend",
}


def get_vision_backend(name: str) -> VisionBackend:
    try:
        target = VISION_BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown vision backend {name!r}", f"known backends: {', '.join(VISION_BACKENDS)}") from None
    module, cls = target.split(":")
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise  # a missing SDK inside the backend reports itself
        raise BackendError(f"the {name} vision backend ({module}) is not part of this edgevlm build yet",
                           "use the `ort` recipe, which is available") from None
    return getattr(loaded, cls)()


@dataclass(frozen=True)
class DecoderSupport:
    """What a decoder backend accepts in a recipe's decoder target: the one source of the allowed
    values and of the defaults (export/recipes.py checks targets against it)."""

    weights: tuple[str, ...]  # weight schemes
    kv_formats: tuple[str, ...]  # KV-cache storage formats (export/decoder/kv_cache.py)
    attention: tuple[str, ...]  # attention strategies (export/decoder/graph.py); the first is the default
    embeddings: tuple[str, ...]  # token-embedding table formats
    weight_formats: tuple[str, ...] = ()  # encodings of quantized weights (option `weight_format`)
    options: dict = field(default_factory=dict)  # backend option -> default
    vision_in_artifact: bool = False  # can carry the vision encoder (`vision_in_pte`)
    # weight scheme -> (problem, fix) for schemes asked for often and refused on purpose
    refused_weights: dict = field(default_factory=dict)

    @property
    def default_attention(self) -> str:
        return self.attention[0]


class DecoderBackend(Protocol):
    """Writes, opens and checks one kind of decoder artifact (backends/executorch_decoder.py: .pte;
    backends/ort_decoder.py: .onnx). Everything torch- or runtime-heavy is imported inside the methods."""

    name: str
    support: DecoderSupport

    def weight_plan(self, target, awq=None):
        """What the float LLM becomes for this target (export/llm_build.WeightPlan)."""

    def export(self, loaded, recipe, target, out: Path, built, parity: dict, vision=None) -> dict:
        """Write the artifact(s) of a built LLM into out; returns the manifest entry."""

    def open_session(self, root: Path, entry: dict):
        """A DecoderSession (export/decoder/session.py) over a written artifact."""

    def verify(self, root: Path, entry: dict) -> list:
        """Backend-specific checks of a written artifact beyond checksums and parity (CheckResults)."""

    def describe_io(self, config, target) -> tuple[list[dict], list[dict]]:
        """(inputs, outputs) of the text_decoder method or graph, as the manifest lists them."""


# name -> "module:Class", imported only when asked for (as VISION_BACKENDS)
DECODER_BACKENDS = {
    "executorch": "edgevlm.backends.executorch_decoder:ExecuTorchDecoderBackend",
    "ort": "edgevlm.backends.ort_decoder:OrtDecoderBackend",
}


def get_decoder_backend(name: str) -> DecoderBackend:
    try:
        module, cls = DECODER_BACKENDS[name].split(":")
    except (KeyError, AttributeError, TypeError):
        raise BackendError(f"unknown decoder backend {name!r}",
                           f"known decoder backends: {', '.join(DECODER_BACKENDS)}") from None
    return getattr(importlib.import_module(module), cls)()


def require(package: str, install: str, purpose: str):
    """Import an optional SDK or fail with the pip line that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise MissingTool(f"{purpose} needs the `{package}` package, which is not importable ({e})",
                           f"install it: pip install {install}") from None
