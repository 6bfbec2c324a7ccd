"""`edgevlm run`: image + prompt -> text from the artifacts alone (manifest, artifacts, tokenizer).

What an app does: preprocess on the host (manifest's config and preprocessing block), run every
slice through the vision-encoder artifact, embed the prompt tokens with the decoder's
`token_embedding` (a .pte method or an ONNX graph: export/decoder/session.py), overwrite each image placeholder run with its slice's vision
embeddings, prefill with `text_decoder`, then decode greedily one token at a time through the
program's own KV cache. No model weights are read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgevlm.backends.base import get_vision_backend
from edgevlm.errors import EdgeVLMError, PromptError
from edgevlm.export.decoder import pte_names as names
from edgevlm.export.decoder.session import DecoderSession
from edgevlm.export.manifest import read_manifest
from edgevlm.export.vision import INPUT_NAMES as VISION_INPUTS, ResamplerSpec, vision_inputs

VISION_PREFERENCE = ("fp32", "fp16", "int8", "w8a16", "w4a16")  # most faithful runnable artifact first
PTE_VISION = names.VISION_ENCODER  # the decoder .pte's own vision encoder (recipe `vision_in_pte: true`)


@dataclass
class ArtifactGeneration:
    prompt_tokens: int
    tokens: list[int] = field(default_factory=list)
    step_logits: list[torch.Tensor] = field(default_factory=list)
    text: str = ""
    stopped_by: str = ""  # stop_token | max_new_tokens | max_seq_len
    vision_artifact: str = ""
    timings: dict = field(default_factory=dict)  # vision_ms, prefill_ms, decode_ms, decode_steps

    def speed_line(self, vision_label: str | None = None) -> str:
        """What a runner prints after a generation: where the time went and the rates. vision_label
        says how the vision time was measured when it is not device latency (an emulator)."""
        t = self.timings
        prefill_rate = self.prompt_tokens * 1000 / max(t["prefill_ms"], 1e-9)
        how = f" ({vision_label})" if vision_label else ""
        line = f"vision {t['vision_ms']:.0f} ms{how}, prefill {t['prefill_ms']:.0f} ms ({prefill_rate:.0f} tok/s)"
        if t["decode_steps"]:
            decode_rate = t["decode_steps"] * 1000 / max(t["decode_ms"], 1e-9)
            line += f", decode {decode_rate:.1f} tok/s over {t['decode_steps']} steps"
        return line


class Pipeline:
    """Preprocess -> vision embeddings -> token embeddings -> prefill -> greedy decode.

    The vision function and the decoder session are parts, so one artifact at a time can be
    swapped in beside eager parts (the quality report isolates each artifact that way).
    """

    def __init__(self, config, tokenizer, preprocessing: dict, session: DecoderSession, max_seq_len: int,
                 vision_fn: Callable, vision_name: str = ""):
        self.config, self.tokenizer, self.preprocessing = config, tokenizer, preprocessing
        self.session, self.max_seq_len = session, max_seq_len
        self.vision_fn, self.vision_name = vision_fn, vision_name

    def _prompt_embeds(self, images, question: str):
        from edgevlm.preprocess import preprocess

        pre = self.preprocessing
        inputs = preprocess(images, question, self.tokenizer, self.config,
                            {"norm_mean": pre["norm_mean"], "norm_std": pre["norm_std"]})
        t = len(inputs.input_ids)
        if t >= self.max_seq_len:
            raise PromptError(f"the prompt is {t} tokens and the decoder's cache holds {self.max_seq_len}",
                              "use fewer or smaller images, a shorter question, or export with a larger max_seq_len")
        self.session.reset()
        embeds = self.session.embed(inputs.input_ids)
        start_vision = time.perf_counter()
        vision = self.vision_fn(inputs)
        vision_ms = (time.perf_counter() - start_vision) * 1000
        for (start, end), rows in zip(inputs.image_bounds.tolist(), vision):
            embeds[start:end] = rows
        return embeds, t, vision_ms

    def generate(self, images, question: str, max_new_tokens: int = 32,
                 on_token: Callable[[str], None] | None = None) -> ArtifactGeneration:
        embeds, t, vision_ms = self._prompt_embeds(images, question)
        result = ArtifactGeneration(prompt_tokens=t, vision_artifact=self.vision_name)
        stop_ids = self.tokenizer.stop_token_ids()
        position = t
        result.stopped_by = "max_new_tokens"
        with self.session.running():
            start = time.perf_counter()
            logits = self.session.step(embeds, 0)
            prefilled = time.perf_counter()
            for _ in range(max_new_tokens):
                result.step_logits.append(logits)
                next_id = int(logits.argmax())
                result.tokens.append(next_id)
                if next_id in stop_ids:
                    result.stopped_by = "stop_token"
                    break
                if on_token is not None:
                    on_token(self.tokenizer.decode([next_id]))
                if position >= self.max_seq_len:  # the token was produced, but the cache has no slot to feed it
                    result.stopped_by = "max_seq_len"
                    break
                logits = self.session.step(self.session.embed([next_id]), position)
                position += 1
            done = time.perf_counter()
        result.timings = {"vision_ms": vision_ms, "prefill_ms": (prefilled - start) * 1000,
                          "decode_ms": (done - prefilled) * 1000, "decode_steps": position - t}
        result.text = self.tokenizer.decode([i for i in result.tokens if i not in stop_ids])
        return result

    def score(self, images, question: str, target: list[int]) -> float:
        """Summed negative log-likelihood of `target` ids after the prompt (teacher forcing,
        one decoder step per target token, as decode runs)."""
        embeds, position, _ = self._prompt_embeds(images, question)
        with self.session.running():
            logits, nll = self.session.step(embeds, 0), 0.0
            for i, token in enumerate(target):
                nll -= float(torch.log_softmax(logits.float().reshape(-1), dim=-1)[token])
                if i + 1 < len(target):
                    logits = self.session.step(self.session.embed([token]), position)
                    position += 1
        return nll


class ArtifactRunner(Pipeline):
    """A Pipeline built from an `edgevlm export` directory alone (manifest, artifacts, tokenizer)."""

    def __init__(self, artifacts_dir: Path, verify: bool = True, vision: str = "auto"):
        """verify: check the sha256 of every file it will load (decoder, vision artifact, tokenizer)
        against the manifest first; False skips that, with a warning (`edgevlm run --no-verify`).
        vision: `auto` (the most faithful runnable vision artifact, else the decoder .pte's
        vision_encoder), `pte` (that method), or a vision artifact's file name; the native runner
        (`edgevlm-runner --vision`) chooses the same way."""
        from edgevlm.config import MiniCPMVConfig
        from edgevlm.export.decoder.session import open_decoder
        from edgevlm.export.integrity import check_files
        from edgevlm.tokenizer import load_tokenizer

        self.root = Path(artifacts_dir)
        self.manifest = read_manifest(self.root)
        if "config" not in self.manifest:
            raise EdgeVLMError(f"{self.root}/manifest.json has no model config", "re-export with this edgevlm version")
        decoders = [a for a in self.manifest["artifacts"] if a["part"] == "decoder"]
        if not decoders:
            raise EdgeVLMError(f"{self.root} has no decoder artifact",
                               "export one: edgevlm export --recipe ios-m4 (or android-sd8g3) --part all")
        self.decoder = decoders[0]
        self.vision, self.vision_backend = self._pick_vision(vision)
        check_files(self.root, self.manifest, [self.decoder] + ([self.vision] if self.vision else []), verify=verify)
        self._pte_vision = None  # the decoder .pte's vision_encoder method, loaded on first use
        super().__init__(MiniCPMVConfig.from_dict(self.manifest["config"], source=f"{self.root}/manifest.json"),
                         load_tokenizer(self.root / "tokenizer"), self.manifest["preprocessing"],
                         open_decoder(self.root, self.decoder),  # .pte or ONNX, from the entry's target
                         self.decoder["kv_cache"]["max_seq_len"], self.vision_embeds,
                         self.vision["file"] if self.vision else
                         f"{self.decoder['file']}:{PTE_VISION}" if self.vision_backend == PTE_VISION else "")

    def _pick_vision(self, choice: str = "auto"):
        """(vision artifact entry, its backend); (None, PTE_VISION) for the .pte's method; (None, why
        nothing can run) when no image can be encoded."""
        in_pte = PTE_VISION in self.decoder.get("methods", [])
        if choice == "pte":
            if not in_pte:
                raise EdgeVLMError(f"{self.decoder['file']} has no {PTE_VISION} method",
                                   "export the decoder with `vision_in_pte: true`, or pick a vision artifact")
            return None, PTE_VISION
        candidates = sorted((a for a in self.manifest["artifacts"] if a["part"] == "vision"
                             and choice in ("auto", a["file"])),
                            key=lambda a: VISION_PREFERENCE.index(a["precision"]) if a["precision"] in
                            VISION_PREFERENCE else len(VISION_PREFERENCE))
        if choice != "auto" and not candidates:
            raise EdgeVLMError(f"--vision {choice} is not a vision artifact of {self.root}",
                               "give a vision artifact's file name from manifest.json, `pte` or `auto`")
        reasons = []
        for artifact in candidates:
            backend = get_vision_backend(artifact["target"])
            reason = backend.runtime_available()
            if reason is None:
                return artifact, backend
            reasons.append(f"{artifact['file']}: {reason}")
        if in_pte and choice == "auto":
            return None, PTE_VISION
        return None, "; ".join(reasons) or "the manifest has no vision artifact"

    def vision_embeds(self, inputs) -> torch.Tensor:
        if self.vision_backend == PTE_VISION:
            if self._pte_vision is None:
                from edgevlm.export.decoder.pte import load_pte_method

                self._pte_vision = load_pte_method(self.root / self.decoder["file"], PTE_VISION)
            return pte_vision_embeds(self._pte_vision, self.manifest, inputs, self.config)
        if self.vision is None and inputs.pixel_values:
            raise EdgeVLMError(f"no vision artifact in {self.root} can run here ({self.vision_backend})",
                               "export the ort recipe's vision part beside the decoder")
        return artifact_vision_embeds(self.root, self.manifest, self.vision, self.vision_backend, inputs, self.config)


def pte_vision_embeds(method, manifest: dict, inputs, config) -> torch.Tensor:
    """[slices, query_num, llm_width] from a .pte's vision_encoder method (its static shape read
    from the method's first input, pixel_values [1, 3, patch, max_patches * patch])."""
    def shape():
        sizes = method.metadata.input_tensor_meta(0).sizes()
        return sizes[3] // sizes[2], None

    return slice_embeds(manifest, inputs, config, shape,
                        lambda arrays: method.execute([torch.from_numpy(arrays[name]) for name in VISION_INPUTS])[0])


