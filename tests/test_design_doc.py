"""DESIGN.md's Layout section is the map of the code: every module of every package folder has a row
there, and every path the section names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("edgevlm", "export", "backends", "calibration", "reports", "device_tests", "runtime")


def _layout_section() -> str:
    doc = (ROOT / "DESIGN.md").read_text()
    start = doc.index("## Layout")
    end = doc.index("\n## ", start + 1)
    return doc[start:end]


def _table_paths(section: str) -> set[str]:
    """Backticked module paths in the first column of the section's tables, e.g. `export/driver.py`
    (folders named by their own path; `edgevlm/` rows may leave out the `edgevlm/`)."""
    paths = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            paths.update(re.findall(r"`([\w./]+)`", first))
    return paths


def _module_rows(paths: set[str]) -> set[str]:
    return {p if p.split("/")[0] in PACKAGE_FOLDERS else f"edgevlm/{p}" for p in paths if p.endswith(".py")}


def test_every_module_has_a_row_in_the_layout_tables():
    listed = _module_rows(_table_paths(_layout_section()))
    modules = {p.relative_to(ROOT).as_posix() for folder in PACKAGE_FOLDERS
               for p in (ROOT / folder).rglob("*.py") if p.name != "__init__.py"}
    assert not sorted(modules - listed), "modules without a row in DESIGN.md's Layout tables"


def test_every_path_the_layout_names_exists():
    missing = [p for p in _table_paths(_layout_section())
               if not (ROOT / p).exists() and not (ROOT / "edgevlm" / p).exists()]
    assert not missing, f"DESIGN.md's Layout names paths that do not exist: {missing}"
