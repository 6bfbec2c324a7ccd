"""powermetrics' plist stream -> power samples and per-interval energy.

The stream is built with plistlib in powermetrics' layout (top-level elapsed_ns integer and
timestamp date, `processor` dict with *_energy integers in mJ and *_power reals in mW, `gpu`
sampler dict), each plist followed by a NUL as powermetrics writes them. powermetrics itself is
macOS-only: the sampler class is run here on a recorded stream replayed by `cat`.
"""

from __future__ import annotations

import datetime as dt
import plistlib
import sys

import pytest

from edgevlm.device_tests import powermetrics as pm

T0 = dt.datetime(2026, 12, 7, 10, 0, 0)


def sample(i: int, elapsed_ms: int = 100, cpu_mw=1500.0, gpu_mw=300.0, ane_mw=2000.0, power_keys=True) -> dict:
    s = elapsed_ms / 1000
    processor = {"clusters": [{"name": "E-Cluster", "freq_hz": 1.02e9, "cpus": []}],
                 "cpu_energy": round(cpu_mw * s), "gpu_energy": round(gpu_mw * s), "ane_energy": round(ane_mw * s)}
    if power_keys:
        processor |= {"cpu_power": cpu_mw, "gpu_power": gpu_mw, "ane_power": ane_mw,
                      "combined_power": cpu_mw + gpu_mw + ane_mw}
    return {"is_delta": True, "elapsed_ns": elapsed_ms * 1_000_000, "hw_model": "Mac16,1",
            "kern_osversion": "24B83", "timestamp": T0 + dt.timedelta(milliseconds=elapsed_ms * (i + 1)),
            "processor": processor, "gpu": {"freq_hz": 338.0, "idle_ratio": 0.87, "gpu_energy": round(gpu_mw * s)}}


def stream(samples: list[dict], partial: bool = False) -> bytes:
    out = b"".join(plistlib.dumps(s, fmt=plistlib.FMT_XML) + b"\0" for s in samples)
    if partial:
        out += plistlib.dumps(sample(99), fmt=plistlib.FMT_XML)[:180]  # stopped mid-write
    return out


def test_stream_splits_on_nul_and_keeps_the_unfinished_chunk():
    data = stream([sample(0), sample(1)], partial=True)
    plists, rest = pm.split_plists(data)
    assert [p["elapsed_ns"] for p in plists] == [100_000_000] * 2
    assert rest.startswith(b"<?xml") and b"</plist>" not in rest
    # a streaming reader prepends the rest to the next read and gets the whole plist
    more, rest2 = pm.split_plists(rest + plistlib.dumps(sample(99), fmt=plistlib.FMT_XML)[180:] + b"\0")
    assert len(more) == 1 and more[0]["timestamp"] == T0 + dt.timedelta(milliseconds=10_000) and rest2 == b""
    assert len(pm.parse_stream(data)) == 2  # the cut-off last interval is dropped


def test_power_keys_become_watts_per_component_at_interval_midpoints():
    plists = pm.parse_stream(stream([sample(0), sample(1, cpu_mw=4000.0)]))
    samples = pm.powermetrics_watts(plists)
    t0 = T0.replace(tzinfo=dt.timezone.utc).timestamp()
    assert samples[0][0] == pytest.approx(t0 + 0.05) and samples[1][0] == pytest.approx(t0 + 0.15)
    assert samples[0][1] == pytest.approx({"cpu": 1.5, "gpu": 0.3, "ane": 2.0, "combined": 3.8})
    assert samples[1][1]["cpu"] == pytest.approx(4.0) and samples[1][1]["combined"] == pytest.approx(6.3)
    energy = pm.interval_energy(plists)
    assert energy[1]["start_s"] == pytest.approx(t0 + 0.1) and energy[1]["end_s"] == pytest.approx(t0 + 0.2)
    assert energy[1]["joules"]["combined"] == pytest.approx(0.63)


def test_energy_only_samples_use_the_true_interval_length():
    # powermetrics' intervals run long under load: 137 ms asked as 100; mJ / elapsed gives mW
    plists = pm.parse_stream(stream([sample(0, elapsed_ms=137, power_keys=False)]))
    watts = pm.powermetrics_watts(plists)[0][1]
    assert watts["cpu"] == pytest.approx(round(1500 * 0.137) / 0.137 / 1000)
    assert watts["combined"] == pytest.approx(watts["cpu"] + watts["gpu"] + watts["ane"])
    old = sample(0, power_keys=False)
    del old["processor"]["gpu_energy"]  # older builds: GPU energy only in the gpu sampler's dict
    assert pm.powermetrics_watts([old])[0][1]["gpu"] == pytest.approx(0.3)


def test_sampler_reads_the_stream_of_a_real_process(tmp_path):
    capture = tmp_path / "powermetrics.plist"
    capture.write_bytes(stream([sample(0), sample(1), sample(2)], partial=True))
    sampler = pm.PowermetricsSampler(argv=["cat", str(capture)])
    sampler.proc.wait(timeout=10)
    assert [p["elapsed_ns"] for p in sampler.stop()] == [100_000_000] * 3


def test_root_check_names_the_fix():
    if sys.platform != "darwin":
        assert pm.access_problem() == "powermetrics is not on PATH (it ships with macOS in /usr/bin)"
    else:
        assert pm.access_problem(euid=501, sudo_ok=lambda: False) == pm.NO_ROOT
        assert pm.access_problem(euid=0) is None
    assert pm.powermetrics_argv(250) == ["powermetrics", "--samplers", "cpu_power,gpu_power,ane_power",
                                         "-i", "250", "-f", "plist"]
