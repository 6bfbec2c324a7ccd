"""`--set key=value`: change one recipe field from the command line without writing a YAML file.

Keys name a section and a field: `decoder.kv_cache=int8`, `vision.max_patches=256`,
`calibration.images=8`; `vision[1].precision=fp16` picks one target of a list section (without an
index every target changes). Values are YAML scalars (`512` is an int, `true` a bool, `int8` a
string). The override is applied to the recipe document before it is parsed, so it is typed and
range-checked by the same code as a YAML file; an unknown section or field is named with the
allowed ones before anything loads.
"""

from __future__ import annotations

import dataclasses
import difflib
import re

import yaml

from edgevlm.errors import ConfigError

_KEY = re.compile(r"^(?P<section>[a-z_]+)(?:\[(?P<index>\d+)\])?\.(?P<field>[a-z_]+)$")
EXAMPLE = "e.g. --set decoder.kv_cache=int8 or --set vision[0].max_patches=256"


def _sections():
    from edgevlm.export.recipes import CalibrationSpec, DecoderTarget, VisionTarget

    # section -> (dataclass of one entry, whether the section is a list of targets)
    return {"vision": (VisionTarget, True), "decoder": (DecoderTarget, True), "calibration": (CalibrationSpec, False)}


def parse_override(text: str) -> tuple[str, int | None, str, object]:
    """`section[index].field=value` -> (section, index or None, field, typed value); unknown names refused."""
    key, sep, raw = text.partition("=")
    match = _KEY.match(key.strip())
    if not sep or not match:
        raise ConfigError(f"--set {text!r} is not `section.field=value`", EXAMPLE)
    section, field = match["section"], match["field"]
    sections = _sections()
    if section not in sections:
        raise ConfigError(f"--set {text!r}: unknown recipe section {section!r}" + _did_you_mean(section, sections),
                          f"sections: {', '.join(sections)}")
    kind, is_list = sections[section]
    names = [f.name for f in dataclasses.fields(kind)]
    if field not in names:
        raise ConfigError(f"--set {text!r}: {section} has no field {field!r}" + _did_you_mean(field, names),
                          f"{section} fields: {', '.join(names)}")
    if match["index"] is not None and not is_list:
        raise ConfigError(f"--set {text!r}: {section} is one block, not a list", f"write --set {section}.{field}=...")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # an unquoted string YAML cannot read as a scalar: checked as a string below
    if isinstance(value, (dict, list)):
        raise ConfigError(f"--set {text!r}: the value is a {type(value).__name__}; --set takes one scalar",
                          "edit a copy of the recipe YAML for nested values")
    index = None if match["index"] is None else int(match["index"])
    return section, index, field, value


def apply_overrides(document: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """The recipe document with each override applied (the parser then checks types and ranges)."""
    if not overrides:
        return document
    if not isinstance(document, dict):
        return document  # the parser reports the malformed document itself
    document = dict(document)
    for text in overrides:
        section, index, field, value = parse_override(text)
        _, is_list = _sections()[section]
        if not is_list:
            block = document.get(section) or {}
            document[section] = {**block, field: value} if isinstance(block, dict) else block
            continue
        targets = list(document.get(section) or [])
        if not targets:
            raise ConfigError(f"--set {text!r}: the recipe has no {section} targets",
                              f"pick a recipe with a {section} section (`edgevlm recipes`)")
        if index is not None and index >= len(targets):
            raise ConfigError(f"--set {text!r}: the recipe has {len(targets)} {section} target(s)",
                              f"use an index from 0 to {len(targets) - 1}")
        chosen = range(len(targets)) if index is None else [index]
        document[section] = [{**t, field: value} if i in chosen and isinstance(t, dict) else t
                             for i, t in enumerate(targets)]
    document["description"] = f"{document.get('description', '')} [--set {' '.join(overrides)}]".strip()
    return document


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
