"""The compiled-kernel cache (<EDGEVLM_HOME>/kernels/<key>/libedgevlm_kernels.so), treated as what
it is: native code this process will dlopen.

- the cache folders are private (0700) and must belong to this user and be writable by no one
  else, or they are refused (safety.private_directory): otherwise anyone who can write there can
  plant code that runs inside edgevlm;
- the sha256 of the library is recorded beside it when it is built (`<lib>.sha256`); a library
  whose bytes do not match the record (or that has none) is never loaded: it is rebuilt;
- on Linux the library is hashed through an open descriptor and loaded through that same
  descriptor (/proc/self/fd/N), so the bytes checked are the bytes loaded;
- builds hold a lock in the key folder, so a temporary file found there under the lock belongs to
  a build that was killed: it is removed, with a log line.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import sys
from pathlib import Path

from edgevlm.progress import log
from edgevlm.safety import check_private, private_directory

PURPOSE = "kernel cache"


def executorch_root() -> Path:
    """The installed executorch wheel's package folder (include/, lib/) native builds compile against."""
    import executorch.version  # `executorch` itself is a namespace package (no __file__)

    return Path(executorch.version.__file__).parent


def cpu_signature() -> str:
    """-march=native output is only valid on this kind of CPU: native build caches key on its flags."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def prepare(library: Path) -> Path:
    """Create or accept the cache folders of `library` (private, this user's); returns its folder."""
    folder = library.parent
    private_directory(folder.parent, PURPOSE)  # <home>/kernels
    return private_directory(folder, PURPOSE)  # <home>/kernels/<key>


def record_path(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


def file_sha256(fd: int) -> str:
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def recorded(library: Path) -> str | None:
    try:
        return record_path(library).read_text().split()[0]
    except (OSError, IndexError):
        return None


def write_record(library: Path) -> None:
    fd = os.open(library, os.O_RDONLY)
    try:
        digest = file_sha256(fd)
    finally:
        os.close(fd)
    tmp = record_path(library).with_suffix(".sha256.tmp")
    tmp.write_text(f"{digest}  {library.name}\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, record_path(library))


def trusted(library: Path) -> bool:
    """Whether `library` exists, is private to this user and matches its recorded sha256."""
    if not library.exists():
        return False
    check_private(library, PURPOSE)
    expected = recorded(library)
    fd = os.open(library, os.O_RDONLY)
    try:
        ok = expected is not None and file_sha256(fd) == expected
    finally:
        os.close(fd)
    if not ok:
        log.warning("%s %s its recorded sha256: not loading it; rebuilding", library,
                    "does not match" if expected else "has no record of")
    return ok


def load(library: Path):
    """dlopen `library` (RTLD_GLOBAL) only if its bytes match the record; hashed and loaded through
    one descriptor on Linux, so a swap between the check and the load cannot slip in."""
    from edgevlm.errors import IntegrityError

    fd = os.open(library, os.O_RDONLY)
    try:
        if file_sha256(fd) != recorded(library):
            raise IntegrityError(f"{library} changed after it was built and checked; not loading it",
                                 f"remove {library.parent} (edgevlm rebuilds it) and check who else writes there")
        target = f"/proc/self/fd/{fd}" if sys.platform.startswith("linux") else str(library)
        return ctypes.CDLL(target, mode=ctypes.RTLD_GLOBAL)
    finally:
        os.close(fd)


@contextlib.contextmanager
def build_lock(folder: Path):
    """Serialise builders of one key (a second one waits, then finds the library built)."""
    import fcntl

    fd = os.open(folder / ".build.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_stale_temps(folder: Path, library_name: str) -> None:
    """Under the build lock: temporary files of builds that were killed."""
    for stale in folder.glob(f".{library_name}.*.tmp"):
        size = stale.stat().st_size
        stale.unlink(missing_ok=True)
        log.warning("removed %s (%d bytes), left by a kernel build that was interrupted", stale, size)
