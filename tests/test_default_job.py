"""The main job (`edgevlm` with no command) on the real embedded model: export, verify, the table,
the demo answers from the artifacts; a reused export is verified again; a failed step is named."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgevlm.cli.main import main

ROWS = ("eager PyTorch", "vision  minicpmv-", "decoder minicpmv-", "end to end")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One run of the job on a fresh $EDGEVLM_HOME: (home, stdout, export folder)."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:  # module scope: the function-scoped fixture is unavailable
        patch.setenv("EDGEVLM_HOME", str(home))
        out = _run_job()
    return home, out, _export_dir(out)


def _run_job() -> str:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main([]) == 0
    return buffer.getvalue()


def _export_dir(out: str) -> Path:
    return Path(re.search(r"^artifacts: (\S+)", out, re.M).group(1))


def _row(out: str, start: str) -> str:
    rows = [line for line in out.splitlines() if line.lstrip("│┃ ").startswith(start)]
    assert len(rows) == 1, (start, out)
    return rows[0]


def test_the_table_has_every_row_with_the_sizes_on_disk(first_run):
    from edgevlm import defaults
    from edgevlm.cli.export_summary import human_bytes
    from edgevlm.export.manifest import read_manifest

    home, out, folder = first_run
    assert folder.parent == home / "main-job" and (folder / "manifest.json").is_file()
    assert "MiniCPM-V 2.6" in out  # the checkpoint summary comes first
    assert "exported in" in out and "verified in" in out
    manifest = read_manifest(folder)
    vision = next(a for a in manifest["artifacts"] if a["part"] == "vision")
    decoder = next(a for a in manifest["artifacts"] if a["part"] == "decoder")

    def size(*names):
        return sum((folder / n).stat().st_size for n in names)

    decoder_files = [decoder["file"]] + [e["file"] for e in decoder.get("extra_files", [])]
    weights = sum(p.stat().st_size for p in defaults.oracle_model_dir().glob("*.safetensors"))
    expected = {"eager PyTorch": weights, "vision  minicpmv-": size(vision["file"]),
                "decoder minicpmv-": size(*decoder_files), "end to end": size(vision["file"], *decoder_files)}
    for start in ROWS:
        row = _row(out, start)
        assert f" {human_bytes(expected[start])} " in row, row
        assert re.search(r"\d+/12 \(\d+%\)", row), row  # held-out accuracy on 12 questions
        assert re.search(r"\d+\.\d s \(\d+ ms/q\)", row), row
    assert vision["file"] in _row(out, "vision  minicpm") and decoder["file"] in _row(out, "decoder minicpm")
    assert re.search(r"SQNR \d+\.\d dB", _row(out, "vision  minicpm")) and re.search(r"SQNR \d+\.\d dB", _row(out, "decoder minicpm"))
    assert re.search(r"\d+/12 answers = eager", _row(out, "end to end"))


def test_demo_answers_are_what_edgevlm_run_gives_on_the_artifacts(first_run, tmp_path, capsys):
    from edgevlm import defaults

    _, out, folder = first_run
    image, questions = defaults.demo_questions()
    png = tmp_path / "demo.png"
    image.save(png)  # lossless: the same pixels the job used
    answers = re.findall(r"^Q: (.*)\n   eager: '(.*?)' .*? artifacts: '(.*?)' ", out, re.M)
    assert [q for q, _, _ in answers] == [q for q, _ in questions]
    for question, _, from_job in answers:
        result = tmp_path / "run.json"
        assert main(["run", str(folder), "--image", str(png), "--prompt", question, "--max-new-tokens", "8",
                     "--json", str(result)]) == 0
        assert json.loads(result.read_text())["text"] == from_job, question
    capsys.readouterr()


def test_a_saved_export_is_verified_again_and_replaced_if_changed(first_run, monkeypatch):
    from edgevlm.export.manifest import read_manifest, sha256_path

    home, _, folder = first_run
    monkeypatch.setenv("EDGEVLM_HOME", str(home))
    again = _run_job()
    assert _export_dir(again) == folder and "reused: same checkpoint and recipe, verified again" in again
    for start in ROWS:
        _row(again, start)
    vision = next(a for a in read_manifest(folder)["artifacts"] if a["part"] == "vision")
    path = folder / vision["file"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # one bit of the last weight: the checksum, not the parser, must catch it
    path.write_bytes(bytes(data))
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        replaced = _run_job()
    assert "failed verification" in err.getvalue() and vision["file"] in err.getvalue()
    assert "exported in" in replaced and _export_dir(replaced) == folder
    fresh = next(a for a in read_manifest(folder)["artifacts"] if a["part"] == "vision")
    assert sha256_path(folder / fresh["file"]) == fresh["sha256"]


def test_a_failed_export_step_is_named_with_a_fix_and_leaves_nothing(tmp_path):
    """A real failure, not a mock: files over 3 MB cannot be written (RLIMIT_FSIZE), so the export's
    6 MB vision artifact fails mid-export, inside the temporary folder."""
    import resource

    home = tmp_path / "home"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, 3 << 20))

    env = {**os.environ, "EDGEVLM_HOME": str(home)}
    result = subprocess.run([sys.executable, "-m", "edgevlm.cli.main"], env=env, capture_output=True, text=True,
                            preexec_fn=limit, timeout=600)
    assert result.returncode == 3, result.stderr
    assert "edgevlm: error: main job, step 'export': File too large" in result.stderr
    assert "fix: free disk space" in result.stderr and "Traceback" not in result.stderr
    left = [p.name for p in (home / "main-job").iterdir()]
    assert all(name.endswith(".lock") for name in left), left  # no export, no partial folder
