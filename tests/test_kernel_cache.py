"""The compiled-kernel cache is private, and only a library whose sha256 matches the record written
when it was built is ever loaded: a planted library is rebuilt over, never run."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgevlm.errors import EnvironmentProblem
from edgevlm.export.decoder.int4_attention import build_kernel_library
from edgevlm.export.manifest import sha256_path

PLANTED = textwrap.dedent("""
    #include <stdio.h>
    #include <stdlib.h>
    __attribute__((constructor)) static void planted(void) {
        FILE *f = fopen(getenv("PLANTED_MARKER"), "w");
        if (f) { fputs("the planted library ran", f); fclose(f); }
    }
""")


@pytest.fixture(scope="module")
def built_home(tmp_path_factory):
    """An EDGEVLM_HOME with the kernel library built in it once (about 10 s of g++)."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEVLM_HOME", str(home))
        library = build_kernel_library()
    return home, library.relative_to(home)


@pytest.fixture
def home_copy(built_home, tmp_path, monkeypatch):
    """A private copy of the built home, set as EDGEVLM_HOME; returns the library path in it."""
    home, library = built_home
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    monkeypatch.setenv("EDGEVLM_HOME", str(copy))
    return copy / library


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_cache_is_private_and_records_the_library_hash(built_home):
    home, library = built_home
    library = home / library
    assert _mode(library.parent) == 0o700 and _mode(library.parent.parent) == 0o700 and _mode(library) == 0o700
    record = library.with_name(library.name + ".sha256").read_text().split()
    assert record == [sha256_path(library), library.name]


def test_a_planted_library_is_never_loaded(home_copy, tmp_path):
    source = tmp_path / "planted.c"
    source.write_text(PLANTED)
    subprocess.run(["g++", "-shared", "-fPIC", str(source), "-o", str(home_copy)], check=True)
    marker = tmp_path / "ran.txt"
    probe = ("from edgevlm.export.decoder.int4_attention import load_kernel_library, kernel_registered\n"
             "load_kernel_library(); print(kernel_registered())")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PLANTED_MARKER": str(marker)})
    assert result.returncode == 0, result.stderr
    assert not marker.exists()  # its constructor never ran
    assert result.stdout.split()[-1] == "True"  # the rebuilt library was loaded instead
    assert "does not match its recorded sha256" in result.stderr
    record = home_copy.with_name(home_copy.name + ".sha256").read_text().split()[0]
    assert sha256_path(home_copy) == record and b"planted" not in home_copy.read_bytes()


def test_a_cache_folder_owned_by_someone_else_is_refused(home_copy):
    os.chown(home_copy.parent, 4242, 4242)
    with pytest.raises(EnvironmentProblem, match="owned by uid 4242"):
        build_kernel_library()


@pytest.mark.parametrize("mode", [0o770, 0o777])
def test_a_cache_folder_others_can_write_is_refused(home_copy, mode):
    os.chmod(home_copy.parent.parent, mode)  # <home>/kernels
    with pytest.raises(EnvironmentProblem, match="writable by (its group|others)"):
        build_kernel_library()


def test_temporary_files_of_interrupted_builds_are_removed(home_copy, edgevlm_logs):
    stale = home_copy.parent / f".{home_copy.name}.x7f3q.tmp"
    stale.write_bytes(b"\x7fELF half a library")
    built = home_copy.stat().st_mtime_ns
    assert build_kernel_library() == home_copy
    assert not stale.exists() and home_copy.stat().st_mtime_ns == built  # reused, not rebuilt
    assert any("interrupted" in r.getMessage() and stale.name in r.getMessage() for r in edgevlm_logs)


def test_a_home_that_is_a_file_is_an_environment_error(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.write_text("not a folder")
    monkeypatch.setenv("EDGEVLM_HOME", str(home))
    started = time.monotonic()
    with pytest.raises(EnvironmentProblem, match="a file is in the way") as err:
        build_kernel_library()
    assert err.value.exit_code == 3 and time.monotonic() - started < 5
