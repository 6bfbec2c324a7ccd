"""Parsers of what an Android phone prints: getprop, dumpsys battery, thermal zones, cpufreq
policies, power_supply folders. Pure text in, facts out, so each is tested on real output
formats without a phone; devices/adb.py runs the commands and the one-shot scripts below.
"""

from __future__ import annotations

import re

from edgevlm.device_tests.devices.base import unavailable
from edgevlm.errors import EdgeVLMError

# One-shot scripts for the phone's /system/bin/sh (mksh; printf is toybox's). Each prints one
# tab-separated line per sysfs folder so a single `adb shell` round trip reads them all.
THERMAL_SCRIPT = ('for z in /sys/class/thermal/thermal_zone*; do '
                  't=$(cat "$z/type" 2>/dev/null) || continue; v=$(cat "$z/temp" 2>/dev/null); '
                  'printf "%s\\t%s\\n" "$t" "$v"; done')
CPU_SCRIPT = ('for c in /sys/devices/system/cpu/cpu[0-9]*; do f="$c/cpufreq"; [ -d "$f" ] || continue; '
              'printf "%s\\t%s\\t%s\\t%s\\n" "${c##*/}" "$(cat "$f/scaling_governor" 2>/dev/null)" '
              '"$(cat "$f/cpuinfo_max_freq" 2>/dev/null)" "$(cat "$f/related_cpus" 2>/dev/null)"; done')
POWER_SUPPLY_SCRIPT = ('for d in /sys/class/power_supply/*; do [ -e "$d" ] || continue; '
                       'printf "%s\\t%s\\n" "${d##*/}" "$(cat "$d/type" 2>/dev/null)"; done')


# ---- getprop ------------------------------------------------------------------------------------

def parse_getprop(text: str) -> dict[str, str]:
    """`getprop` prints `[key]: [value]`; a value holding newlines continues on the next lines
    until one ends with `]`."""
    props: dict[str, str] = {}
    key, buf = None, []
    for line in text.replace("\r\n", "\n").split("\n"):
        if key is None:
            m = re.match(r"^\[([^\]]+)\]: \[(.*)$", line)
            if not m:
                continue
            key, rest = m.group(1), m.group(2)
            if rest.endswith("]"):
                props[key] = rest[:-1]
                key = None
            else:
                buf = [rest]
        else:
            if line.endswith("]"):
                props[key] = "\n".join(buf + [line[:-1]])
                key, buf = None, []
            else:
                buf.append(line)
    return props


FACT_PROPS = {
    "model": "ro.product.model", "manufacturer": "ro.product.manufacturer",
    "soc_model": "ro.soc.model", "soc_manufacturer": "ro.soc.manufacturer",
    "board_platform": "ro.board.platform", "os_build": "ro.build.fingerprint",
    "android_release": "ro.build.version.release", "sdk": "ro.build.version.sdk",
}


def device_facts(props: dict[str, str]) -> dict:
    """The schema's device fields from getprop; a property the phone lacks is unavailable with
    the reason (ro.soc.* exist from Android 12 on)."""
    out = {}
    for name, key in FACT_PROPS.items():
        value = props.get(key, "").strip()
        if not value:
            sdk = props.get("ro.build.version.sdk", "")
            why = f"getprop has no {key}"
            if key.startswith("ro.soc.") and sdk.isdigit() and int(sdk) < 31:
                why += f" (it exists from Android 12, API 31; this phone is API {sdk})"
            out[name] = unavailable(why)
        else:
            out[name] = int(value) if name == "sdk" and value.isdigit() else value
    return out


# ---- dumpsys battery ----------------------------------------------------------------------------

# android.os.BatteryManager constants
BATTERY_STATUS = {1: "unknown", 2: "charging", 3: "discharging", 4: "not_charging", 5: "full"}
BATTERY_HEALTH = {1: "unknown", 2: "good", 3: "overheat", 4: "dead", 5: "over_voltage",
                  6: "unspecified_failure", 7: "cold"}


def parse_dumpsys_battery(text: str) -> dict:
    """`dumpsys battery` (BatteryService.dumpInternal): `  key: value` lines under
    "Current Battery Service state:"; vendors append their own lines, which are kept raw."""
    raw: dict[str, str] = {}
    stopped = False
    for line in text.splitlines():
        if "UPDATES STOPPED" in line:
            stopped = True  # `dumpsys battery unplug`/`set` froze the reported state
        m = re.match(r"^\s+([A-Za-z][\w ]*?): (.*)$", line)
        if m:
            raw.setdefault(m.group(1), m.group(2).strip())
    if not raw:
        raise EdgeVLMError("dumpsys battery printed no battery state",
                           "check `adb shell dumpsys battery` on the phone")

    def num(key):
        v = raw.get(key)
        return int(v) if v is not None and re.fullmatch(r"-?\d+", v) else None

    status, health = num("status"), num("health")
    level, scale, temp = num("level"), num("scale"), num("temperature")
    powered = {k: raw.get(f"{k} powered") == "true" for k in ("AC", "USB", "Wireless", "Dock")}
    return {
        "ac_powered": powered["AC"], "usb_powered": powered["USB"],
        "wireless_powered": powered["Wireless"], "dock_powered": powered["Dock"],
        "plugged": any(powered.values()),
        "status": status, "status_name": BATTERY_STATUS.get(status, "unknown"),
        "health": health, "health_name": BATTERY_HEALTH.get(health, "unknown"),
        "present": raw.get("present") == "true",
        "level": level, "scale": scale,
        "level_percent": 100.0 * level / scale if level is not None and scale else None,
        "voltage_mv": num("voltage"),
        "temperature_c": temp / 10 if temp is not None else None,  # tenths of a degree
        "charge_counter_uah": num("Charge counter"),
        "technology": raw.get("technology"),
        "updates_stopped": stopped,
        "raw": raw,
    }


