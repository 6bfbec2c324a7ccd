"""Exit codes: 0 ok, 1 a check or gate failed, 2 bad input or usage, 3 the environment; one message,
no traceback (unless --debug); a bug is exit 70 with its traceback, never "a check failed"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgevlm.cli.main import main
from edgevlm.export.manifest import sha256_path


def test_disk_full_is_an_environment_error(int4_kv_export, capsys):
    assert main(["verify", str(int4_kv_export), "--json", "/dev/full"]) == 3  # every write: ENOSPC
    err = capsys.readouterr().err
    assert "edgevlm: error: No space left on device [errno ENOSPC]" in err and "free disk space" in err
    assert "Traceback" not in err


def test_a_missing_tool_or_credential_is_an_environment_error(int4_kv_export, tmp_path, monkeypatch, capsys):
    copy = Path(shutil.copytree(int4_kv_export, tmp_path / "art"))
    vision = "minicpmv-2.6.vision.ort.fp32.onnx"
    shutil.copyfile(copy / vision, copy / "v.qdq.onnx")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["artifacts"].append(dict(manifest["artifacts"][0], target="qnn", extra_files=[
        {"file": "v.qdq.onnx", "sha256": sha256_path(copy / "v.qdq.onnx")}]))
    (copy / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.delenv("QAI_HUB_API_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.qai_hub/client.ini
    assert main(["aihub", "--artifacts", str(copy)]) == 3
    assert "no Qualcomm AI Hub API token" in capsys.readouterr().err
    monkeypatch.setenv("EDGEVLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EDGEVLM_CXX", str(tmp_path / "no-such-g++"))
    from edgevlm.export.int4_attention import build_kernel_library

    with pytest.raises(Exception, match="not found") as err:
        build_kernel_library()
    assert err.value.exit_code == 3


def test_debug_adds_the_traceback(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nowhere")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main(["--debug", "inspect", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "edgevlm: error: model directory" in err


def test_a_bug_is_exit_70_with_its_traceback(capsys):
    from edgevlm.cli.exit_codes import run_handler

    def broken(args):
        return {}["missing"]

    assert run_handler(broken, None) == 70
    err = capsys.readouterr().err
    assert "KeyError: 'missing'" in err and "internal error" in err and "this is a bug in edgevlm" in err
