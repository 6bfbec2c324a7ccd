"""Output folders: an export never deletes what it does not own, never races another export into
the same folder, keeps the old output until the new one is in place, and cleans up after killed runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from edgevlm.checkpoint.layout import atomic_directory
from edgevlm.errors import EdgeVLMError

CLI = [sys.executable, "-m", "edgevlm.cli.main"]


def _cli(*args, env=None, timeout=600):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def vision_recipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipes") / "fp32.yaml"
    path.write_text(yaml.safe_dump({"name": "fp32", "vision": [{"backend": "ort", "precision": "fp32"}]}))
    return path


def _owned(folder: Path, text: str) -> Path:
    """An output folder written by edgevlm (through atomic_directory) holding old.txt."""
    with atomic_directory(folder) as tmp:
        (tmp / "old.txt").write_text(text)
    return folder


def test_overwrite_refuses_a_folder_edgevlm_did_not_write(tiny_checkpoints, vision_recipe, tmp_path):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "thesis.txt").write_text("four years of work")
    started = time.monotonic()
    result = _cli("export", "--model", tiny_checkpoints["minicpmv-2.6-tiny"], "--recipe", vision_recipe,
                  "--out", out, "--overwrite")
    assert result.returncode == 2, result.stderr
    assert "was not written by edgevlm" in result.stderr and "Traceback" not in result.stderr
    assert (out / "thesis.txt").read_text() == "four years of work" and sorted(os.listdir(out)) == ["thesis.txt"]
    assert time.monotonic() - started < 60  # refused before the model was loaded or anything exported
    assert sorted(os.listdir(tmp_path)) == ["thesis"]  # no lock or partial folder left beside it


def test_overwrite_replaces_only_the_same_kind(tmp_path):
    out = _owned(tmp_path / "out", "old")
    with atomic_directory(out, overwrite=True) as tmp:  # an export over an export: fine
        (tmp / "new.txt").write_text("new")
    assert (out / "new.txt").read_text() == "new" and not (out / "old.txt").exists()
    with pytest.raises(EdgeVLMError, match="holds an edgevlm export, not an checkpoint"):
        with atomic_directory(out, overwrite=True, kind="checkpoint"):
            pass
    assert (out / "new.txt").read_text() == "new"


def test_a_second_export_to_a_folder_being_written_is_refused(tiny_checkpoints, vision_recipe, tmp_path):
    out = tmp_path / "out"
    with atomic_directory(out) as tmp:  # this process is "the first export", mid-write
        (tmp / "first.txt").write_text("first")
        result = _cli("export", "--model", tiny_checkpoints["minicpmv-2.6-tiny"], "--recipe", vision_recipe,
                      "--out", out, "--overwrite")
    assert result.returncode == 3, result.stderr
    assert f"another edgevlm process (pid {os.getpid()}) is writing" in result.stderr
    assert (out / "first.txt").read_text() == "first"  # the first one finished, untouched


def test_two_concurrent_exports_one_wins_one_refuses(tiny_checkpoints, vision_recipe, tmp_path):
    out = tmp_path / "out"
    args = [*CLI, "export", "--model", str(tiny_checkpoints["minicpmv-2.6-tiny"]), "--recipe", str(vision_recipe),
            "--out", str(out)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] in (2, 3), results  # busy (3), or already there once the winner finished (2)
    loser = next(err for code, err in results if code != 0)
    assert "another edgevlm process" in loser or "already exists" in loser
    from edgevlm.export.verify import FAIL, verify_artifacts

    assert not [r for r in verify_artifacts(out) if r.status == FAIL]  # the winner's output is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


KILL_AT_SWAP = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from edgevlm.checkpoint.layout import atomic_directory

    def killing(real):
        def move(src, dst, *args, **kwargs):
            if ".partial-" in Path(src).name:  # the new output is about to be renamed into place
                os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst, *args, **kwargs)
        return move

    os.rename, os.replace = killing(os.rename), killing(os.replace)
    with atomic_directory(Path(sys.argv[1]), overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
""")


def test_an_export_killed_at_the_swap_keeps_the_old_output(tmp_path, edgevlm_logs):
    out = _owned(tmp_path / "out", "old")
    proc = subprocess.run([sys.executable, "-c", KILL_AT_SWAP, str(out)], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # The old output still exists (set aside), and the next run to that folder puts it back.
    kept = [p for p in tmp_path.iterdir() if (p / "old.txt").is_file()]
    assert kept, sorted(os.listdir(tmp_path))
    with pytest.raises(EdgeVLMError, match="already exists"):
        with atomic_directory(out):
            pass
    assert (out / "old.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the killed run's new folder is cleaned too
    assert any("restored" in r.getMessage() for r in edgevlm_logs)


def test_stale_partial_folders_are_cleaned_with_a_log_line(tmp_path, edgevlm_logs):
    stale = tmp_path / ".out.partial-k1ll3d"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"\0" * 4096)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    other = tmp_path / ".another.partial-x"  # another output's partial: not ours to judge
    other.mkdir()
    with atomic_directory(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
    assert not stale.exists() and other.exists()
    assert any("left by an earlier run" in r.getMessage() and ".out.partial-k1ll3d" in r.getMessage()
               for r in edgevlm_logs)


def test_a_terminated_export_leaves_no_partial_folder(tiny_checkpoints, vision_recipe, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([*CLI, "export", "--model", str(tiny_checkpoints["minicpmv-2.6-tiny"]), "--recipe",
                             str(vision_recipe), "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(".out.partial-*")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    assert code == 143, proc.stderr.read()
    assert list(tmp_path.iterdir()) == []  # no partial folder, no lock file, no output


def test_output_paths_that_cannot_be_folders(tmp_path, capsys):
    from edgevlm.cli.main import main

    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["checkpoint", "--preset", "minicpmv-2.6-tiny", "--out", str(afile)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert main(["checkpoint", "--preset", "minicpmv-2.6-tiny", "--out", str(afile / "sub")]) == 2
    assert "is a file" in capsys.readouterr().err
    # a file system that refuses writes (sysfs, even for root): the environment, exit 3
    assert main(["checkpoint", "--preset", "minicpmv-2.6-tiny", "--out", "/sys/edgevlm-out"]) == 3
    err = capsys.readouterr().err
    assert "cannot write in /sys" in err and "Traceback" not in err
