"""Battery power math (device_tests/power.py) on sample streams whose energy is known by hand."""

from __future__ import annotations

import random

import pytest

from edgevlm.device_tests.devices.base import is_unavailable
from edgevlm.device_tests.power import (BatteryPower, BatterySample, Phase, attribute, detect_units,
                                        idle_watts, integrate, parse_sampler_csv, parse_sampler_header)
from edgevlm.errors import EdgeVLMError

HEADER = "# edgevlm-power-sampler 1 clock=CLOCK_MONOTONIC root=/sys/class/power_supply/battery hz=10\n"


def stream(watts_at, t_end=10.0, dt=0.1):
    """(t, w) every dt from 0 to t_end inclusive (integer steps so the times are exact)."""
    n = round(t_end / dt)
    return [(i * dt, watts_at(i * dt)) for i in range(n + 1)]


def sampler_text(rows):
    return HEADER + "".join(f"{t_ns},{i},{v},{st}\n" for t_ns, i, v, st in rows)


def test_parse_sampler_output_with_truncated_last_line():
    text = HEADER + "t_ns,current_now,voltage_now,status\n" \
        "1000000000,-512000,3912000,Discharging\n" \
        "1100000000,-498000,3911000,Not charging\n" \
        "12000000"  # killed mid-write
    assert parse_sampler_header(text) == {"version": 1, "clock": "CLOCK_MONOTONIC",
                                          "root": "/sys/class/power_supply/battery", "hz": 10.0}
    assert parse_sampler_csv(text) == [BatterySample(1.0, -512000, 3912000, "Discharging"),
                                       BatterySample(1.1, -498000, 3911000, "Not charging")]
    with pytest.raises(EdgeVLMError, match="line 3 is malformed"):
        parse_sampler_csv(HEADER + "1000000000,-512000,3912000,Discharging\n1100000000,oops,1,Discharging\n")
    with pytest.raises(EdgeVLMError, match="header"):
        parse_sampler_csv("1000000000,-512000,3912000,Discharging\n")


def test_constant_power_energy():
    ws = stream(lambda t: 2.0)
    [r] = attribute(ws, [Phase("decode", 2.05, 4.05, count=40, unit="token")], idle_w=0.5).values()
    assert r["energy_j"] == pytest.approx(4.0)  # 2 W x 2 s
    assert r["mean_w"] == pytest.approx(2.0) and r["net_w"] == pytest.approx(1.5)
    assert r["net_energy_j"] == pytest.approx(3.0)  # 4 J - 0.5 W x 2 s
    assert r["energy_per_unit_j"] == pytest.approx(3.0 / 40)
    assert r["samples"] == 20  # 2.1 .. 4.0


def test_step_power_energy():
    ws = stream(lambda t: 1.0 if t < 4.95 else 3.0)  # last 1 W sample at 4.9, first 3 W at 5.0
    [r] = attribute(ws, [Phase("prefill", 4.0, 6.0, count=1)], idle_w=0.0).values()
    # 4.0..4.9 at 1 W = 0.9 J; the 4.9..5.0 trapezoid (1+3)/2 x 0.1 = 0.2 J; 5.0..6.0 at 3 W = 3 J
    assert r["energy_j"] == pytest.approx(4.1)


def test_phase_edges_between_samples_interpolate():
    ws = stream(lambda t: t)  # a ramp: the trapezoid rule is exact, so only the edge handling counts
    [r] = attribute(ws, [Phase("p", 1.234, 3.789)], idle_w=0.0).values()
    assert r["energy_j"] == pytest.approx((3.789 ** 2 - 1.234 ** 2) / 2)
    assert is_unavailable(r["energy_per_unit_j"])


def test_noisy_power_seeded():
    rng = random.Random(7)
    noise = [rng.gauss(0, 0.3) for _ in range(101)]
    inner = noise[21:40]  # the samples strictly inside [2.0, 4.0]
    mean = sum(inner) / len(inner)
    noise = [0.0] * 21 + [x - mean for x in inner] + [0.0] * 61  # zero sum inside, zero at the edges
    ws = [(i / 10, 2.0 + noise[i]) for i in range(101)]
    assert max(abs(w - 2.0) for _, w in ws) > 0.2  # it is noisy
    [r] = attribute(ws, [Phase("p", 2.0, 4.0)], idle_w=0.0).values()
    # uniform trapezoids: 0.1 x (edges/2 + inner sum) = 0.1 x (2 + 19 x 2) = 4 J exactly
    assert r["energy_j"] == pytest.approx(4.0)


def test_short_phase_is_unavailable_with_reason():
    ws = stream(lambda t: 2.0)
    out = attribute(ws, [Phase("blip", 3.0, 3.15), Phase("late", 9.5, 10.5)], idle_w=0.0)
    assert out["blip"]["power"] == {"unavailable": "phase lasted 150.0 ms, shorter than two sample periods at 10 Hz"}
    assert "outside the power samples" in out["late"]["power"]["unavailable"]


