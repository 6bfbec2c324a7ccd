"""Progress bars (rich) and structured logging shared by every command."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time

log = logging.getLogger("edgevlm")


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool = True, report_every_s: float | None = None):
    """Yields `advance(n)`. Draws only on an interactive stderr, so CI logs stay clean; there, with
    report_every_s, a long loop prints a line with its count at most that often instead."""
    if not enabled or not sys.stderr.isatty():
        if not enabled or report_every_s is None:
            yield lambda n=1: None
            return
        state = {"done": 0, "start": time.perf_counter(), "last": time.perf_counter()}

        def advance(n=1):
            state["done"] += n
            now = time.perf_counter()
            if now - state["last"] >= report_every_s:
                state["last"] = now
                print(f"[edgevlm] {description}: {state['done']}/{total} ({now - state['start']:.0f} s)",
                      file=sys.stderr, flush=True)

        yield advance
        return
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), TaskProgressColumn(),
                  TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def print_stage(name: str, record) -> None:
    """A StageRecorder callback for the CLI: `[edgevlm] NAME ...` when a long step starts, its wall
    time and peak RSS when it ends, on stderr (stdout keeps the results)."""
    if record is None:
        print(f"[edgevlm] {name} ...", file=sys.stderr, flush=True)
    else:
        print(f"[edgevlm] {name}: {record.seconds:.1f} s, peak RSS {record.peak_rss_bytes / 2**30:.2f} GiB",
              file=sys.stderr, flush=True)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra=` fields."""

    _RESERVED = set(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        payload = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                   "msg": record.getMessage()}
        payload.update({k: v for k, v in vars(record).items() if k not in self._RESERVED and k != "message"})
        return json.dumps(payload, default=str)


def setup_logging(level: str = "info", json_logs: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        from rich.logging import RichHandler

        handler = RichHandler(console=None, show_path=False, rich_tracebacks=False)
    root = logging.getLogger("edgevlm")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


@contextlib.contextmanager
def timed(step: str, **fields):
    """Log a step's duration as a structured record."""
    start = time.perf_counter()
    yield
    log.info("%s done", step, extra={"step": step, "seconds": round(time.perf_counter() - start, 3), **fields})


@contextlib.contextmanager
def stage(description: str, **fields):
    """A long step a user waits on: a spinner with its name on a terminal, its duration logged."""
    from rich.console import Console

    console = Console(stderr=True)
    with console.status(description), timed(description, **fields):
        yield
    console.print(f"[dim]done:[/dim] {description}", highlight=False)
