"""device_tests/perfetto_capture.py: perfetto started in the background on the phone, stopped,
its trace pulled and attributed to the benchmark's phases.

No phone here: tests/test_device_adb.py's fake `adb` stands in for it (its `adb shell` runs the
command with this machine's sh, /data/local/tmp and /data/misc/perfetto-traces mapped to a temp
folder), and a small `perfetto` script stands in for the phone's /system/bin/perfetto: it checks
its arguments, keeps the config it read on stdin, forks a child that prints nothing and answers
SIGTERM by writing a trace (built with the real perfetto protobuf schema, tests/test_perfetto.py),
and prints that child's pid, as perfetto --background does.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest
from google.protobuf import text_format
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from edgevlm.device_tests.devices.adb import AdbDevice
from edgevlm.device_tests.devices.base import is_unavailable
from edgevlm.device_tests.perfetto import TRACE_OUT, trace_config
from edgevlm.device_tests.perfetto_capture import NOT_ON_PHONE, collect_perfetto, start_perfetto
from edgevlm.device_tests.power import Phase
from tests.test_device_adb import _alive, fake_adb  # noqa: F401  (the phone boundary, shared)
from tests.test_perfetto import _trace

PERFETTO = r'''#!PYTHON
import os, signal, sys, time
state = os.environ["FAKE_ADB_STATE"]
args = sys.argv[1:]
if args[:5] != ["--background", "-c", "-", "--txt", "-o"] or len(args) != 6:
    sys.exit(f"perfetto: unexpected arguments {args}")
open(os.path.join(state, "perfetto-config.pbtxt"), "w").write(sys.stdin.read())
trace = open(os.path.join(state, "trace.pb"), "rb").read()
pid = os.fork()
if pid:
    print(pid)
    sys.exit(0)
os.setsid()
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
def finish(*_):
    open(args[5], "wb").write(trace)
    os._exit(0)
signal.signal(signal.SIGTERM, finish)
time.sleep(60)
finish()
'''

PHASES = [Phase("vision_warm", 100.25, 101.75, 10, "slice"), Phase("decode:128", 101.5, 103.0, 32, "token")]


@pytest.fixture
def phone_perfetto(fake_adb, tmp_path, monkeypatch):  # noqa: F811
    bindir = tmp_path / "phone-bin"
    bindir.mkdir()
    (bindir / "perfetto").write_text(PERFETTO.replace("PYTHON", sys.executable))
    (bindir / "perfetto").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return fake_adb


def _capture(fake, trace: bytes):
    (fake.root / "trace.pb").write_bytes(trace)
    stale = fake.phone / TRACE_OUT.lstrip("/")
    stale.write_bytes(b"an earlier run's trace")
    dev = AdbDevice("adb:R5CX21ABCDE")
    capture = start_perfetto(dev, 90)
    assert not stale.exists()  # removed before perfetto started
    return dev, capture


def test_started_stopped_pulled_and_attributed(phone_perfetto, tmp_path):
    dev, capture = _capture(phone_perfetto, _trace())
    try:
        assert capture.problem is None and _alive(capture.pid)
        calls = [c[2:] for c in phone_perfetto.calls()]
        assert calls == [["shell", f"rm -f {TRACE_OUT}"], ["shell", f"perfetto --background -c - --txt -o {TRACE_OUT}"]]
        sent = (phone_perfetto.root / "perfetto-config.pbtxt").read_text()
        assert sent == trace_config(90_000)  # on stdin, byte for byte, and a valid TraceConfig
        assert text_format.Parse(sent, pb.TraceConfig()).duration_ms == 90_000
    finally:
        phone_perfetto.reset()
        result = capture.stop()
    assert result.returncode == 0 and not _alive(capture.pid)
    calls = [c[2:] for c in phone_perfetto.calls()]
    assert calls[0] == ["shell", f"kill -TERM {capture.pid}"] and calls[-1] == ["shell", f"kill -0 {capture.pid}"]
    phone_perfetto.reset()
    block = collect_perfetto(dev, tmp_path / "raw", PHASES)
    assert phone_perfetto.calls()[0][2:] == ["pull", TRACE_OUT, str(tmp_path / "raw/perfetto.pftrace")]
    assert (tmp_path / "raw/perfetto.pftrace").read_bytes() == _trace()
    warm = block["phases"]["vision_warm"]
    assert warm["duration_s"] == pytest.approx(1.5)
    assert warm["rails_j"] == {"S5M_VDD_CX": pytest.approx(1.2), "L15M_VDD_NSP": pytest.approx(1.65)}
    assert warm["rails_total_j"] == pytest.approx(2.85)
    late = block["phases"]["decode:128"]  # runs past the trace's last rail sample
    assert "outside the rail's samples" in late["rails_j"]["S5M_VDD_CX"]["unavailable"]
    assert late["rails_total_j"] == {"unavailable": "2 of 2 rails have no samples over this phase"}
    battery = block["battery"]
    assert battery["current_ua"]["samples"] == 5 and battery["current_ua"]["span_s"] == [100.0, 101.0]
    assert battery["current_ua"]["mean"] == pytest.approx(-452_000) and battery["charge_used_uah"] == 40
    assert block["boot_minus_monotonic_s"] == 5.0 and block["rail_subsystems"]["L15M_VDD_NSP"] == "nsp"
    assert block["trace_file"] == "perfetto.pftrace" and block["notes"] == []


def test_trace_without_rails_or_empty(phone_perfetto, tmp_path):
    dev, capture = _capture(phone_perfetto, _trace(rails=False))
    capture.stop()
    block = collect_perfetto(dev, tmp_path / "raw", PHASES)
    why = block["phases"]["vision_warm"]["rails_j"]
    assert is_unavailable(why) and "no power rails" in why["unavailable"]
    assert block["phases"]["vision_warm"]["rails_total_j"] == why and is_unavailable(block["rail_subsystems"])
    assert block["battery"]["voltage_uv"]["last"] == 3_942_000
    dev, capture = _capture(phone_perfetto, b"")
    capture.stop()
    assert "is empty" in collect_perfetto(dev, tmp_path / "raw2", PHASES)["unavailable"]


@pytest.mark.skipif(shutil.which("perfetto") is not None, reason="this machine has a perfetto of its own on PATH")
def test_phone_without_perfetto(fake_adb, tmp_path):  # noqa: F811
    dev = AdbDevice("adb:R5CX21ABCDE")
    capture = start_perfetto(dev, 30)
    assert capture.pid is None and capture.problem == NOT_ON_PHONE
    assert capture.stop().returncode == 1
    assert collect_perfetto(dev, tmp_path / "raw", PHASES) == {"unavailable": NOT_ON_PHONE}
