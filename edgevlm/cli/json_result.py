"""`--json PATH` for the commands that write files: one small result object (what was written, sizes,
sha256, seconds), written the way every other command writes its `--json` (indented, one trailing newline)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def write_json(path: Path | None, data) -> None:
    if path is not None:
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_written(folder: Path) -> list[dict]:
    """Every file under `folder` (relative path, bytes, sha256), sorted; hidden markers left out."""
    folder = Path(folder)
    return [{"file": p.relative_to(folder).as_posix(), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")]
