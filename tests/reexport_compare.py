"""Re-export a few recipe x tiny-preset pairs and compare every file with an earlier
tests/reexport_hashes.py run (its JSON and its output folder), for a restructure's before/after check.

    python tests/reexport_compare.py BEFORE.json BEFORE_DIR OUT_DIR [preset/recipe ...]

A file whose sha256 differs is, for .onnx graphs, compared again with every node's metadata
cleared (torch.onnx records each node's Python stack trace and module path there, so the same
graph exported from another checkout or after code moved differs in those strings only). Prints one
JSON report; exits 1 when any file differs in content. Not a pytest module (minutes per export).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

DEFAULT_PAIRS = ("minicpmv-2.6-tiny/ios-m4", "minicpmv-2.6-tiny/ort", "minicpmv-4.0-tiny/android-sd8g3")


def onnx_content_hash(path: Path) -> str:
    """sha256 of the graph with node metadata_props and doc strings cleared."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def clean(nodes):
        for node in nodes:
            del node.metadata_props[:]
            node.doc_string = ""
            for attr in node.attribute:
                if attr.HasField("g"):
                    clean(attr.g.node)

    clean(model.graph.node)
    for function in model.functions:
        clean(function.node)
    return hashlib.sha256(model.SerializeToString()).hexdigest()


def main(before_json: Path, before_dir: Path, root: Path, pairs) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from reexport_hashes import file_hashes

    from edgevlm.checkpoint.writer import write_checkpoint
    from edgevlm.export.driver import export_model
    from edgevlm.export.recipes import load_recipe
    from edgevlm.presets import get_preset

    text = Path(before_json).read_text()
    before = json.loads(text[text.index("\n{") + 1:] if not text.startswith("{") else text)  # after any stray log line
    report = {}
    for pair in pairs:
        preset_name, recipe = pair.split("/")
        preset = get_preset(preset_name)
        checkpoint = root / "checkpoints" / preset_name
        if not checkpoint.exists():
            write_checkpoint(preset.build_config(), checkpoint, seed=0, dtype=preset.dtype,
                             shard_bytes=3 * 1024 * 1024, show_progress=False)
        out = Path(export_model(checkpoint, load_recipe(recipe), root / f"{preset_name}-{recipe}"))
        after = file_hashes(json.loads((out / "manifest.json").read_text()))
        expected = before[pair]
        rows = {}
        for name in sorted(set(expected) | set(after)):
            if expected.get(name) == after.get(name):
                rows[name] = "identical"
            elif name not in after or name not in expected:
                rows[name] = "missing after" if name not in after else "new"
            elif name.endswith(".onnx"):
                same = onnx_content_hash(out / name) == onnx_content_hash(before_dir / f"{preset_name}-{recipe}" / name)
                rows[name] = "identical graph (node metadata differs)" if same else "DIFFERS"
            else:
                rows[name] = "DIFFERS"
        report[pair] = rows
        print(pair, {v: list(rows.values()).count(v) for v in set(rows.values())}, file=sys.stderr)
    return report


if __name__ == "__main__":
    args = sys.argv[1:]
    result = main(Path(args[0]), Path(args[1]), Path(args[2]), args[3:] or DEFAULT_PAIRS)
    print(json.dumps(result, indent=1, sort_keys=True))
    sys.exit(1 if any(v in ("DIFFERS", "missing after", "new") for rows in result.values() for v in rows.values())
             else 0)
