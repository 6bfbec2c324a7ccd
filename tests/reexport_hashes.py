"""Export every shipped recipe on every family's tiny preset and record the sha256 of every file
each manifest names. Run it before and after a restructure of the export code: the two records
must be equal (artifacts byte-identical), except where a change is meant to alter them.

    python tests/reexport_hashes.py export OUT_DIR HASHES.json   # 16 exports, ~17 min on 2 cores
    python tests/reexport_hashes.py hash OUT_DIR HASHES.json     # re-read exports made earlier
    python tests/reexport_hashes.py compare BEFORE.json AFTER.json [RENAMES.json]

ONNX files carry provenance the torch exporter writes per node (the Python stack trace with
absolute paths and line numbers, module class names): they change when the exporting code moves
or its checkout path differs, while the graph and weights do not. Each .onnx is therefore also
hashed with that metadata removed (`<file>#graph`); `compare` reports a file whose bytes differ
only there as provenance-only. RENAMES maps old names to new ones for files renamed on purpose.
Not a pytest module (the exports take too long for the suite): its results go in a note.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

PRESETS = ("minicpmv-2.5-tiny", "minicpmv-2.6-tiny", "minicpmv-4.0-tiny", "minicpmv-4.5-tiny")
RECIPES = ("ios-m4", "android-sd8g3", "android-sd8g3-w4a16", "ort")
PROVENANCE_KEYS = ("pkg.torch.onnx.", "namespace")


def graph_sha256(path: Path) -> str:
    """sha256 of an ONNX model without the exporter's per-node provenance metadata."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for node in model.graph.node:
        kept = [p for p in node.metadata_props if not p.key.startswith(PROVENANCE_KEYS)]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()


def export_hashes(out: Path) -> dict[str, str]:
    manifest = json.loads((out / "manifest.json").read_text())
    hashes = {}
    for artifact in manifest["artifacts"]:
        hashes[artifact["file"]] = artifact["sha256"]
        for extra in artifact.get("extra_files", []):
            hashes[extra["file"]] = extra["sha256"]
    for entry in manifest.get("files", []):
        hashes[entry["file"]] = entry["sha256"]
    for name in list(hashes):
        if name.endswith(".onnx") and (out / name).is_file():
            hashes[name + "#graph"] = graph_sha256(out / name)
    return hashes


def export_all(root: Path) -> dict:
    from edgevlm.checkpoint.writer import write_checkpoint
    from edgevlm.export.driver import export_model
    from edgevlm.export.recipes import load_recipe
    from edgevlm.presets import get_preset

    for preset_name in PRESETS:
        preset = get_preset(preset_name)
        checkpoint = write_checkpoint(preset.build_config(), root / "checkpoints" / preset_name, seed=0,
                                      dtype=preset.dtype, shard_bytes=3 * 1024 * 1024, show_progress=False)
        for recipe in RECIPES:
            export_model(checkpoint, load_recipe(recipe), root / f"{preset_name}-{recipe}")
            print(f"{preset_name}/{recipe} exported", file=sys.stderr)
    return hash_all(root)


def hash_all(root: Path) -> dict:
    return {f"{p}/{r}": export_hashes(root / f"{p}-{r}") for p in PRESETS for r in RECIPES
            if (root / f"{p}-{r}" / "manifest.json").is_file()}


def compare(before: dict, after: dict, renames: dict | None = None) -> tuple[list[str], list[str]]:
    """(files whose bytes changed, appeared or went away; .onnx files that differ in provenance only)."""
    renames = renames or {}
    problems, provenance = [], []
    for case in sorted(set(before) | set(after)):
        old = {renames.get(name.split("#")[0], name.split("#")[0]) + ("#graph" if name.endswith("#graph") else ""):
               digest for name, digest in before.get(case, {}).items()}
        new = after.get(case, {})
        for name in sorted(n for n in set(old) | set(new) if not n.endswith("#graph")):
            if old.get(name) == new.get(name):
                continue
            graph = name + "#graph"
            if name in old and name in new and graph in old and old.get(graph) == new.get(graph):
                provenance.append(f"{case}: {name}")
                continue
            state = "missing after" if name not in new else "new" if name not in old else "bytes differ"
            problems.append(f"{case}: {name}: {state}")
    return problems, provenance


def _read(path: str) -> dict:
    text = Path(path).read_text()
    return json.loads(text[text.index("{"):])  # early runs printed native runtimes' stdout first


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode in ("export", "hash"):
        result = export_all(Path(sys.argv[2])) if mode == "export" else hash_all(Path(sys.argv[2]))
        Path(sys.argv[3]).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    else:
        renames = json.loads(Path(sys.argv[4]).read_text()) if len(sys.argv) > 4 else None
        changed, provenance = compare(_read(sys.argv[2]), _read(sys.argv[3]), renames)
        print(f"{len(provenance)} .onnx file(s) differ only in the exporter's provenance metadata")
        print("\n".join(changed) or "identical: every other file of every export, byte for byte")
        sys.exit(1 if changed else 0)
