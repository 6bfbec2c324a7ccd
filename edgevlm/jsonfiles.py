"""Reading JSON files that come from outside (manifests, config.json, tokenizer and processor
configs, checkpoint indexes) with a size cap and a nesting cap, so a 99 MB or 200,000-deep file
is refused with a message instead of costing gigabytes or a RecursionError traceback."""

from __future__ import annotations

import json
from pathlib import Path

from edgevlm.errors import EdgeVLMError
from edgevlm.limits import MAX_JSON_DEPTH


def read_json_object(path: Path, what: str, error=EdgeVLMError, max_bytes: int = 64 << 20,
                     max_depth: int = MAX_JSON_DEPTH, fix: str = "restore the file") -> dict:
    """The JSON object in `path`; `error(problem, fix)` for a file that is too big, too deep,
    not JSON, or not an object."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise error(f"{path} ({what}) is {size / 2 ** 20:.1f} MiB, above the {max_bytes / 2 ** 20:.0f} MiB limit "
                    f"for a {what}", fix)
    try:
        data = json.loads(path.read_bytes())
    except RecursionError:
        raise error(f"{path} ({what}) is nested too deeply to parse", fix) from None
    except ValueError as e:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8
        raise error(f"{path} is not valid JSON ({str(e)[:200]})", fix) from None
    if not isinstance(data, dict):
        raise error(f"{path} ({what}) holds a JSON {type(data).__name__}, not an object", fix)
    deepest = depth(data)
    if deepest > max_depth:
        raise error(f"{path} ({what}) nests {deepest} levels deep; the limit is {max_depth}", fix)
    return data


def depth(value) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest
