"""Battery power from a phone's fuel gauge, and energy per benchmark phase (Android and macOS).

The device-side `edgevlm-power-sampler` prints the raw sysfs integers of the battery's
power_supply folder (`current_now`, `voltage_now`, `status`) with CLOCK_MONOTONIC timestamps, the
same clock `edgevlm-bench` stamps its phases with, so samples and phases line up without any
clock translation. Everything vendor-specific (units, sign) is decided here and recorded.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

from edgevlm.device_tests.devices.base import unavailable
from edgevlm.errors import EdgeVLMError

HEADER_RE = re.compile(r"^# edgevlm-power-sampler (\d+) clock=(\S+) root=(\S+) hz=([0-9.]+)\s*$")
COLUMNS = "t_ns,current_now,voltage_now,status"
# Kernel power_supply ABI status strings that mean a charger feeds the phone: the battery's
# current is then charger minus load, not what the phone draws.
CHARGING = {"Charging", "Full"}


@dataclass(frozen=True)
class BatterySample:
    t_s: float
    current_raw: int
    voltage_raw: int
    status: str


def parse_sampler_header(text: str) -> dict:
    """The sampler's first line: format version, clock, power_supply root and rate."""
    first = text.split("\n", 1)[0].strip()
    m = HEADER_RE.match(first)
    if not m:
        raise EdgeVLMError(f"power sampler output does not start with its header line (got {first[:80]!r})",
                           "run the edgevlm-power-sampler that ships with this edgevlm version")
    return {"version": int(m.group(1)), "clock": m.group(2), "root": m.group(3), "hz": float(m.group(4))}


def parse_sampler_csv(text: str) -> list[BatterySample]:
    """Samples from the sampler's output. The last line may be cut off (the sampler is killed
    mid-write when the benchmark ends): an incomplete last line is dropped, a bad line elsewhere
    is an error."""
    parse_sampler_header(text)
    lines = text.split("\n")[1:]
    complete = text.endswith("\n")
    samples = []
    for i, line in enumerate(lines):
        line = line.rstrip("\r")
        if not line or line == COLUMNS or line.startswith("#"):
            continue
        last = i == len(lines) - 1
        parts = line.split(",", 3)
        try:
            if len(parts) != 4 or not parts[3]:
                raise ValueError("expected 4 fields")
            samples.append(BatterySample(int(parts[0]) / 1e9, int(parts[1]), int(parts[2]), parts[3].strip()))
        except ValueError as e:
            if last and not complete:
                break  # truncated by the kill
            raise EdgeVLMError(f"power sampler line {i + 2} is malformed ({e}): {line[:80]!r}",
                               "rerun the benchmark; if it repeats, report the sampler's output") from None
    return samples


@dataclass(frozen=True)
class Units:
    """How raw sysfs integers become amperes and volts, and why that conversion was chosen."""

    current: str  # "uA" or "mA"
    voltage: str  # "uV" or "mV"
    reason: str

    @property
    def amps_per_raw(self) -> float:
        return 1e-6 if self.current == "uA" else 1e-3

    @property
    def volts_per_raw(self) -> float:
        return 1e-6 if self.voltage == "uV" else 1e-3


def _declared_units(declared: str) -> Units:
    m = re.fullmatch(r"\s*(uA|mA)\s*[,/]\s*(uV|mV)\s*", declared)
    if not m:
        raise EdgeVLMError(f"battery units {declared!r} not understood",
                           "give them as CURRENT/VOLTAGE, e.g. uA/uV (the kernel ABI) or mA/mV")
    return Units(m.group(1), m.group(2), f"declared by the user ({declared.strip()})")


