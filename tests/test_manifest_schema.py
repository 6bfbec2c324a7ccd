"""The manifest contract: schema v2 shipped in the package, checked on write and on read; `verify`
and `run` name the bad field's JSON path; version 1 still reads; one kv_cache block per decoder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgevlm.cli.main import main
from edgevlm.errors import EXIT_BAD_INPUT
from edgevlm.export.decoder.kv_cache import KVCacheSpec
from edgevlm.export.manifest import SCHEMA_VERSION, ManifestError, read_manifest, write_manifest
from edgevlm.export.manifest_builders import kv_cache_entry, pte_decoder_entry
from edgevlm.export.manifest_schema import schema, schema_problems

DECODER = 1  # int4_kv_export: artifacts[0] the ONNX vision encoder, artifacts[1] the .pte decoder


@pytest.fixture
def export_copy(int4_kv_export, tmp_path):
    return Path(shutil.copytree(int4_kv_export, tmp_path / "art"))


def _edit(folder: Path, change) -> dict:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return manifest


def _refused(capsys, argv) -> str:
    assert main([str(a) for a in argv]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("edgevlm: error:"), err
    return err


def test_the_schema_ships_in_the_package_and_documents_its_fields():
    from importlib import resources

    assert resources.files("edgevlm.export").joinpath("schemas/manifest.schema.json").is_file()
    kv = schema()["$defs"]["kv_cache"]
    assert schema()["properties"]["schema_version"]["const"] == SCHEMA_VERSION == 2
    assert {"format", "bits", "group_size", "max_seq_len", "attention", "bytes_per_token"} <= set(kv["required"])
    assert all("description" in field for field in kv["properties"].values())


def test_an_export_writes_v2_with_the_cache_on_each_decoder(int4_kv_export):
    on_disk = json.loads((int4_kv_export / "manifest.json").read_text())
    assert on_disk["schema_version"] == 2 and "kv_cache" not in on_disk
    cache = on_disk["artifacts"][DECODER]["kv_cache"]
    assert cache["format"] == "int4" and cache["bits"] == 4 and cache["max_seq_len"] == 256
    assert schema_problems(on_disk) == []


@pytest.mark.parametrize("command", [["verify"], ["run", "--prompt", "hi", "--max-new-tokens", "1"]])
def test_verify_and_run_refuse_a_broken_field_with_its_json_path(command, export_copy, capsys):
    _edit(export_copy, lambda m: m["artifacts"][DECODER]["kv_cache"].update(max_seq_len="256"))
    err = _refused(capsys, [command[0], export_copy, *command[1:]])
    assert "$.artifacts[1].kv_cache.max_seq_len: '256' is not of type 'integer'" in err and "fix:" in err


@pytest.mark.parametrize("change, message", [
    (lambda m: m["artifacts"][DECODER]["kv_cache"].pop("bytes_per_token"),
     "$.artifacts[1].kv_cache: 'bytes_per_token' is a required property"),
    (lambda m: m["artifacts"][DECODER]["kv_cache"].update(bits=8), "$.artifacts[1].kv_cache.bits: 4 was expected"),
    (lambda m: m["artifacts"][DECODER]["kv_cache"].update(attention="dynamic"), "$.artifacts[1].kv_cache.attention"),
    (lambda m: m["artifacts"][DECODER].pop("kv_cache"), "$.artifacts[1]: 'kv_cache' is a required property"),
    (lambda m: m.update(kv_cache=None), "$.kv_cache: Removed in version 2: read the decoder artifact's own"),
])
def test_the_decoder_cache_block_is_typed(change, message, export_copy, capsys):
    _edit(export_copy, change)
    assert message in _refused(capsys, ["verify", export_copy])


def _as_v1(manifest: dict, older: bool = False) -> None:
    """Back to the shape the version-1 writer made: a top-level copy of the last decoder's cache;
    `older`: as before the cache block had bits, attention and rotation_block."""
    manifest["schema_version"] = 1
    cache = manifest["artifacts"][DECODER]["kv_cache"]
    manifest["kv_cache"] = dict(cache)
    if older:
        for key in ("bits", "attention", "rotation_block"):
            cache.pop(key)


def test_a_v1_manifest_still_verifies(export_copy, capsys):
    _edit(export_copy, _as_v1)
    manifest = read_manifest(export_copy)
    assert manifest["schema_version"] == 2 and "kv_cache" not in manifest
    assert main(["verify", str(export_copy)]) == 0, capsys.readouterr()
    assert json.loads((export_copy / "manifest.json").read_text())["schema_version"] == 1  # never rewritten


def test_an_older_v1_cache_block_is_completed_on_read(export_copy, int4_kv_export):
    _edit(export_copy, lambda m: _as_v1(m, older=True))
    cache = read_manifest(export_copy)["artifacts"][DECODER]["kv_cache"]
    assert cache["bits"] == 4 and cache["attention"] == "static"
    assert cache["rotation_block"] == cache["head_dim"] & -cache["head_dim"]


@pytest.mark.parametrize("version, message", [
    (99, "has schema_version 99, newer than this edgevlm understands (2)"),
    (0, "has schema_version 0; this edgevlm reads versions 1 to 2"),
    (True, "$.schema_version: True is not of type 'integer'"),
])
def test_unknown_versions_are_refused(version, message, export_copy, capsys):
    _edit(export_copy, lambda m: m.update(schema_version=version))
    assert message in _refused(capsys, ["verify", export_copy])


def test_write_manifest_refuses_an_invalid_manifest(int4_kv_export, tmp_path):
    manifest = json.loads((int4_kv_export / "manifest.json").read_text())
    manifest["artifacts"][DECODER]["kv_cache"]["format"] = "int3"
    folder = Path(shutil.copytree(int4_kv_export, tmp_path / "art"))
    (folder / "manifest.json").unlink()
    with pytest.raises(ManifestError, match=r"refusing to write an invalid manifest.*\n.*"
                                            r"\$\.artifacts\[1\]\.kv_cache\.format") as err:
        write_manifest(folder, manifest)
    assert "bug in edgevlm" in err.value.fix and not (folder / "manifest.json").exists()


def test_two_decoders_each_keep_their_own_cache_block(int4_kv_export, tmp_path):
    folder = Path(shutil.copytree(int4_kv_export, tmp_path / "art"))
    manifest = json.loads((folder / "manifest.json").read_text())
    first = manifest["artifacts"][DECODER]
    second_file = folder / "second.pte"
    shutil.copyfile(folder / first["file"], second_file)
    int8 = kv_cache_entry(KVCacheSpec("int8", 16, False), max_seq_len=128, attention="static", layers=2,
                          kv_heads=2, head_dim=64)
    second = pte_decoder_entry(root=folder, path=second_file, recipe="two", precision="fp32-kvint8",
                               kernel_sources=[], custom_ops=[], methods=first["methods"], inputs=first["inputs"],
                               outputs=first["outputs"], weights=first["weights"], kv_cache=int8,
                               runner_metadata=first["runner_metadata"], quality_gate=first["quality_gate"],
                               parity=first["parity"])
    manifest["artifacts"].append(second)
    write_manifest(folder, manifest)
    caches = [a["kv_cache"] for a in read_manifest(folder)["artifacts"] if a["part"] == "decoder"]
    assert [(c["format"], c["bits"], c["max_seq_len"], c["rotation_block"]) for c in caches] == [
        ("int4", 4, 256, first["kv_cache"]["rotation_block"]), ("int8", 8, 128, None)]
    assert int8["bytes_per_token"] == 2 * 2 * 2 * (64 + 2 * 2 * 64 / 16)


def test_an_export_with_two_decoders_keeps_each_cache_and_verifies(tiny_checkpoints, tmp_path, capsys):
    """Schema v1 kept one top-level kv_cache, the last decoder's: wrong for every other decoder."""
    import yaml

    from edgevlm.export.driver import export_model
    from edgevlm.export.recipes import load_recipe

    recipe = tmp_path / "two.yaml"
    recipe.write_text(yaml.safe_dump({"name": "two-decoders", "decoder": [
        {"backend": "executorch", "weights": "fp32", "kv_cache": "int4", "max_seq_len": 48},
        {"backend": "ort", "weights": "fp32", "kv_cache": "int8", "max_seq_len": 40}]}))
    out = export_model(tiny_checkpoints["minicpmv-2.6-tiny"], load_recipe(str(recipe)), tmp_path / "out",
                       part="decoder")
    manifest = read_manifest(out)
    caches = {a["target"]: a["kv_cache"] for a in manifest["artifacts"] if a["part"] == "decoder"}
    assert "kv_cache" not in manifest
    assert {t: (c["format"], c["bits"], c["max_seq_len"], c["attention"]) for t, c in caches.items()} == {
        "executorch": ("int4", 4, 48, "custom"), "ort": ("int8", 8, 40, "static")}
    assert main(["verify", str(out)]) == 0, capsys.readouterr()
