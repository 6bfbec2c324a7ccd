"""One place that turns what a command raised into one message and an exit code.

0 ok, 1 a check or gate failed, 2 bad input or usage, 3 the environment (edgevlm/errors.py).
Input and environment errors print one message without a traceback (`--debug` adds it); an
unexpected exception is a bug in edgevlm: its traceback is printed and the exit code is 70
(EX_SOFTWARE), so it can never pass for "a check failed".
"""

from __future__ import annotations

import errno
import signal
import sys
import traceback

from edgevlm.errors import EXIT_ENVIRONMENT, EdgeVLMError

EXIT_INTERNAL = 70  # sysexits.h EX_SOFTWARE
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM

_OS_FIXES = {
    errno.ENOSPC: "free disk space (or point --out / $EDGEVLM_HOME / $TMPDIR at a larger disk) and run again",
    errno.EDQUOT: "free space within your disk quota and run again",
    errno.EACCES: "choose a folder you can write to, or fix its permissions",
    errno.EPERM: "choose a folder you can write to, or fix its permissions",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.ENOTDIR: "a file is where a folder is needed: move it away or choose another path",
    errno.EISDIR: "a folder is where a file is needed: choose another path",
    errno.EMFILE: "too many open files: raise `ulimit -n` and run again",
}


def run_handler(handler, args, debug: bool = False) -> int:
    """Run a subcommand handler; map what it raises to (message on stderr, exit code)."""
    previous = _terminate_like_interrupt()
    try:
        return handler(args) or 0
    except EdgeVLMError as err:
        _report(f"error: {err}", debug)
        return err.exit_code
    except OSError as err:  # the machine: disk full, permissions, a file where a folder should be
        _report(f"error: {describe_os_error(err)}\n  fix: {_OS_FIXES.get(err.errno, 'check the path and the disk')}",
                debug)
        return EXIT_ENVIRONMENT
    except MemoryError:
        _report("error: out of memory\n  fix: close other programs, or use a smaller model / --max-patches", debug)
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        print("edgevlm: interrupted; no partial output was kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Terminated:
        print("edgevlm: terminated; no partial output was kept", file=sys.stderr)
        return EXIT_TERMINATED
    except Exception as err:  # noqa: BLE001 - a bug: say so, with the traceback a report needs
        traceback.print_exc()
        print(f"edgevlm: internal error: {type(err).__name__}: {err}\n  this is a bug in edgevlm; please report it "
              "with the traceback above", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def describe_os_error(err: OSError) -> str:
    where = f" ({err.filename})" if err.filename else ""
    text = err.strerror or str(err)
    return f"{text}{where}" if err.errno is None else f"{text} [errno {errno.errorcode.get(err.errno, err.errno)}]{where}"


def _report(message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    print(f"edgevlm: {message}", file=sys.stderr)


class _Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C so `finally` blocks (temporary output folders) are cleaned up."""


def _raise_terminated(signum, frame):
    raise _Terminated()


def _terminate_like_interrupt():
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave the default (the process just ends)
        return None