# ---- thermal zones ------------------------------------------------------------------------------

CPU_ZONE = re.compile(r"^(cpu|big$|mid$|little$|mtktscpu)", re.I)
SKIN_ZONE = re.compile(r"(skin|sys-therm|quiet-therm|xo-therm)", re.I)


def zone_kind(zone_type: str) -> str | None:
    """'cpu', 'skin' or None from a thermal zone's type (Qualcomm cpu-0-0-0 / cpuss-0,
    Tensor and Exynos BIG/MID/LITTLE, MediaTek mtktscpu; skin-therm, sys-therm-*, VIRTUAL-SKIN)."""
    if CPU_ZONE.match(zone_type):
        return "cpu"
    if SKIN_ZONE.search(zone_type):
        return "skin"
    return None


def parse_thermal(text: str) -> list[dict]:
    """THERMAL_SCRIPT's `type<TAB>temp` lines; temp is milli-°C. Unreadable zones (empty temp)
    and values outside -40..150 °C (disabled sensors report e.g. -273000) are dropped."""
    zones = []
    for line in text.splitlines():
        parts = line.rstrip("\r").split("\t")
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1].strip()):
            continue
        c = int(parts[1]) / 1000
        if -40 <= c <= 150:
            zones.append({"type": parts[0], "temp_c": c, "kind": zone_kind(parts[0])})
    return zones


def pick_temperature(zones: list[dict]) -> tuple[float, str] | dict:
    """The hottest CPU zone (what throttles first), else the hottest skin zone; says which."""
    for kind in ("cpu", "skin"):
        found = [z for z in zones if z["kind"] == kind]
        if found:
            z = max(found, key=lambda z: z["temp_c"])
            return z["temp_c"], f"{kind} zone {z['type']} (hottest of {len(found)})"
    return unavailable(f"none of the {len(zones)} readable thermal zones is a CPU or skin sensor")


# ---- CPU clusters -------------------------------------------------------------------------------

# /proc/cpuinfo "CPU part" for Arm cores (implementer 0x41) found in phones
ARM_PARTS = {0xd05: "Cortex-A55", 0xd0d: "Cortex-A77", 0xd41: "Cortex-A78", 0xd44: "Cortex-X1",
             0xd46: "Cortex-A510", 0xd47: "Cortex-A710", 0xd48: "Cortex-X2", 0xd4d: "Cortex-A715",
             0xd4e: "Cortex-X3", 0xd80: "Cortex-A520", 0xd81: "Cortex-A720", 0xd82: "Cortex-X4",
             0xd85: "Cortex-X925", 0xd87: "Cortex-A725"}


def parse_cpuinfo_parts(text: str) -> dict[int, str]:
    """cpu number -> core name (or the raw part number) from /proc/cpuinfo."""
    parts, cpu = {}, None
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "processor" and value.isdigit():
            cpu = int(value)
        elif key == "CPU part" and cpu is not None:
            part = int(value, 16)
            parts[cpu] = ARM_PARTS.get(part, f"part {value}")
    return parts


def parse_cpu_clusters(text: str, cpuinfo: str | None = None) -> list[dict]:
    """CPU_SCRIPT's `cpuN<TAB>governor<TAB>max_khz<TAB>related_cpus` lines grouped by cpufreq
    policy (related_cpus), slowest cluster first. Cores of one policy share a clock."""
    names = parse_cpuinfo_parts(cpuinfo) if cpuinfo else {}
    clusters: dict[tuple[int, ...], dict] = {}
    for line in text.splitlines():
        parts = line.rstrip("\r").split("\t")
        if len(parts) != 4 or not parts[0].startswith("cpu"):
            continue
        cpu = int(parts[0][3:])
        related = tuple(int(c) for c in parts[3].split()) or (cpu,)
        c = clusters.setdefault(related, {"cpus": list(related), "online_cpus": [], "governor": parts[1] or None,
                                          "max_freq_khz": int(parts[2]) if parts[2].isdigit() else None})
        c["online_cpus"].append(cpu)
    out = []
    for c in clusters.values():
        khz = c["max_freq_khz"]
        cores = sorted({names[i] for i in c["cpus"] if i in names})
        out.append({**c, "count": len(c["cpus"]), "max_freq_ghz": round(khz / 1e6, 2) if khz else None,
                    "core": (cores[0] if len(cores) == 1 else "+".join(cores)) if cores
                    else unavailable("no /proc/cpuinfo CPU part for these cores")})
    return sorted(out, key=lambda c: (c["max_freq_khz"] or 0, c["cpus"]))


# ---- power supply -------------------------------------------------------------------------------

def pick_battery_supply(text: str) -> str:
    """The power_supply folder the sampler should read (POWER_SUPPLY_SCRIPT's `name<TAB>type`):
    the one of type Battery, preferring the one named `battery` when a fuel gauge adds a second
    (Qualcomm `bms` is type BMS; some phones also list the gauge chip as Battery)."""
    batteries = []
    for line in text.splitlines():
        name, _, kind = line.rstrip("\r").partition("\t")
        if kind.strip() == "Battery":
            batteries.append(name.strip())
    if not batteries:
        raise EdgeVLMError("no power_supply folder of type Battery on the phone",
                           "power cannot be read from this device's fuel gauge; run with --no-power")
    chosen = "battery" if "battery" in batteries else sorted(batteries)[0]
    return f"/sys/class/power_supply/{chosen}"
