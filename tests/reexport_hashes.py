"""Export every shipped recipe on every family's tiny preset and print the sha256 of every file
each manifest names, as JSON. Run it before and after a restructure of the export code: the two
outputs must be equal (artifacts byte-identical), except where a change is meant to alter them.

    python tests/reexport_hashes.py OUT_DIR > hashes.json

Not a pytest module (16 full exports take ~25 min on 2 cores): its results go in a note.
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


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1])), indent=1, sort_keys=True))