def artifact_vision_embeds(root: Path, manifest: dict, artifact: dict, backend, inputs, config) -> torch.Tensor:
    """[slices, query_num, llm_width] from a vision artifact, one static-shape call per slice."""
    return slice_embeds(manifest, inputs, config, lambda: (artifact["max_patches"], artifact["batch"]),
                        lambda arrays: backend.run(Path(root) / artifact["file"], arrays, artifact["details"]))


def slice_embeds(manifest: dict, inputs, config, shape, encode) -> torch.Tensor:
    """Every slice through `encode` (the encoder's input arrays -> its [batch, Q, D] output) at the
    encoder's static shape (`shape()` -> (max_patches, batch or None), asked only when there are
    slices: a text-only prompt may have no encoder); row 0 of each output, copied (a runtime may
    reuse its output buffer)."""
    if not inputs.pixel_values:
        return torch.zeros(0, config.query_num, config.llm.hidden_size)
    max_patches, batch = shape()
    pre = manifest["preprocessing"]
    spec = ResamplerSpec.from_preprocessing(pre)
    out = []
    for i in range(len(inputs.pixel_values)):
        arrays = vision_inputs(inputs.pixel_values[i:i + 1], inputs.tgt_sizes[i:i + 1], max_patches, spec,
                               pre["num_patches_per_side"], batch=batch).arrays
        out.append(torch.tensor(np.asarray(encode(arrays)[:1], dtype=np.float32)))
    return torch.cat(out)


def first_divergence(reference: list[int], candidate: list[int]) -> int | None:
    """Index of the first differing token (a length difference counts), or None if identical."""
    for i, (a, b) in enumerate(zip(reference, candidate)):
        if a != b:
            return i
    return None if len(reference) == len(candidate) else min(len(reference), len(candidate))
