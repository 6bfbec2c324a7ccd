"""Decoder sessions: one interface over the decoder artifacts, chosen from the manifest entry's target.

    embed(ids) -> [T, D] float32      token embeddings (MiniCPM4's scale_emb included)
    step(embeds [T, D], pos) -> [V]   prefill (T > 1) or decode (T = 1) at cache position pos
    reset()                           empty cache for a new conversation
    running()                         context for a stretch of steps (prefill + decode loop)

A decoder backend opens its artifact's session (backends/base.py get_decoder_backend(...).open_session).
`executorch`: the .pte's token_embedding / text_decoder methods; the cache is the program's own
mutable buffers. `ort`: two ONNX graphs; the cache is graph I/O held as OrtValues and bound with IO
binding, double-buffered (the outputs of one step are the next step's inputs), so it never goes
through numpy between steps.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import ContextManager, Protocol

import numpy as np
import torch

from edgevlm.errors import EdgeVLMError
from edgevlm.export.decoder import pte_names as names


class DecoderSession(Protocol):
    def embed(self, ids) -> torch.Tensor: ...

    def step(self, embeds: torch.Tensor, pos: int) -> torch.Tensor: ...

    def reset(self) -> None: ...

    def running(self) -> ContextManager: ...


class PteDecoderSession:
    def __init__(self, root: Path, entry: dict):
        from edgevlm.export.decoder.pte import load_pte_method

        self._path, self._load = Path(root) / entry["file"], load_pte_method
        self._embed = load_pte_method(self._path, names.TOKEN_EMBEDDING)
        self._decoder = load_pte_method(self._path, names.TEXT_DECODER)
        self._used = False

    def embed(self, ids) -> torch.Tensor:
        return self._embed.execute([torch.as_tensor(np.asarray(ids, dtype=np.int64))[None]])[0][0].clone()

    def step(self, embeds: torch.Tensor, pos: int) -> torch.Tensor:
        self._used = True
        return self._decoder.execute([embeds[None].float(), torch.tensor([pos])])[0][0].clone()

    def reset(self) -> None:
        if self._used:  # a freshly loaded method has a zeroed cache
            self._decoder, self._used = self._load(self._path, names.TEXT_DECODER), False

    def running(self) -> ContextManager:
        from edgevlm.export.decoder.pte import torch_on_one_thread

        return torch_on_one_thread()  # torch's spinning OpenMP threads would take the program's cores


class OrtDecoderSession:
    def __init__(self, root: Path, entry: dict, threads: int | None = None):
        import onnxruntime as ort

        from edgevlm.export.decoder.onnx_graph import session

        graphs = entry["graphs"]
        self._ort = ort
        self._embed = session(Path(root) / graphs[names.TOKEN_EMBEDDING]["file"], threads)
        self._decoder = session(Path(root) / graphs[names.TEXT_DECODER]["file"], threads)
        cache = [s for s in graphs[names.TEXT_DECODER]["inputs"] if s["name"].startswith("past.")]
        self._past = [s["name"] for s in cache]
        self._present = [n.replace("past.", "present.", 1) for n in self._past]
        # Two sets of buffers: a step reads one set and writes the other, then they swap.
        self._arrays = [[np.zeros(s["shape"], dtype=s["dtype"]) for s in cache] for _ in range(2)]
        self._values = [[ort.OrtValue.ortvalue_from_numpy(a) for a in arrays] for arrays in self._arrays]
        self._current = 0

    def embed(self, ids) -> torch.Tensor:
        out = self._embed.run(None, {"tokens": np.asarray(ids, dtype=np.int64)[None]})[0]
        return torch.from_numpy(out[0])

    def step(self, embeds: torch.Tensor, pos: int) -> torch.Tensor:
        binding = self._decoder.io_binding()
        binding.bind_cpu_input("embeddings", np.ascontiguousarray(embeds[None].float().numpy()))
        binding.bind_cpu_input("input_pos", np.array([pos], dtype=np.int64))
        read, write = self._values[self._current], self._values[1 - self._current]
        for name, value in zip(self._past, read):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits")
        for name, value in zip(self._present, write):
            binding.bind_ortvalue_output(name, value)
        self._decoder.run_with_iobinding(binding)
        self._current = 1 - self._current
        return torch.from_numpy(binding.get_outputs()[0].numpy()[0])

    def reset(self) -> None:
        for arrays in self._arrays:
            for a in arrays:
                a.fill(0)
        self._current = 0

    def running(self) -> ContextManager:
        # measured: torch's thread count does not change ORT's decode (0.5B INT4: 46-48 tok/s either way)
        return contextlib.nullcontext()


class EagerDecoderSession:
    """The eager reference LLM (transformers' DynamicCache) behind the session interface, so one
    artifact at a time can be swapped in beside eager parts (calibration/quality.py)."""

    def __init__(self, llm, dtype=torch.float32):
        self._llm, self._dtype = llm, dtype
        self.reset()

    @torch.no_grad()
    def embed(self, ids) -> torch.Tensor:
        return self._llm.get_input_embeddings()(torch.as_tensor(np.asarray(ids, dtype=np.int64))).float()

    @torch.no_grad()
    def step(self, embeds: torch.Tensor, pos: int) -> torch.Tensor:
        if pos != self._cache.get_seq_length():
            raise EdgeVLMError(f"eager session got position {pos} with {self._cache.get_seq_length()} cached tokens",
                               "feed positions in order, or reset() for a new conversation")
        out = self._llm(inputs_embeds=embeds[None].to(self._dtype), past_key_values=self._cache, use_cache=True)
        return out.logits[0, -1].float()

    def reset(self) -> None:
        from transformers import DynamicCache

        self._cache = DynamicCache(config=self._llm.config)

    def running(self) -> ContextManager:
        return contextlib.nullcontext()


class ModuleDecoderSession:
    """An ExportDecoder module run eagerly (the graph the exporters trace, before any lowering):
    scores a weight scheme or KV-cache format without writing an artifact."""

    def __init__(self, decoder, embed):
        self._decoder, self._embed = decoder, embed

    @torch.no_grad()
    def embed(self, ids) -> torch.Tensor:
        return self._embed(torch.as_tensor(np.asarray(ids, dtype=np.int64))).float()

    @torch.no_grad()
    def step(self, embeds: torch.Tensor, pos: int) -> torch.Tensor:
        return self._decoder(embeds[None].float(), torch.tensor([pos]))[0]

    def reset(self) -> None:
        self._decoder.reset()

    def running(self) -> ContextManager:
        return contextlib.nullcontext()


def open_decoder(root: Path, entry: dict) -> DecoderSession:
    """The session of a manifest's decoder entry, opened by the backend its `target` names."""
    from edgevlm.backends.base import DECODER_BACKENDS, get_decoder_backend

    if entry["target"] not in DECODER_BACKENDS:
        raise EdgeVLMError(f"decoder artifact {entry['file']} has target {entry['target']!r}, which `run` cannot "
                           "execute", f"known decoder targets: {', '.join(DECODER_BACKENDS)}")
    return get_decoder_backend(entry["target"]).open_session(root, entry)
