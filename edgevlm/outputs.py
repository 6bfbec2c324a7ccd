"""Output folders edgevlm writes (exports, checkpoints): all or nothing, and only over its own.

`atomic_directory(final)` yields a temporary sibling `.NAME.partial-*`; when the block succeeds
the folder gets an ownership marker and is swapped in. What it guarantees:

- ownership: `--overwrite` replaces only a folder whose marker says edgevlm wrote it (same kind:
  an export never replaces a checkpoint); anything else is refused, never deleted;
- one writer: a lock file `.NAME.lock` beside the folder (flock, released by the kernel if the
  process dies) makes a second export to the same folder refuse at once instead of racing;
- the old output survives until the new one is in place: rename-aside, rename-in, then delete
  the aside copy; a failure between the renames renames it back, and a process killed there
  leaves `.NAME.old-*`, which the next run restores;
- stale leftovers of killed runs (`.NAME.partial-*`, `.NAME.old-*`) are removed by the next run
  to the same folder, under the lock and only if older than that run, with a log line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from edgevlm.errors import EdgeVLMError, EnvironmentProblem, OutputBusy

MARKER = ".edgevlm-output"
PARTIAL, ASIDE, LOCK = ".partial-", ".old-", ".lock"


@contextlib.contextmanager
def atomic_directory(final: Path, overwrite: bool = False, kind: str = "export"):
    """Yield a temporary sibling directory; publish it as `final` only if the block succeeds."""
    final = Path(final).absolute()
    _check_target(final, overwrite, kind)  # refuse early, before any work or lock file
    _make_parent(final.parent)
    with _locked(final):
        started = time.time()
        _recover(final, started)
        _check_target(final, overwrite, kind)  # again: the state others may have changed is now ours
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{PARTIAL}", dir=final.parent))
        try:
            yield tmp
            write_marker(tmp, kind)
            _apply_umask(tmp)
            _swap(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def check_output(final: Path, overwrite: bool = False, kind: str = "export") -> None:
    """The refusals `atomic_directory` would make, checked up front (before a model loads for minutes)."""
    final = Path(final).absolute()
    _check_target(final, overwrite, kind)
    if final.parent.is_dir():
        with _locked(final):
            pass


def write_marker(folder: Path, kind: str) -> None:
    from importlib import metadata

    try:
        version = metadata.version("edgevlm")
    except metadata.PackageNotFoundError:
        version = "unknown"
    record = {"tool": "edgevlm", "kind": kind, "version": version,
              "note": "written by edgevlm; `--overwrite` may replace this folder"}
    (Path(folder) / MARKER).write_text(json.dumps(record) + "\n")


def marker_kind(folder: Path) -> str | None:
    """The kind recorded by edgevlm's marker in `folder`, or None when it has none (or a bad one)."""
    try:
        record = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return record.get("kind") if isinstance(record, dict) and record.get("tool") == "edgevlm" else None


def _check_target(final: Path, overwrite: bool, kind: str) -> None:
    if not final.exists() and not final.is_symlink():
        return
    if final.is_symlink() or not final.is_dir():
        raise EdgeVLMError(f"{final} exists and is not a folder", "choose another output path")
    try:
        empty = next(final.iterdir(), None) is None
    except PermissionError as e:
        raise EnvironmentProblem(f"{final} cannot be read ({e.strerror})", "choose a folder you can read") from None
    if empty:
        return
    if not overwrite:
        raise EdgeVLMError(f"{final} already exists and is not empty",
                           "choose another --out directory, or pass --overwrite")
    owner = marker_kind(final)
    if owner != kind:
        what = f"holds an edgevlm {owner}, not an {kind}" if owner else f"was not written by edgevlm (no {MARKER})"
        raise EdgeVLMError(f"refusing to overwrite {final}: it {what}; --overwrite only replaces edgevlm's own "
                           f"{kind} folders", "choose another output folder, or move that folder away yourself")


def _make_parent(parent: Path) -> None:
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise EdgeVLMError(f"{parent} is a file (or lies under one), so no output folder can be made inside it",
                           "choose an output path whose parent is a folder") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EnvironmentProblem(f"cannot write in {parent} (permission denied or read-only)",
                                 "choose an output folder on a writable disk, or fix the permissions")


@contextlib.contextmanager
def _locked(final: Path):
    """Hold `.NAME.lock` beside `final` exclusively; refuse (OutputBusy) if another process has it."""
    import fcntl

    path = final.parent / f".{final.name}{LOCK}"
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:  # read-only file system, no permission: say where, exit 3
            raise EnvironmentProblem(f"cannot write in {final.parent} ({e.strerror})",
                                     "choose an output folder on a writable disk, or fix the permissions") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise OutputBusy(f"another edgevlm process (pid {holder}) is writing {final}",
                             "wait for it to finish, or choose another --out folder") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:  # not unlinked by the previous holder between our open and our flock
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still holding it: a waiter that opened it re-checks the inode
        os.close(fd)


def _recover(final: Path, started: float) -> None:
    """Under the lock: restore an aside copy a killed swap left behind, remove stale partials."""
    from edgevlm.progress import log

    asides = sorted(final.parent.glob(f".{final.name}{ASIDE}*"), key=lambda p: p.stat().st_mtime)
    if asides and not final.exists():
        os.rename(asides[-1], final)
        log.warning("restored %s from %s (an earlier run was stopped between renaming the old output aside and "
                    "the new one in)", final, asides[-1].name)
        asides = asides[:-1]
    for stale in asides + list(final.parent.glob(f".{final.name}{PARTIAL}*")):
        try:
            if stale.stat().st_mtime >= started:
                continue  # newer than this run: not provably stale
        except FileNotFoundError:
            continue
        size = sum(f.stat().st_size for f in stale.rglob("*") if f.is_file()) if stale.is_dir() else 0
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        log.warning("removed %s (%.1f MiB), left by an earlier run that was killed or interrupted",
                    stale, size / 2 ** 20)


def _swap(tmp: Path, final: Path) -> None:
    """Rename the new folder in; the old one (if any) is kept aside until that has happened."""
    if not final.exists():
        os.rename(tmp, final)
        return
    aside = final.parent / f".{final.name}{ASIDE}{os.getpid()}-{os.urandom(4).hex()}"
    os.rename(final, aside)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(aside, final)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _apply_umask(root: Path) -> None:
    # mkdtemp makes a 0700 directory; published artifacts get the user's normal permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(root, 0o777 & ~umask)
    for path in root.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
