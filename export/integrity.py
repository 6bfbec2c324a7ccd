"""sha256 checks before an artifact is loaded, and the manifest's hashes of its support files.

`verify` reports a changed file as a failed check; `run`, `bench` and `aihub` refuse to load or
upload one (IntegrityError, exit 1) unless `--no-verify` is given, which logs a warning naming
every file it did not check. Besides the artifacts, the manifest's `files` list hashes what a
runtime reads next to them: the tokenizer files and the verification set. (Preprocessing
parameters are inside manifest.json itself, the root the hashes hang from.)
"""

from __future__ import annotations

from pathlib import Path

from edgevlm.errors import IntegrityError
from edgevlm.export.manifest import sha256_path, size_bytes
from edgevlm.progress import log
from edgevlm.safety import confined

SUPPORT_DIRS = ("tokenizer", "verification")  # hashed into the manifest's `files`


def support_files(root: Path) -> list[dict]:
    """{file, sha256, bytes} of every file under the support folders of an export in progress."""
    root = Path(root)
    entries = []
    for folder in SUPPORT_DIRS:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file():
                entries.append({"file": path.relative_to(root).as_posix(), "sha256": sha256_path(path),
                                "bytes": size_bytes(path)})
    return entries


def artifact_files(artifact: dict) -> list[tuple[str, str]]:
    """(relative file, sha256) of an artifact entry: its main file and every extra file."""
    return [(artifact["file"], artifact["sha256"])] + [(e["file"], e["sha256"]) for e in artifact.get("extra_files", [])]


def check_files(root: Path, manifest: dict, artifacts: list[dict], prefixes: tuple[str, ...] = ("tokenizer/",),
                verify: bool = True) -> None:
    """Refuse (IntegrityError) if any file of `artifacts`, or any manifest `files` entry under
    `prefixes`, differs from its recorded sha256. verify=False skips the hashing, loudly."""
    root = Path(root)
    wanted = [pair for a in artifacts for pair in artifact_files(a)]
    listed = manifest.get("files")
    wanted += [(e["file"], e["sha256"]) for e in listed or [] if e["file"].startswith(prefixes)]
    if not verify:
        log.warning("--no-verify: loading %d file(s) from %s without checking their sha256 against the manifest "
                    "(%s); a changed or planted file would run", len(wanted), root,
                    ", ".join(name for name, _ in wanted))
        return
    if listed is None and prefixes:
        log.warning("%s/manifest.json has no `files` hashes (written by an older edgevlm): the tokenizer files are "
                    "not checked; re-export to cover them", root)
    for name, expected in wanted:
        path = confined(root, name, f"manifest.json file {name!r}")
        if not path.exists():
            raise IntegrityError(f"{name} is missing from {root}", "restore it, or re-run `edgevlm export`")
        actual = sha256_path(path)
        if actual != expected:
            raise IntegrityError(f"{root / name} does not match its manifest: sha256 {actual[:12]}... instead of "
                                 f"{expected[:12]}...; refusing to load a file that is not the one exported",
                                 "re-run `edgevlm export` (or `edgevlm verify` to see every changed file); "
                                 "--no-verify skips this check for development")
