"""Exit codes: 0 ok, 1 a check or gate failed, 2 bad input or usage, 3 the environment; one message,
no traceback (unless --debug); a bug is exit 70 with its traceback, never "a check failed"."""

from __future__ import annotations

import pytest

from edgevlm.cli.main import main


def test_disk_full_is_an_environment_error(int4_kv_export, capsys):
    assert main(["verify", str(int4_kv_export), "--json", "/dev/full"]) == 3  # every write: ENOSPC
    err = capsys.readouterr().err
    assert "edgevlm: error: No space left on device [errno ENOSPC]" in err and "free disk space" in err
    assert "Traceback" not in err


def test_a_missing_tool_is_an_environment_error(tmp_path, monkeypatch, capsys):
    """(A missing AI Hub token through the CLI: tests/test_farm.py.)"""
    from edgevlm.export.decoder.int4_attention import build_kernel_library

    monkeypatch.setenv("EDGEVLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EDGEVLM_CXX", str(tmp_path / "no-such-g++"))
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


def _subcommands() -> dict:
    import argparse

    from edgevlm.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_has_a_row_in_the_readme_exit_code_table_and_a_json_option():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Exit codes"):readme.index("\n## ", readme.index("## Exit codes") + 1)]
    rows = {line.split("|")[1].strip().strip("`") for line in section.splitlines() if line.startswith("| `")}
    commands = _subcommands()
    assert sorted(set(commands) - rows) == [], "commands missing from README's per-command exit-code table"
    assert sorted(rows - set(commands)) == [], "README's exit-code table names commands that do not exist"
    no_json = [name for name, p in commands.items() if not any("--json" in a.option_strings for a in p._actions)]
    assert no_json == [], "commands without machine-readable output (--json)"
