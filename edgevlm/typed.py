"""Check a parsed mapping against a dataclass's field types before the dataclass is built.

The types come from the dataclass annotations themselves, so a field added to a config or recipe
dataclass is checked without touching this module. JSON and YAML give ints, floats, bools,
strings, lists and mappings; a value is accepted only if it has the annotated type (an int where a
float is expected is fine; a bool is never an int; "256" is never a number). Numbers must be
finite, and ints fit in int32 unless a range says otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

INT32 = (-(2 ** 31), 2 ** 31 - 1)


def field_types(kind) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def matches(value, hint) -> bool:
    """Whether a JSON/YAML value has the annotated type `hint`."""
    if hint is Any:
        return True
    if hint is type(None) or hint is None:
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, h) for h in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if hint is dict or origin is dict or dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    if hint in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return not args or all(matches(v, args[0]) for v in value)
    return isinstance(value, hint) if isinstance(hint, type) else True


def describe(hint) -> str:
    """'an integer', 'a list of integers or null', ... for messages."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(describe(h) for h in typing.get_args(hint))
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", dict: "a mapping",
             type(None): "null"}
    if hint in names:
        return names[hint]
    if typing.get_origin(hint) is dict or dataclasses.is_dataclass(hint):
        return "a mapping"
    if typing.get_origin(hint) in (list, tuple) or hint in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return "a list" + (f" of {describe(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "")
    return getattr(hint, "__name__", str(hint))


def shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def with_floats(kind, raw: dict) -> dict:
    """`raw` with ints in float-only fields made floats (JSON writes 0 for 0.0; consumers such as
    transformers' strict configs reject an int there)."""
    out = dict(raw)
    for name, hint in field_types(kind).items():
        options = set(typing.get_args(hint)) or {hint}
        value = out.get(name)
        if float in options and int not in options and isinstance(value, int) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def missing_fields(kind, raw: dict) -> list[str]:
    """Fields of dataclass `kind` without a default that `raw` does not give."""
    return [f.name for f in dataclasses.fields(kind) if f.name not in raw and f.init
            and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def field_problems(kind, raw: dict, where: str, ranges: dict[str, tuple] | None = None) -> list[str]:
    """Every known field of `raw` whose value has the wrong type or is out of range (unknown
    fields are the caller's business). ranges: field -> (low, high), either may be None."""
    ranges = ranges or {}
    problems = []
    for name, hint in field_types(kind).items():
        if name not in raw:
            continue
        value = raw[name]
        if not matches(value, hint):
            problems.append(f"{where}.{name} is {shown(value)} ({type(value).__name__}); expected {describe(hint)}")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        low, high = ranges.get(name, INT32 if isinstance(value, int) else (None, None))
        if (low is not None and value < low) or (high is not None and value > high):
            span = f"from {low} to {high}" if low is not None and high is not None else \
                f"at least {low}" if low is not None else f"at most {high}"
            problems.append(f"{where}.{name} is {shown(value)}; expected {span}")
    return problems
