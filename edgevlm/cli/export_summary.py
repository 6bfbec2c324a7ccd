"""What `edgevlm export` prints when it is done: every file it wrote, with sizes, and what to run next."""

from __future__ import annotations

import shlex
from pathlib import Path

from edgevlm.outputs import MARKER


def human_bytes(n: int) -> str:
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _size(path: Path) -> int:
    if path.is_dir():  # an .mlpackage is a folder: one artifact
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def summary_lines(out: Path, manifest: dict) -> list[str]:
    """Artifacts first (the files that ship with each indented under it), then the tokenizer,
    verification data, the manifest, and anything else in the folder, so no written file is left out."""
    out = Path(out)
    rows: list[tuple[str, int, str]] = []  # (name, bytes, note)
    listed: set[str] = set()
    for artifact in manifest["artifacts"]:
        note = f"{artifact['part']}, {artifact['target']} {artifact['precision']}"
        rows.append((artifact["file"], _size(out / artifact["file"]), note))
        listed.add(artifact["file"])
        for extra in artifact.get("extra_files", []):
            rows.append(("  " + extra["file"], extra["bytes"], "ships with the artifact above"))
            listed.add(extra["file"])
    for entry in manifest.get("files", []):
        rows.append((entry["file"], entry["bytes"], entry["file"].split("/", 1)[0]))
        listed.add(entry["file"])
    rows.append(("manifest.json", (out / "manifest.json").stat().st_size, "what every tool reads first"))
    listed |= {"manifest.json", MARKER}
    for path in sorted(out.rglob("*")):
        name = path.relative_to(out).as_posix()
        inside_listed = any(name.startswith(f"{item}/") for item in listed)
        if path.is_file() and name not in listed and not inside_listed:
            rows.append((name, path.stat().st_size, "not in the manifest"))
    width = max(len(name) for name, _, _ in rows)
    total = sum(size for _, size, _ in rows)
    lines = [f"{name:<{width}}  {human_bytes(size):>9}  {note}" for name, size, note in rows]
    lines.append(f"{'total':<{width}}  {human_bytes(total):>9}  {len(rows)} files in {out}")
    return lines


def next_steps(out: Path, manifest: dict) -> list[str]:
    folder = shlex.quote(str(out))
    steps = [f"edgevlm verify {folder}"]
    if any(a["part"] == "decoder" for a in manifest["artifacts"]):
        steps.append(f"edgevlm run {folder} --image IMAGE --prompt 'What is in the picture?'")
    if any(a["part"] == "vision" for a in manifest["artifacts"]):
        steps.append(f"edgevlm bench {folder}")
    return steps
