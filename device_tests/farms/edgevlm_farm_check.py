"""Runs on the Device Farm host (its own Python, stdlib only): is the pulled edgevlm-bench JSON a
finished result? A missing or unfinished file fails the farm's test phase with the reason.

Shipped in the test package as a wheel (farm_check.wheel) because Device Farm's Python test
packages must carry their dependencies as wheels."""

import json
import sys

SCHEMA_PREFIX = "urn:edgevlm:device-bench-result:"


def check(path):
    """None when the file is a finished edgevlm-bench result, else why not."""
    try:
        with open(path) as f:
            result = json.load(f)
    except OSError as exc:
        return f"no edgevlm-bench result at {path}: {exc.strerror}"
    except ValueError as exc:
        return f"{path} is not JSON (edgevlm-bench stopped while writing?): {exc}"
    if not isinstance(result, dict) or not str(result.get("schema", "")).startswith(SCHEMA_PREFIX):
        return f"{path} is not an edgevlm-bench result (schema {result.get('schema') if isinstance(result, dict) else None!r})"
    return None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    problems = [p for p in (check(path) for path in argv) if p]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems or not argv else 0


if __name__ == "__main__":
    sys.exit(main())