def test_idle_watts_over_window():
    ws = stream(lambda t: 0.8 if t < 3 else 4.0)
    assert idle_watts(ws, 0.0, 2.5) == pytest.approx(0.8)
    with pytest.raises(EdgeVLMError, match="idle power"):
        idle_watts(ws, 0.0, 0.1)


def _battery(rows_units, sign, status="Discharging", n=41):
    """n samples at 10 Hz: 500 mA at 3.9 V, in the given raw units and sign convention."""
    i_scale, v_scale = rows_units
    return [BatterySample(k / 10, sign * 500 * i_scale, 3900 * v_scale, status) for k in range(n)]


@pytest.mark.parametrize("units,expect", [((1000, 1000), ("uA", "uV")), ((1, 1), ("mA", "mV")),
                                          ((1000, 1), ("uA", "mV")), ((1, 1000), ("mA", "uV"))])
@pytest.mark.parametrize("sign", [1, -1])
def test_units_and_sign_give_the_same_watts(units, expect, sign):
    bp = BatteryPower.from_samples(_battery(units, sign))
    assert (bp.units.current, bp.units.voltage) == expect
    assert bp.sign == ("positive_is_discharge" if sign > 0 else "negative_is_discharge")
    assert all(w == pytest.approx(1.95) for _, w in bp.watts)  # 0.5 A x 3.9 V
    [r] = attribute(bp.watts, [Phase("p", 1.0, 3.0)], 0.0).values()
    assert r["energy_j"] == pytest.approx(3.9)


def test_ambiguous_current_follows_voltage_and_override():
    samples = [BatterySample(k / 10, 2000, 3_900_000, "Discharging") for k in range(5)]  # 2 mA in µA? 2 A in mA?
    u = detect_units(samples)
    assert (u.current, u.voltage) == ("uA", "uV") and "follows the voltage" in u.reason
    u = detect_units(samples, declared="mA/uV")
    assert (u.current, u.voltage) == ("mA", "uV") and "declared" in u.reason
    with pytest.raises(EdgeVLMError, match="not understood"):
        detect_units(samples, declared="amps")
    with pytest.raises(EdgeVLMError, match="no battery voltage"):
        detect_units([BatterySample(0, 1000, 12, "Discharging")])
    with pytest.raises(EdgeVLMError, match="does not report current"):
        detect_units([BatterySample(0, 0, 3_900_000, "Discharging")])


def test_opposite_sign_sample_subtracts():
    samples = _battery((1000, 1000), -1)
    samples[5] = BatterySample(0.5, +100_000, 3_900_000, "Discharging")  # a brief top-up
    bp = BatteryPower.from_samples(samples)
    assert bp.watts[5][1] == pytest.approx(-0.39)


def test_charging_is_refused_unless_allowed():
    samples = _battery((1000, 1000), 1) + [BatterySample(4.1 + k / 10, -800_000, 4_200_000, "Charging")
                                          for k in range(5)]
    with pytest.raises(EdgeVLMError) as e:
        BatteryPower.from_samples(samples)
    assert "Charging in 5 power sample(s)" in e.value.problem
    for hint in ("unplug", "dumpsys battery unplug", "dumpsys battery reset", "power-blocking USB hub",
                 "data-only cable", "--allow-charging"):
        assert hint in e.value.fix
    # outside the measured windows the charging samples do not matter
    bp = BatteryPower.from_samples(samples, windows=[(0.0, 4.0)])
    assert bp.charging_samples == 0 and bp.describe()["meaningful"]
    bp = BatteryPower.from_samples(samples, allow_charging=True)
    d = bp.describe()
    assert d["charging_samples"] == 5 and not d["meaningful"] and "not the phone's draw" in d["notes"][0]
    full = [BatterySample(k / 10, 0 if k else 10, 4_400_000, "Full") for k in range(5)]
    with pytest.raises(EdgeVLMError, match="Full"):
        BatteryPower.from_samples(full)


def test_sampler_text_to_phase_energy_end_to_end():
    rows = [(int(1e9 * (100 + k / 10)), -(400_000 if k < 20 else 900_000), 3_850_000, "Discharging")
            for k in range(61)]
    bp = BatteryPower.from_samples(parse_sampler_csv(sampler_text(rows)))
    idle = idle_watts(bp.watts, 100.0, 101.9)
    assert idle == pytest.approx(0.4 * 3.85)
    [r] = attribute(bp.watts, [Phase("vision", 102.0, 106.0, count=2, unit="image")], idle).values()
    assert r["net_energy_j"] == pytest.approx((0.9 - 0.4) * 3.85 * 4)
    assert r["energy_per_unit_j"] == pytest.approx((0.9 - 0.4) * 3.85 * 2)
    assert integrate(bp.watts, 102.0, 106.0) == pytest.approx(r["energy_j"])
