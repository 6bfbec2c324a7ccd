"""Result files -> classified, schema-checked results: `edgevlm.bench/2` (bench, bench-decoder,
device-bench on any device or farm; `bench` writes a list of two), `edgevlm.quality/1` and the
check list `verify --json` writes. A file named on the command line must be one of these (exit 2
otherwise, naming it); a folder is searched for *.json and files of other kinds in it (manifest.json,
genai_config.json) are listed as skipped, since export folders hold both."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgevlm.errors import EdgeVLMError

BENCH, QUALITY, VERIFY = "bench", "quality", "verify"
ACCEPTED = ("edgevlm.bench/2 (edgevlm bench / bench-decoder / device-bench --json), edgevlm.quality/1 "
            "(edgevlm quality's quality.json), and edgevlm verify --json")


class ResultFileError(EdgeVLMError):
    """A result file that is not JSON, of no known kind, or does not fit its schema (exit 2)."""


@dataclass
class Result:
    kind: str  # bench | quality | verify
    path: Path
    data: object  # bench/quality: the report dict; verify: the list of checks


@dataclass
class Loaded:
    results: list[Result] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: why", files in folders that are not results

    def of(self, kind: str) -> list[Result]:
        return [r for r in self.results if r.kind == kind]


def load_results(paths: list[Path]) -> Loaded:
    loaded = Loaded()
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.json") if p.is_file())
            for file in files:
                try:
                    loaded.results += _load_file(file)
                except ResultFileError as err:
                    loaded.skipped.append(f"{file}: {err.problem}")
            if not any(r.path.is_relative_to(path) for r in loaded.results):
                raise ResultFileError(f"{path}: no result files in this folder ({len(files)} JSON files, none of "
                                      "a kind a report reads)", f"pass files or folders of {ACCEPTED}")
        elif path.is_file():
            loaded.results += _load_file(path)
        else:
            raise ResultFileError(f"{path}: no such file or folder", "check the path")
    return loaded


def _load_file(path: Path) -> list[Result]:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultFileError(f"{path}: not JSON ({err})", f"pass result files of {ACCEPTED}") from None
    items = data if isinstance(data, list) and data and all(_schema_of(d) for d in data) else [data]
    out = []
    for item in items:
        kind = classify(item)
        if kind is None:
            raise ResultFileError(f"{path}: not a result file a report reads (schema {_schema_of(item) or 'none'})",
                                  f"pass {ACCEPTED}")
        _validate(kind, item, path)
        out.append(Result(kind, path, item))
    return out


def _schema_of(item) -> str | None:
    return item.get("schema") if isinstance(item, dict) else None


def classify(item) -> str | None:
    schema = _schema_of(item)
    if schema == "edgevlm.bench/2":
        return BENCH
    if schema == "edgevlm.quality/1":
        return QUALITY
    # verify --json: a list of CheckResult dicts (export/verify.py), no schema tag of its own
    if isinstance(item, list) and item and all(isinstance(c, dict) and {"artifact", "check", "status"} <= set(c)
                                               for c in item):
        return VERIFY
    return None


def _validate(kind: str, item, path: Path) -> None:
    import jsonschema

    if kind == VERIFY:
        return  # classify already required every check's three fields; nothing else is fixed
    try:
        if kind == BENCH:
            from edgevlm.device_tests.schema import validate_bench

            validate_bench(item)
        else:
            from edgevlm.reports.quality import validate

            validate(item)
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ResultFileError(f"{path}: malformed {item['schema']} result at {where}: {err.message}",
                              "re-run the command that wrote it; a hand-edited file must still fit the schema") \
            from None