def detect_units(samples: list[BatterySample], declared: str | None = None) -> Units:
    """The Linux ABI says µA and µV; some vendors report mA / mV. A phone battery sits between
    2.5 and 10 V (1 or 2 cells), which separates µV (2.5e6..1e7) from mV (2500..10000) cleanly.
    Current (1 mA..10 A) overlaps between 1000 and 10000 raw; there it follows the voltage."""
    if declared:
        return _declared_units(declared)
    if not samples:
        raise EdgeVLMError("no battery samples to detect units from", "check that the power sampler ran")
    v = statistics.median(abs(s.voltage_raw) for s in samples)
    if 2.5e6 <= v <= 1e7:
        volt, vwhy = "uV", f"median voltage_now {v:.0f} is a battery voltage in µV"
    elif 2500 <= v <= 10000:
        volt, vwhy = "mV", f"median voltage_now {v:.0f} is a battery voltage in mV, not µV as the ABI says"
    else:
        raise EdgeVLMError(f"median voltage_now {v:.0f} is no battery voltage in µV or mV",
                           "check the power_supply root the sampler read, or pass --battery-units uA/uV")
    moving = [abs(s.current_raw) for s in samples if s.current_raw]
    if not moving:
        raise EdgeVLMError("current_now is 0 in every sample: this fuel gauge does not report current",
                           "this device cannot measure power from its battery; use an external power monitor")
    i = statistics.median(moving)
    if i > 1e4:
        cur, cwhy = "uA", f"median |current_now| {i:.0f} would exceed 10 A in mA, so µA"
    elif i < 1000:
        cur, cwhy = "mA", f"median |current_now| {i:.0f} would be under 1 mA in µA, so mA"
    else:
        cur = "uA" if volt == "uV" else "mA"
        cwhy = f"median |current_now| {i:.0f} fits µA and mA; {cur} follows the voltage's unit"
    return Units(cur, volt, f"{vwhy}; {cwhy}")


def sign_convention(samples: list[BatterySample]) -> str:
    """'positive_is_discharge' or 'negative_is_discharge', from the samples whose status says
    Discharging; 'unknown' when none does."""
    signs = [1 if s.current_raw > 0 else -1 for s in samples if s.status == "Discharging" and s.current_raw]
    if not signs:
        return "unknown"
    return "positive_is_discharge" if sum(signs) >= 0 else "negative_is_discharge"


def _window(samples, windows):
    if not windows:
        return list(samples)
    return [s for s in samples if any(a <= s.t_s <= b for a, b in windows)]


def charging_refusal(n: int, statuses: set[str]) -> EdgeVLMError:
    return EdgeVLMError(
        f"the battery was {'/'.join(sorted(statuses))} in {n} power sample(s) of the measured window: "
        "a charger feeds the phone, so the battery current is not what the phone draws",
        "unplug the phone (adb over Wi-Fi: `adb tcpip 5555`, `adb connect IP`); or cut the charger's power "
        "with a power-blocking USB hub or a data-only cable; or `adb shell dumpsys battery suspend_input` "
        "where supported (`adb shell dumpsys battery unplug` only makes Android behave as on battery, "
        "the charger still charges on most phones; run `adb shell dumpsys battery reset` after either); "
        "or pass --allow-charging to record the numbers anyway (they are then not the phone's draw)")


@dataclass
class BatteryPower:
    """Watts over time from battery samples, with the unit and sign decisions that made them."""

    watts: list[tuple[float, float]]
    units: Units
    sign: str
    charging_samples: int = 0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_samples(cls, samples: list[BatterySample], windows: list[tuple[float, float]] | None = None,
                     units: str | None = None, allow_charging: bool = False) -> "BatteryPower":
        measured = _window(samples, windows)
        charging = [s for s in measured if s.status in CHARGING]
        if charging and not allow_charging:
            raise charging_refusal(len(charging), {s.status for s in charging})
        u = detect_units(samples, units)
        sign = sign_convention(samples)
        notes = []
        if charging:
            notes.append(f"--allow-charging: {len(charging)} sample(s) taken while {charging[0].status}; "
                         "the battery current is charger minus load, so these watts are not the phone's draw")
        if sign == "unknown":
            notes.append("no sample says Discharging: the sign convention is unknown, power is |I|·V")
        not_charging = sum(s.status == "Not charging" for s in measured)
        if not_charging:
            notes.append(f"{not_charging} sample(s) say 'Not charging' (a charger is connected but idle): "
                         "the battery current is the phone's draw only if the charger input is suspended")
        k = {"positive_is_discharge": 1, "negative_is_discharge": -1}.get(sign)
        watts = []
        for s in samples:
            amps = s.current_raw * u.amps_per_raw
            # Signed by the convention: a sample flowing the charging way subtracts (the charger
            # topping up briefly), rather than counting as consumption as |I| would.
            amps = abs(amps) if k is None else amps * k
            watts.append((s.t_s, amps * s.voltage_raw * u.volts_per_raw))
        return cls(watts, u, sign, len(charging), notes)

    def describe(self) -> dict:
        return {"units": {"current": self.units.current, "voltage": self.units.voltage, "reason": self.units.reason},
                "sign_convention": self.sign, "charging_samples": self.charging_samples,
                "meaningful": self.charging_samples == 0, "notes": list(self.notes)}


