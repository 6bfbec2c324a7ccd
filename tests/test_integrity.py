"""Artifacts are confined to their folder and checked before they run: manifest paths that leave the
folder are refused by verify/run/bench/aihub, a changed file is refused by run and bench, the
tokenizer files are in the manifest's hashes; checkpoint index entries stay inside the checkpoint,
and tensors keep their dtype class."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgevlm.cli.main import main
from edgevlm.errors import EdgeVLMError
from edgevlm.export.manifest import sha256_path

VISION = "minicpmv-2.6.vision.ort.fp32.onnx"
PTE = "minicpmv-2.6.decoder.xnnpack.fp32-kvint4.pte"


def _copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


def _edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_the_manifest_hashes_the_tokenizer_and_verification_files(int4_kv_export):
    files = {e["file"]: e for e in json.loads((int4_kv_export / "manifest.json").read_text())["files"]}
    assert {"tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json", "verification/vision_reference.npz",
            "verification/448x448.png"} <= set(files)
    for name, entry in files.items():
        assert entry["sha256"] == sha256_path(int4_kv_export / name) and entry["bytes"] > 0


def test_verify_checks_the_tokenizer_and_verification_files(int4_kv_export, tmp_path):
    from edgevlm.export.verify import FAIL, PASS, verify_artifacts

    copy = _copy(int4_kv_export, tmp_path / "art")
    assert [(r.artifact, r.status) for r in verify_artifacts(copy) if r.check == "checksum"][0] == \
        ("manifest.json files", PASS)
    _flip_byte(copy / "tokenizer" / "tokenizer_config.json")
    failed = [(r.artifact, r.check) for r in verify_artifacts(copy) if r.status == FAIL]
    assert failed == [("tokenizer/tokenizer_config.json", "checksum")]


@pytest.mark.parametrize("victim", [VISION, PTE, "kernels/int4_sdpa.cpp", "tokenizer/tokenizer.json"])
def test_run_refuses_a_changed_file(victim, int4_kv_export, tmp_path, capsys):
    copy = _copy(int4_kv_export, tmp_path / "art")
    _flip_byte(copy / victim)
    assert main(["run", "--artifacts", str(copy), "--prompt", "Describe.", "--max-new-tokens", "2"]) == 1
    err = capsys.readouterr().err
    assert f"{victim} does not match its manifest" in err and "Traceback" not in err


def test_bench_refuses_a_changed_artifact(int4_kv_export, tmp_path, capsys):
    copy = _copy(int4_kv_export, tmp_path / "art")
    _flip_byte(copy / VISION)
    assert main(["bench", "--artifacts", str(copy), "--runs", "1", "--warmup", "0"]) == 1
    assert f"{VISION} does not match its manifest" in capsys.readouterr().err


def test_no_verify_runs_anyway_and_says_so(int4_kv_export, tmp_path, capsys):
    copy = _copy(int4_kv_export, tmp_path / "art")
    _flip_byte(copy / "kernels" / "int4_sdpa.cpp")  # shipped for apps; `run` compiles its own copy
    assert main(["--json-logs", "run", "--artifacts", str(copy), "--prompt", "Describe.", "--max-new-tokens", "2",
                 "--no-verify"]) == 0
    logs = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert any(r["level"] == "warning" and "--no-verify" in r["msg"] and "kernels/int4_sdpa.cpp" in r["msg"]
               for r in logs)


# ---- confinement -----------------------------------------------------------------------------------

def _outside_copy(int4_kv_export, tmp_path):
    """An artifact folder whose manifest names a file outside it (with that file's true sha256)."""
    copy = _copy(int4_kv_export, tmp_path / "deep" / "art")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(copy / VISION, outside / "evil.onnx")
    _edit_manifest(copy, lambda m: m["artifacts"][0].update(file="../../outside/evil.onnx"))
    return copy


@pytest.mark.parametrize("command", [["verify"], ["run", "--prompt", "Describe."], ["bench"]])
def test_a_manifest_path_outside_the_folder_is_refused(command, int4_kv_export, tmp_path, capsys):
    copy = _outside_copy(int4_kv_export, tmp_path)
    argv = [command[0], str(copy)] if command[0] == "verify" else [command[0], "--artifacts", str(copy), *command[1:]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "artifacts[0].file = '../../outside/evil.onnx' points outside" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["/etc/passwd", "/usr"])
def test_absolute_manifest_paths_are_refused_without_reading_them(name, int4_kv_export, tmp_path, capsys):
    copy = _copy(int4_kv_export, tmp_path / "art")
    _edit_manifest(copy, lambda m: m["artifacts"][0].update(file=name))
    assert main(["verify", str(copy)]) == 2
    assert f"= {name!r} points outside" in capsys.readouterr().err


def test_a_symlink_out_of_the_folder_is_refused(int4_kv_export, tmp_path, capsys):
    copy = _copy(int4_kv_export, tmp_path / "art")
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(copy / VISION, outside)
    (copy / VISION).symlink_to(outside)  # same bytes, same sha256: only the location is wrong
    assert main(["verify", str(copy)]) == 2
    assert "through a symlink" in capsys.readouterr().err


def test_aihub_refuses_a_qdq_source_outside_the_folder(int4_kv_export, tmp_path, capsys):
    copy = _copy(int4_kv_export, tmp_path / "deep" / "art")
    (tmp_path / "x.qdq.onnx").write_bytes(b"not the exported model")
    extra = [{"file": "../../x.qdq.onnx", "sha256": sha256_path(tmp_path / "x.qdq.onnx")}]
    _edit_manifest(copy, lambda m: m["artifacts"].append(dict(m["artifacts"][0], target="qnn", extra_files=extra)))
    assert main(["aihub", "--artifacts", str(copy)]) == 2
    assert "artifacts[2].extra_files[0].file = '../../x.qdq.onnx' points outside" in capsys.readouterr().err


def test_a_checkpoint_index_entry_outside_the_folder_is_refused(tiny_checkpoints, tmp_path):
    from edgevlm.checkpoint.loader import load_model

    model = _copy(tiny_checkpoints["minicpmv-2.6-tiny"], tmp_path / "model")
    index = json.loads((model / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[0]
    other = tmp_path / "other"
    other.mkdir()
    shutil.move(model / shard, other / shard)
    index["weight_map"] = {k: (f"../other/{shard}" if v == shard else v) for k, v in index["weight_map"].items()}
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(EdgeVLMError, match=f"weight_map.*'../other/{shard}' points outside"):
        load_model(model)


def test_a_tensor_of_the_wrong_dtype_class_is_refused(tiny_checkpoints, tmp_path):
    from safetensors.torch import load_file, save_file

    from edgevlm.checkpoint.loader import load_model

    model = _copy(tiny_checkpoints["minicpmv-2.6-tiny"], tmp_path / "model")
    shard = sorted(model.glob("model-*.safetensors"))[0]
    tensors = load_file(str(shard))
    key = sorted(tensors)[0]
    tensors[key] = tensors[key].view(dtype=__import__("torch").int32)  # the same bits, stored as I32
    save_file(tensors, str(shard), metadata={"format": "pt"})
    with pytest.raises(EdgeVLMError, match=f"wrong dtype class: {key} in {shard.name}: I32, expected float"):
        load_model(model)


def test_bench_decoder_reuses_a_work_dir_pte_only_if_its_bytes_are_the_ones_exported(int4_kv_export, tmp_path):
    from edgevlm.device_tests.decoder_bench import _reusable

    pte = Path(shutil.copyfile(int4_kv_export / PTE, tmp_path / "decoder.pte"))
    record = tmp_path / "decoder.json"
    wanted = {"spec": "s", "model": "m", "code": "c"}
    record.write_text(json.dumps(wanted | {"sha256": sha256_path(pte)}))
    assert _reusable(pte, record, wanted)
    _flip_byte(pte)
    assert not _reusable(pte, record, wanted)  # re-exported, never timed
    record.write_text(json.dumps(wanted))  # a record from before sha256 was kept
    assert not _reusable(pte, record, wanted)
