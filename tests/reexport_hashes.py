"""Export every shipped recipe on every family's tiny preset and print the sha256 of every file
each manifest names, as JSON. Run it before and after a restructure of the export code: the two
outputs must be equal (artifacts byte-identical), except where a change is meant to alter them.

    python tests/reexport_hashes.py export OUT_DIR HASHES.json   # 16 exports, ~17 min on 2 cores
    python tests/reexport_hashes.py compare BEFORE.json AFTER.json [RENAMES.json]

`compare` lists every file whose bytes changed, appeared or went away; RENAMES maps old names to
new ones for files renamed on purpose. Not a pytest module (the exports take too long for the
suite): its results go in a note.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PRESETS = ("minicpmv-2.5-tiny", "minicpmv-2.6-tiny", "minicpmv-4.0-tiny", "minicpmv-4.5-tiny")
RECIPES = ("ios-m4", "android-sd8g3", "android-sd8g3-w4a16", "ort")


def file_hashes(manifest: dict) -> dict[str, str]:
    hashes = {}
    for artifact in manifest["artifacts"]:
        hashes[artifact["file"]] = artifact["sha256"]
        for extra in artifact.get("extra_files", []):
            hashes[extra["file"]] = extra["sha256"]
    for entry in manifest.get("files", []):
        hashes[entry["file"]] = entry["sha256"]
    return hashes


def main(root: Path) -> dict:
    from edgevlm.checkpoint.writer import write_checkpoint
    from edgevlm.export.driver import export_model
    from edgevlm.export.recipes import load_recipe
    from edgevlm.presets import get_preset

    results = {}
    for preset_name in PRESETS:
        preset = get_preset(preset_name)
        checkpoint = write_checkpoint(preset.build_config(), root / "checkpoints" / preset_name, seed=0,
                                      dtype=preset.dtype, shard_bytes=3 * 1024 * 1024, show_progress=False)
        for recipe in RECIPES:
            out = export_model(checkpoint, load_recipe(recipe), root / f"{preset_name}-{recipe}")
            manifest = json.loads((Path(out) / "manifest.json").read_text())
            results[f"{preset_name}/{recipe}"] = file_hashes(manifest)
            print(f"{preset_name}/{recipe}: {len(results[f'{preset_name}/{recipe}'])} files", file=sys.stderr)
    return results


def read_hashes(path: str) -> dict:
    text = Path(path).read_text()
    return json.loads(text[text.index("{"):])  # older runs printed native runtimes' stdout first


def compare(before: dict, after: dict, renames: dict | None = None) -> list[str]:
    renames = renames or {}
    problems = []
    for case in sorted(set(before) | set(after)):
        old = {renames.get(name, name): digest for name, digest in before.get(case, {}).items()}
        new = after.get(case, {})
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                state = "missing after" if name not in new else "new" if name not in old else "bytes differ"
                problems.append(f"{case}: {name}: {state}")
    return problems


if __name__ == "__main__":
    if sys.argv[1] == "export":
        Path(sys.argv[3]).write_text(json.dumps(main(Path(sys.argv[2])), indent=1, sort_keys=True) + "\n")
    else:
        renames = json.loads(Path(sys.argv[4]).read_text()) if len(sys.argv) > 4 else None
        found = compare(read_hashes(sys.argv[2]), read_hashes(sys.argv[3]), renames)
        print("\n".join(found) or "identical: every file of every export")
        sys.exit(1 if found else 0)
