"""Other packages' warnings and log lines: counted and summarised by the CLI, never changed globally
by library code.

coremltools, torch, transformers, onnxruntime and ExecuTorch's C++ runtime print warnings that say
nothing about the user's export (untested version pairs, deprecations inside their own code) and
made up most of the lines of `export` and `verify`. The CLI runs each command inside
`capture_third_party`: Python warnings and log records of loggers outside `edgevlm` are collected,
and one line at the end says how many were hidden; `--log-level debug` lets them all through.
Library code only quietens a logger for the duration of its own call (`quiet_loggers`) and marks
where a native runtime writes straight to file descriptor 2 (`native_stderr`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field

OWN_LOGGER = "edgevlm"


@dataclass
class HiddenOutput:
    """What a command's third-party code tried to print: (source, text) pairs."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def add(self, source: str, text: str) -> None:
        self.lines.append((source.split(".", 1)[0] or "?", text))

    def summary(self) -> str | None:
        """One line for the end of a command, or None when nothing was hidden."""
        if not self.lines:
            return None
        by_source = Counter(source for source, _ in self.lines)
        sources = ", ".join(f"{name} {count}" for name, count in by_source.most_common(4))
        noun = "warning" if len(self.lines) == 1 else "warnings"
        return f"[edgevlm] {len(self.lines)} third-party {noun} hidden ({sources}); --log-level debug shows them"


_active: HiddenOutput | None = None  # set while the CLI captures; None in library use


@contextlib.contextmanager
def capture_third_party(show: bool = False):
    """Yields a HiddenOutput. Unless `show`, third-party warnings and WARNING-level log records are
    collected into it instead of printed (errors still print); everything is restored on exit."""
    global _active
    hidden = HiddenOutput()
    if show:
        yield hidden
        return
    # Every record reaches its handlers through Logger.callHandlers, including loggers with their
    # own handlers that do not propagate (torch, transformers) and loggers created mid-command.
    original = logging.Logger.callHandlers

    def call_handlers(logger, record):
        if record.name.startswith(OWN_LOGGER) or record.levelno >= logging.ERROR:
            return original(logger, record)
        if record.levelno >= logging.WARNING:
            hidden.add(record.name, record.getMessage())
        else:
            original(logger, record)

    previous, _active = _active, hidden
    logging.Logger.callHandlers = call_handlers
    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, category, filename, *rest: hidden.add(
                _module_of(filename) or category.__name__, f"{category.__name__}: {message}")
            yield hidden
    finally:
        logging.Logger.callHandlers = original
        _active = previous


def _module_of(filename: str) -> str | None:
    """The package a warning came from, from its file path (site-packages/<package>/...); None for
    the standard library or edgevlm's own files (a deprecation in a package edgevlm calls)."""
    parts = filename.replace("\\", "/").split("/")
    if "site-packages" in parts:
        index = parts.index("site-packages")
        if index + 1 < len(parts):
            return parts[index + 1]
    return None


@contextlib.contextmanager
def quiet_loggers(*names: str, level: int = logging.ERROR):
    """Raise these loggers' level for the duration of a call only (never for the whole process)."""
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, before in zip(loggers, saved):
            logger.setLevel(before)


@contextlib.contextmanager
def native_stderr(source: str):
    """While the CLI captures: what C/C++ code writes to file descriptor 2 inside this block (e.g.
    ExecuTorch's cpuinfo probing) is counted as hidden third-party output. Outside the CLI, or
    with --log-level debug, it passes through untouched."""
    hidden = _active
    if hidden is None:
        yield
        return
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            sink.seek(0)
            for line in sink.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    hidden.add(source, line)
