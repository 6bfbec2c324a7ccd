"""A YAML loader for recipes that cannot be made to expand: PyYAML's SafeLoader (no tags, no
objects) that also refuses anchors and aliases, duplicate keys and deep nesting.

Aliases are what a "billion laughs" bomb is made of: 429 bytes of nested `&a [*b, *b, ...]`
expand to gigabytes once the document is used. Recipes have no need for them, so the first
anchor or alias stops parsing, before anything is expanded. A duplicate key would silently
shadow the first value, so it is an error too.
"""

from __future__ import annotations

import yaml

from edgevlm.limits import MAX_YAML_DEPTH


class RefusedYAML(yaml.MarkedYAMLError):
    """A construct the strict loader does not accept (carries the line and column)."""


class StrictLoader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            kind = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            raise RefusedYAML(problem=f"YAML {kind}{event.anchor} is not allowed in a recipe (anchors and aliases "
                                      "can expand a small file into gigabytes); write the values out",
                              problem_mark=event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise RefusedYAML(problem=f"nesting deeper than {MAX_YAML_DEPTH} levels", problem_mark=event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            if key in seen:
                raise RefusedYAML(problem=f"duplicate key {key!r} (the later value would silently replace the first)",
                                  problem_mark=key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load(text: str):
    """Parse one YAML document strictly; raises yaml.YAMLError (RefusedYAML included)."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
