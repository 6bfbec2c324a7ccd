"""Layered quantisation config for mixed precision: global, then per op type, then per op name.

A recipe target's `options.quantization` block refines the target's precision node by node:

    quantization:
      op_types: {Conv: int8}                       # every Conv
      op_names:                                    # node names or module paths, fnmatch patterns
        "vpm.encoder.layers.0.mlp.*": int16        # keep a sensitive layer at 16-bit weights
        "resampler.kv_proj": null                  # null: keep this layer float

The most specific rule wins (op name over op type over the target's global weight type). Module
paths come from the exporter's `pkg.torch.onnx.name_scopes` node metadata, so users can name the
PyTorch module they know instead of a generated ONNX node name. `plan` turns the rules into what
onnxruntime.quantization takes: `nodes_to_exclude` for float nodes and per-initializer
`TensorQuantOverrides` for weights whose type differs from the global one.
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field

from edgevlm.errors import ConfigError

# weight type name -> onnxruntime.quantization.QuantType member
WEIGHT_TYPES = {"int4": "QInt4", "uint4": "QUInt4", "int8": "QInt8", "uint8": "QUInt8", "int16": "QInt16",
                "uint16": "QUInt16"}
WEIGHTED_OPS = ("MatMul", "Gemm", "Conv")  # ops whose second input is a weight initializer


@dataclass(frozen=True)
class NodeDecision:
    node: str
    module: str
    op_type: str
    weights: str | None  # None: float
    rule: str  # which rule decided: "global", "op_type:<T>", "op_name:<pattern>"


@dataclass
class QuantPlan:
    nodes_to_exclude: list[str] = field(default_factory=list)
    weight_overrides: dict[str, str] = field(default_factory=dict)  # initializer -> weight type name
    decisions: list[NodeDecision] = field(default_factory=list)

    def tensor_overrides(self, symmetric: bool | None = None) -> dict:
        """onnxruntime's TensorQuantOverrides for the overridden weights."""
        from onnxruntime.quantization import QuantType

        out = {}
        for name, kind in self.weight_overrides.items():
            entry = {"quant_type": getattr(QuantType, WEIGHT_TYPES[kind])}
            if symmetric is not None:
                entry["symmetric"] = symmetric
            out[name] = [entry]
        return out

    def summary(self) -> dict:
        """What the manifest records: only the nodes that differ from the global setting."""
        return {"float_nodes": sorted(d.module or d.node for d in self.decisions if d.weights is None),
                "overridden": {d.module or d.node: d.weights for d in self.decisions
                               if d.weights is not None and d.rule != "global"}}


@dataclass(frozen=True)
class LayeredQuantConfig:
    weights: str  # the target's global weight type
    op_types: Mapping[str, str | None] = field(default_factory=dict)
    op_names: Mapping[str, str | None] = field(default_factory=dict)

    @classmethod
    def from_options(cls, block: dict | None, global_weights: str) -> LayeredQuantConfig:
        block = dict(block or {})
        unknown = set(block) - {"op_types", "op_names"}
        if unknown:
            raise ConfigError(f"unknown quantization key(s) {sorted(unknown)}",
                              "a quantization block has `op_types` and `op_names` mappings")
        config = cls(global_weights, dict(block.get("op_types") or {}), dict(block.get("op_names") or {}))
        for where, rules in (("op_types", config.op_types), ("op_names", config.op_names)):
            for key, value in rules.items():
                if value is not None and value not in WEIGHT_TYPES:
                    raise ConfigError(f"quantization.{where}[{key!r}] = {value!r} is not a weight type",
                                      f"use one of {', '.join(WEIGHT_TYPES)}, or null to keep the node float")
        return config

    @property
    def is_uniform(self) -> bool:
        return not self.op_types and not self.op_names

    def resolve(self, node_name: str, module: str, op_type: str) -> tuple[str | None, str]:
        for pattern, value in self.op_names.items():
            if fnmatch.fnmatchcase(node_name, pattern) or (module and fnmatch.fnmatchcase(module, pattern)):
                return value, f"op_name:{pattern}"
        if op_type in self.op_types:
            return self.op_types[op_type], f"op_type:{op_type}"
        return self.weights, "global"

    def plan(self, model, op_types_to_quantize=WEIGHTED_OPS) -> QuantPlan:
        """Decide every weighted node of an onnx.ModelProto; unmatched op-name patterns are an error."""
        initializers = {i.name for i in model.graph.initializer}
        plan, used = QuantPlan(), set()
        for node in model.graph.node:
            if node.op_type not in op_types_to_quantize:
                continue
            module = module_path(node)
            weights, rule = self.resolve(node.name, module, node.op_type)
            if rule.startswith("op_name:"):
                used.add(rule.removeprefix("op_name:"))
            plan.decisions.append(NodeDecision(node.name, module, node.op_type, weights, rule))
            if weights is None:
                plan.nodes_to_exclude.append(node.name)
            elif weights != self.weights:
                for name in node.input[1:2]:
                    if name in initializers:
                        plan.weight_overrides[name] = weights
        missing = [p for p in self.op_names if p not in used]
        if missing:
            examples = ", ".join(sorted({d.module for d in plan.decisions if d.module})[:6])
            raise ConfigError(f"quantization.op_names pattern(s) {missing} match no {'/'.join(op_types_to_quantize)} "
                              "node of the exported graph",
                              f"name a module path or node name (fnmatch patterns work), e.g. {examples}")
        return plan


def module_path(node) -> str:
    """The PyTorch module a node came from, from the exporter's name-scope metadata ('' if absent)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return ""
            # The last scope is the aten op itself; the one before it is the innermost module.
            modules = [s for s in scopes[:-1] if s]
            return modules[-1] if modules else ""
    return ""
