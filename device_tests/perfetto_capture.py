"""Optional Perfetto capture on an Android phone, beside the benchmark: traced's android.power data
source (battery counters, and the power rails on phones whose power HAL exposes them), read on the
host by perfetto.py and attributed to the benchmark's phases. It adds per-rail energy (CPU, GPU,
NSP/HTP rails, named by the vendor) to the fuel-gauge sampler's whole-phone power.

perfetto runs with --background: it forks, prints the pid of the tracing child and returns, so
the `adb shell` that started it ends at once (the child keeps the trace going for duration_s at
most). SIGTERM makes that child end the session and write the trace, which stop() waits for.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from edgevlm.device_tests.devices.base import Background, CommandResult, is_unavailable, unavailable
from edgevlm.device_tests.perfetto import PERFETTO_ARGV, TRACE_OUT, parse_trace, rail_energy_j, trace_config
from edgevlm.errors import EdgeVLMError

TRACE_FILE = "perfetto.pftrace"  # its name in raw/
NOT_ON_PHONE = ("perfetto is not on this phone (Android 9+ ships /system/bin/perfetto; on Android 9 and 10 "
                "also run `adb shell setprop persist.traced.enable 1`)")


class PerfettoCapture(Background):
    """The backgrounded perfetto on the phone (pid), or why it did not start (problem)."""

    def __init__(self, device, argv: list[str], pid: int | None, problem: str | None = None):
        self.device, self.argv, self.pid, self.problem = device, argv, pid, problem

    def stop(self, wait_s: float = 30.0) -> CommandResult:
        if self.pid is None:
            return CommandResult(self.argv, 1, "", self.problem or "perfetto did not start")
        pid = str(self.pid)
        self.device.shell(["kill", "-TERM", pid], timeout=30)
        deadline = time.monotonic() + wait_s
        # the trace is complete only once the child has written it and exited
        while self.device.shell(["kill", "-0", pid], timeout=30).returncode == 0:
            if time.monotonic() > deadline:
                return CommandResult(self.argv, 124, "", f"perfetto (pid {pid}) still writing after {wait_s:g} s")
            time.sleep(0.2)
        return CommandResult(self.argv, 0, "", "")


def start_perfetto(device, duration_s: float, battery_poll_ms: int = 250) -> PerfettoCapture:
    """Start tracing android.power on an AdbDevice for at most duration_s (stop() ends it sooner).
    Never raises for a phone without perfetto: the capture is optional, its problem is kept."""
    config = trace_config(int(duration_s * 1000), battery_poll_ms=battery_poll_ms)
    argv = [PERFETTO_ARGV[0], "--background", *PERFETTO_ARGV[1:]]
    # a trace left by an earlier run must not pass for this one's
    device.shell(["rm", "-f", TRACE_OUT], timeout=30)
    try:  # the config travels on stdin: traced cannot read /data/local/tmp from Android 12 on
        r = subprocess.run(device.adb_argv("shell", device.command(argv)), input=config, capture_output=True,
                           text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return PerfettoCapture(device, argv, None, "perfetto --background did not return within 60 s")
    lines = [x.strip() for x in r.stdout.splitlines() if x.strip()]
    if r.returncode == 0 and lines and lines[-1].isdigit():
        return PerfettoCapture(device, argv, int(lines[-1]))
    if r.returncode == 127 or "not found" in r.stderr:
        return PerfettoCapture(device, argv, None, NOT_ON_PHONE)
    tail = (r.stderr or r.stdout).strip()[-400:]
    return PerfettoCapture(device, argv, None, f"perfetto did not start (exit {r.returncode}): {tail}")


def _battery_summary(series: dict[str, list[tuple[float, float]]]) -> dict:
    out = {}
    for name, points in series.items():
        values = [v for _, v in points]
        out[name] = {"samples": len(values), "first": values[0], "last": values[-1], "min": min(values),
                     "max": max(values), "mean": statistics.fmean(values),
                     "span_s": [points[0][0], points[-1][0]]}
    if "charge_counter_uah" in out:
        c = out["charge_counter_uah"]
        out["charge_used_uah"] = c["first"] - c["last"]
    return out


def _phase_energy(trace, phase) -> dict:
    rails = rail_energy_j(trace, phase.start_s, phase.end_s)
    if not trace.rails:
        rails = rails["rails"]  # one reason for the phone, not per rail
        return {"start_s": phase.start_s, "end_s": phase.end_s, "duration_s": phase.end_s - phase.start_s,
                "rails_j": rails, "rails_total_j": rails}
    measured = [v for v in rails.values() if not is_unavailable(v)]
    total = sum(measured) if len(measured) == len(rails) else unavailable(
        f"{len(rails) - len(measured)} of {len(rails)} rails have no samples over this phase")
    return {"start_s": phase.start_s, "end_s": phase.end_s, "duration_s": phase.end_s - phase.start_s,
            "rails_j": rails, "rails_total_j": total}


def collect_perfetto(device, raw: Path, phases: list) -> dict:
    """Pull the trace into raw/perfetto.pftrace and attribute rail energy to each benchmark phase
    (power.Phase: name, start_s, end_s in the phone's CLOCK_MONOTONIC seconds). The block for the
    report's power.perfetto, or unavailable(reason) when there is no usable trace."""
    local = Path(raw) / TRACE_FILE
    try:
        device.pull(TRACE_OUT, local)
    except EdgeVLMError as e:
        if device.shell(["sh", "-c", "command -v perfetto"], timeout=30).returncode:
            return unavailable(NOT_ON_PHONE)
        return unavailable(f"no trace to pull at {TRACE_OUT}: perfetto wrote none ({e.problem[-300:]})")
    data = local.read_bytes()
    if not data:
        return unavailable(f"the Perfetto trace {TRACE_OUT} is empty (tracing stopped before traced flushed it)")
    try:
        trace = parse_trace(data)
    except EdgeVLMError as e:
        return unavailable(e.problem)
    if not trace.battery and not trace.rails:
        return unavailable("the trace holds no android.power data (no battery counters, no power rails): "
                           "this phone's traced lacks the android.power data source")
    return {"method": "Perfetto android.power: battery counters and the power HAL's cumulative rail energy, "
                      "rails interpolated at each phase's edges (CLOCK_MONOTONIC, from the trace's clock snapshots)",
            "trace_file": TRACE_FILE, "boot_minus_monotonic_s": trace.boot_minus_monotonic_s,
            "rail_subsystems": trace.rail_subsystems or unavailable("the power HAL exposes no rails on this phone"),
            "phases": {p.name: _phase_energy(trace, p) for p in phases},
            "battery": _battery_summary(trace.battery) if trace.battery else unavailable("no battery counters"),
            "notes": trace.notes}
