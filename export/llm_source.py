"""Where the decoder's LLM weights come from, one piece at a time.

The export never holds the float LLM whole: it asks a source for one decoder layer (an fp32 copy
it may modify), the final norm, and the lm_head and embedding tables a block of rows at a time.

- `CheckpointLayers`: straight from the checkpoint's safetensors shards (any stored dtype; an 8B
  bf16 checkpoint costs one layer in fp32 at a time).
- `ModuleLayers`: from an LLM already in memory (tests, the quality report's ablations).

`skeleton()` is a fresh copy of the LLM's module structure with every parameter on the meta device
and real rotary tables: the builder (export/llm_build.py) puts each finished layer into it, and
the exporters read the result as they would the reference model. Each build gets its own copy, so
one source serves several targets.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgevlm.calibration.awq import WeightRows
from edgevlm.config import LLMConfig


def _materialize(meta_module: nn.Module, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """An fp32 copy of a meta-device module holding `tensors` (its whole state dict)."""
    module = copy.deepcopy(meta_module)
    module.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True, assign=True)
    return module.eval().requires_grad_(False)


class CheckpointLayers:
    """The LLM of a checkpoint directory, read a layer (or a block of rows) at a time."""

    PREFIX = "llm."

    def __init__(self, reader, config: LLMConfig):
        from edgevlm.model.llm import build_llm, rebuild_rotary

        self.reader, self.cfg = reader, config
        with torch.device("meta"):
            self._meta = build_llm(config)
        rebuild_rotary(self._meta, config)
        self.num_layers = config.num_hidden_layers

    def skeleton(self) -> nn.Module:
        return copy.deepcopy(self._meta)

    def _keys(self, module_path: str) -> dict[str, str]:
        prefix = f"{self.PREFIX}{module_path}."
        return {k[len(prefix):]: k for k in self.reader.shapes if k.startswith(prefix)}

    def _module(self, module_path: str, meta: nn.Module) -> nn.Module:
        keys = self._keys(module_path)
        tensors = self.reader.read(keys.values())
        return _materialize(meta, {name: tensors[key] for name, key in keys.items()})

    def layer(self, index: int) -> nn.Module:
        return self._module(f"model.layers.{index}", self._meta.model.layers[index])

    def norm(self) -> nn.Module:
        return self._module("model.norm", self._meta.model.norm)

    def _rows(self, key: str) -> WeightRows:
        return WeightRows(self.reader.shapes[key][0], lambda a, b: self.reader.read_rows(key, a, b, torch.float32))

    def lm_head(self) -> WeightRows:
        key = "llm.model.embed_tokens.weight" if self.cfg.tie_word_embeddings else "llm.lm_head.weight"
        return self._rows(key)

    def embedding(self) -> torch.Tensor:
        """The token-embedding table in its stored dtype (a view of the checkpoint mapping)."""
        key = "llm.model.embed_tokens.weight"
        return self.reader.read([key])[key]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """fp32 token embeddings as the reference computes them (MiniCPM4's scale_emb included)."""
        scale = self.cfg.scale_emb if self.cfg.arch == "minicpm" else 1.0
        out = torch.nn.functional.embedding(torch.as_tensor(ids), self.embedding()).float()
        return out * scale if scale != 1.0 else out


class ModuleLayers:
    """An LLM already in memory; layers are copied to fp32, the model is never modified."""

    def __init__(self, llm: nn.Module):
        self.llm = llm
        self.num_layers = len(llm.model.layers)
        # the structure without the weights: every parameter maps to a meta tensor in the copy
        memo = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False)
                for p in llm.parameters()}
        self._meta = copy.deepcopy(llm, memo)

    def skeleton(self) -> nn.Module:
        return copy.deepcopy(self._meta)

    def layer(self, index: int) -> nn.Module:
        return copy.deepcopy(self.llm.model.layers[index]).float().eval().requires_grad_(False)

    def norm(self) -> nn.Module:
        return copy.deepcopy(self.llm.model.norm).float().eval().requires_grad_(False)

    def lm_head(self) -> WeightRows:
        return WeightRows.of(self.llm.lm_head.weight.detach())

    def embedding(self) -> torch.Tensor:
        return self.llm.get_input_embeddings().weight.detach()

    @torch.no_grad()
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(torch.as_tensor(ids)).float()
