"""Perfetto android.power traces (device_tests/perfetto.py): traces encoded with the real
schema (the perfetto package's perfetto_trace_pb2), parsed back, energies checked by hand."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from edgevlm.device_tests.devices.base import is_unavailable
from edgevlm.device_tests.perfetto import PERFETTO_ARGV, parse_trace, rail_energy_j, trace_config
from edgevlm.errors import EdgeVLMError

SLEPT_NS = 5_000_000_000  # BOOTTIME runs 5 s ahead of MONOTONIC: the phone slept 5 s since boot


def _trace(with_snapshot=True, rails=True) -> bytes:
    t = pb.Trace()
    if with_snapshot:
        snap = t.packet.add()
        snap.clock_snapshot.clocks.add(clock_id=6, timestamp=105_000_000_000)  # BOOTTIME
        snap.clock_snapshot.clocks.add(clock_id=3, timestamp=100_000_000_000)  # MONOTONIC
    for k in range(5):  # battery every 250 ms from boot time 105.0 s
        p = t.packet.add()
        p.timestamp = 105_000_000_000 + k * 250_000_000
        p.battery.charge_counter_uah = 3_650_000 - k * 10
        p.battery.capacity_percent = 77.0
        p.battery.current_ua = -450_000 - k * 1000
        p.battery.voltage_uv = 3_942_000
    if rails:
        d = t.packet.add()
        d.power_rails.rail_descriptor.add(index=0, rail_name="S5M_VDD_CX", subsys_name="cx", sampling_rate=1024)
        d.power_rails.rail_descriptor.add(index=1, rail_name="L15M_VDD_NSP", subsys_name="nsp", sampling_rate=1024)
        for k in range(5):  # cumulative µWs every 500 ms: CX at 0.8 W, NSP 0.2 W then 2.0 W
            e = t.packet.add()
            e.timestamp = 105_000_000_000 + k * 500_000_000
            ms = 105_000 + k * 500
            e.power_rails.energy_data.add(index=0, timestamp_ms=ms, energy=1_000_000 + k * 400_000)
            nsp = 50_000 + min(k, 2) * 100_000 + max(k - 2, 0) * 1_000_000
            e.power_rails.energy_data.add(index=1, timestamp_ms=ms, energy=nsp)
    return t.SerializeToString()


def test_battery_counters_in_monotonic_time():
    tr = parse_trace(_trace())
    assert tr.boot_minus_monotonic_s == 5.0 and not tr.notes
    assert tr.battery["current_ua"][:2] == [(100.0, -450000.0), (100.25, -451000.0)]
    assert tr.battery["voltage_uv"][-1] == (101.0, 3942000.0)
    assert tr.battery["charge_counter_uah"][4] == (101.0, 3649960.0)
    assert set(tr.battery) == {"charge_counter_uah", "capacity_percent", "current_ua", "voltage_uv"}
    assert tr.rail_subsystems == {"S5M_VDD_CX": "cx", "L15M_VDD_NSP": "nsp"}


def test_rail_energy_over_a_window():
    tr = parse_trace(_trace())
    e = rail_energy_j(tr, 100.25, 101.75)
    assert e["S5M_VDD_CX"] == pytest.approx(0.8 * 1.5)  # 0.8 W for 1.5 s
    # NSP: 100.25-101.0 at 0.2 W = 0.15 J; 101.0-101.75 at 2.0 W = 1.5 J
    assert e["L15M_VDD_NSP"] == pytest.approx(1.65)
    late = rail_energy_j(tr, 101.5, 103.0)
    assert "outside the rail's samples [100.000, 102.000]" in late["S5M_VDD_CX"]["unavailable"]


def test_no_rails_and_no_clock_snapshot():
    tr = parse_trace(_trace(with_snapshot=False, rails=False))
    assert tr.battery["current_ua"][0][0] == 105.0 and "never slept" in tr.notes[0]
    assert is_unavailable(rail_energy_j(tr, 105.0, 106.0)["rails"])


def test_garbage_is_a_clear_error():
    with pytest.raises(EdgeVLMError, match="does not decode"):
        parse_trace(b"\x0a\xff\xff\xff\xff\x0f garbage")


def test_trace_config_is_a_valid_trace_config():
    text = trace_config(duration_ms=60_000, battery_poll_ms=250)
    cfg = text_format.Parse(text, pb.TraceConfig())
    ds = cfg.data_sources[0].config
    assert ds.name == "android.power" and cfg.duration_ms == 60_000
    assert ds.android_power_config.battery_poll_ms == 250 and ds.android_power_config.collect_power_rails
    assert len(ds.android_power_config.battery_counters) == 5
    assert PERFETTO_ARGV == ["perfetto", "-c", "-", "--txt", "-o", "/data/misc/perfetto-traces/edgevlm.pftrace"]
    with pytest.raises(EdgeVLMError, match="100 ms"):
        trace_config(1000, battery_poll_ms=50)
