"""Apple silicon power from `powermetrics`: the sampler's command, its root check, and its output.

`powermetrics --samplers cpu_power,gpu_power,ane_power -i 100 -f plist` writes one XML plist per
interval, each followed by a NUL byte; a stopped sampler may leave a last chunk cut off. Per
interval it reports `elapsed_ns` (the interval's true length, often longer than asked),
`timestamp` (a plist date: when the interval ended) and, under `processor`, the energy each
component used in the interval (`cpu_energy`, `gpu_energy`, `ane_energy`, mJ) and the mean power
(`cpu_power`, `gpu_power`, `ane_power`, `combined_power`, mW). Older builds report the GPU energy
under the `gpu` sampler's dict (`gpu.gpu_energy`) instead. Everything here is independent of the
shared phase integrator (device_tests/power.py): it only turns the stream into samples.

powermetrics needs root; without it the power fields are unavailable, never estimated.
"""

from __future__ import annotations

import datetime as dt
import os
import plistlib
import shutil
import signal
import subprocess
import time
from xml.parsers.expat import ExpatError

COMPONENTS = ("cpu", "gpu", "ane")
SAMPLERS = "cpu_power,gpu_power,ane_power"
NO_ROOT = ("powermetrics needs root: run with sudo, or allow it without a password "
           "(sudoers: `USER ALL=(root) NOPASSWD: /usr/bin/powermetrics`)")


def powermetrics_argv(interval_ms: int = 100) -> list[str]:
    return ["powermetrics", "--samplers", SAMPLERS, "-i", str(interval_ms), "-f", "plist"]


def access_problem(euid: int | None = None, sudo_ok=None) -> str | None:
    """Why powermetrics cannot run from this process, or None. Root, or a password-free sudo."""
    if shutil.which("powermetrics") is None:
        return "powermetrics is not on PATH (it ships with macOS in /usr/bin)"
    if (os.geteuid() if euid is None else euid) == 0:
        return None
    if (sudo_ok or _sudo_without_password)():
        return None
    return NO_ROOT


def _sudo_without_password() -> bool:
    if shutil.which("sudo") is None:
        return False
    # -n: fail instead of prompting, so a benchmark never hangs on a password prompt.
    probe = subprocess.run(["sudo", "-n", "powermetrics", "--help"], capture_output=True, timeout=10)
    return probe.returncode == 0


def split_plists(data: bytes) -> tuple[list[dict], bytes]:
    """NUL-separated plists -> (the complete ones, parsed; the trailing bytes of an unfinished one).

    A chunk is complete once its NUL arrives; the remainder is returned so a streaming reader can
    prepend it to the next read. Whitespace between chunks (powermetrics ends each with a newline)
    is not a plist."""
    *chunks, rest = data.split(b"\0")
    plists = []
    for chunk in chunks:
        chunk = chunk.strip()
        if chunk:
            plists.append(plistlib.loads(chunk, fmt=plistlib.FMT_XML))
    return plists, rest


def parse_stream(data: bytes) -> list[dict]:
    """All complete plists of a finished run; a partial last chunk (the sampler was stopped
    mid-write) is dropped only if it does not parse."""
    plists, rest = split_plists(data)
    rest = rest.strip()
    if rest:
        try:
            plists.append(plistlib.loads(rest, fmt=plistlib.FMT_XML))
        except (plistlib.InvalidFileException, ExpatError):
            pass  # cut off: the interval it describes was not finished either
    return plists


def _end_time(sample: dict) -> float:
    stamp = sample["timestamp"]
    if isinstance(stamp, dt.datetime):
        # plistlib reads <date> as a naive datetime in UTC
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)).timestamp()
    return float(stamp)


def _component_mw(sample: dict, name: str, seconds: float) -> float | None:
    processor = sample.get("processor", {})
    if f"{name}_power" in processor:
        return float(processor[f"{name}_power"])
    energy = processor.get(f"{name}_energy")
    if energy is None and name == "gpu":
        energy = sample.get("gpu", {}).get("gpu_energy")
    if energy is None or seconds <= 0:
        return None
    return float(energy) / seconds  # mJ over the interval -> mW


def interval_energy(plists: list[dict], started_s: float | None = None) -> list[dict]:
    """Per interval: start_s, end_s (epoch seconds), and joules and watts per component
    (cpu, gpu, ane, combined). A component a sample does not report is absent, not zero.

    A plist <date> has whole seconds only, too coarse for 100 ms intervals: the intervals are laid
    end to end by their elapsed_ns from `started_s` (when the sampler started), or from the first
    timestamp; a stamp more than a second off that clock (a stall) re-anchors it."""
    intervals = []
    clock = started_s
    for sample in plists:
        seconds = sample["elapsed_ns"] / 1e9
        stamped = _end_time(sample)
        if clock is None or abs(clock + seconds - stamped) > 1.5:
            clock = stamped - seconds if clock is None else stamped
        else:
            clock += seconds
        end = clock
        watts = {}
        for name in COMPONENTS:
            mw = _component_mw(sample, name, seconds)
            if mw is not None:
                watts[name] = mw / 1000
        combined = sample.get("processor", {}).get("combined_power")
        if combined is not None:
            watts["combined"] = float(combined) / 1000
        elif watts:
            watts["combined"] = sum(watts.values())
        intervals.append({"start_s": end - seconds, "end_s": end, "seconds": seconds, "watts": watts,
                          "joules": {k: w * seconds for k, w in watts.items()}})
    return intervals


def powermetrics_watts(plists: list[dict]) -> list[tuple[float, dict]]:
    """(t_s, watts by component) per interval; t_s is the interval's midpoint (epoch seconds),
    the instant its mean power best stands for."""
    return [((i["start_s"] + i["end_s"]) / 2, i["watts"]) for i in interval_energy(plists)]


class PowermetricsSampler:
    """powermetrics running beside a benchmark; `stop()` ends it and returns its parsed plists.

    `argv` defaults to powermetrics (under `sudo -n` when not root)."""

    def __init__(self, argv: list[str] | None = None, interval_ms: int = 100):
        if argv is None:
            argv = powermetrics_argv(interval_ms)
            if os.geteuid() != 0:
                argv = ["sudo", "-n", *argv]
        self.argv = argv
        self.started_s = time.time()  # the first interval starts here (see interval_energy)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def stop(self, timeout: float = 10) -> list[dict]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # powermetrics flushes its current sample on SIGINT
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        plists = parse_stream(out)
        if not plists and self.proc.returncode not in (0, -signal.SIGINT):
            from edgevlm.errors import EnvironmentProblem

            raise EnvironmentProblem(f"powermetrics exited {self.proc.returncode}: {err.decode()[-800:]}",
                                     NO_ROOT)
        return plists