@dataclass(frozen=True)
class Phase:
    name: str
    start_s: float
    end_s: float
    count: int = 0
    unit: str = ""


def _at(ws, t):
    """Power at time t, linearly interpolated between the samples around it (ws sorted)."""
    for (t0, w0), (t1, w1) in zip(ws, ws[1:]):
        if t0 <= t <= t1:
            return w0 if t1 == t0 else w0 + (w1 - w0) * (t - t0) / (t1 - t0)
    raise ValueError(f"t={t} outside the samples")


def integrate(ws: list[tuple[float, float]], start: float, end: float) -> float:
    """Joules between start and end: trapezoids over the samples clipped to the window, the
    window's edges interpolated between the samples around them."""
    pts = [(start, _at(ws, start))] + [p for p in ws if start < p[0] < end] + [(end, _at(ws, end))]
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(pts, pts[1:]))


def sample_period(ws: list[tuple[float, float]]) -> float:
    gaps = [b[0] - a[0] for a, b in zip(ws, ws[1:]) if b[0] > a[0]]
    if not gaps:
        raise EdgeVLMError("fewer than two power samples", "let the power sampler run longer")
    return statistics.median(gaps)


def _too_short(ws, start, end) -> str | None:
    period = sample_period(ws)
    if start < ws[0][0] or end > ws[-1][0]:
        return (f"phase [{start:.3f}, {end:.3f}] s reaches outside the power samples "
                f"[{ws[0][0]:.3f}, {ws[-1][0]:.3f}] s")
    inside = sum(start <= t <= end for t, _ in ws)
    if inside < 2 or end - start < 2 * period:
        return (f"phase lasted {(end - start) * 1e3:.1f} ms, shorter than two sample periods at "
                f"{1 / period:.0f} Hz")
    return None


def idle_watts(watt_samples: list[tuple[float, float]], start_s: float | None = None,
               end_s: float | None = None) -> float:
    """Mean power over the idle window measured right before the benchmark (the whole stream
    when no window is given), time-weighted like the phases so the subtraction is consistent."""
    ws = sorted(watt_samples)
    start = ws[0][0] if start_s is None else start_s
    end = ws[-1][0] if end_s is None else end_s
    if (why := _too_short(ws, start, end)) is not None:
        raise EdgeVLMError(f"idle power cannot be measured: {why}", "lengthen the idle window (--idle-s)")
    return integrate(ws, start, end) / (end - start)


def attribute(watt_samples: list[tuple[float, float]], phases: list[Phase], idle_w: float) -> dict:
    """Per phase: mean and net (minus idle) watts, energy, energy per counted unit."""
    ws = sorted(watt_samples)
    out = {}
    for p in phases:
        duration = p.end_s - p.start_s
        why = _too_short(ws, p.start_s, p.end_s)
        if why is not None:
            out[p.name] = {"duration_s": duration, "samples": sum(p.start_s <= t <= p.end_s for t, _ in ws),
                           "power": unavailable(why)}
            continue
        energy = integrate(ws, p.start_s, p.end_s)
        net = energy - idle_w * duration
        out[p.name] = {
            "duration_s": duration,
            "samples": sum(p.start_s <= t <= p.end_s for t, _ in ws),
            "mean_w": energy / duration,
            "net_w": energy / duration - idle_w,
            "energy_j": energy,
            "net_energy_j": net,
            "energy_per_unit_j": (net / p.count if p.count > 0
                                  else unavailable(f"phase {p.name!r} counts no units")),
            "unit": p.unit,
        }
    return out
