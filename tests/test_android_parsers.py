"""Android output parsers (device_tests/android.py) on text in the formats phones print.

The texts follow the real formats: getprop's `[key]: [value]` (values with newlines continue on
the next lines), AOSP BatteryService.dumpInternal's `dumpsys battery` (plus a vendor's extra
lines), the thermal and cpufreq sysfs values of a Snapdragon 8 Gen 3 (SM8650) phone as the
one-shot scripts print them. The scripts themselves are run here with the host's sh.
"""

from __future__ import annotations

import subprocess

import pytest

from edgevlm.device_tests.android import (CPU_SCRIPT, POWER_SUPPLY_SCRIPT, THERMAL_SCRIPT, device_facts,
                                          parse_cpu_clusters, parse_cpuinfo_parts, parse_dumpsys_battery,
                                          parse_getprop, parse_thermal, pick_battery_supply, pick_temperature)
from edgevlm.device_tests.devices.base import is_unavailable
from edgevlm.errors import EdgeVLMError

GETPROP = """\
[dalvik.vm.heapsize]: [512m]
[persist.sys.boot.reason.history]: [reboot,adb,1733550000
reboot,shell,1733540000
reboot,userrequested,1733530000]
[ro.board.platform]: [pineapple]
[ro.build.fingerprint]: [samsung/e3qxxx/e3q:14/UP1A.231005.007/S928BXXU1AXB7:user/release-keys]
[ro.build.version.release]: [14]
[ro.build.version.sdk]: [34]
[ro.product.manufacturer]: [samsung]
[ro.product.model]: [SM-S928B]
[ro.soc.manufacturer]: [QTI]
[ro.soc.model]: [SM8650]
[ro.vendor.empty]: []
"""

GETPROP_OLD = """\
[ro.build.version.sdk]: [30]
[ro.product.model]: [Pixel 4a]
"""

# AOSP BatteryService.dumpInternal (Android 14: "Dock powered"), then vendor lines
DUMPSYS_BATTERY = """\
Current Battery Service state:
  AC powered: false
  USB powered: true
  Wireless powered: false
  Dock powered: false
  Max charging current: 500000
  Max charging voltage: 5000000
  Charge counter: 3873000
  status: 2
  health: 2
  present: true
  level: 84
  scale: 100
  voltage: 4063
  temperature: 326
  technology: Li-ion
  batterySWSelfDischarging: false
  current now: 321
"""

DUMPSYS_UNPLUGGED = """\
Current Battery Service state:
  (UPDATES STOPPED -- use 'reset' to restart)
  AC powered: false
  USB powered: false
  Wireless powered: false
  Dock powered: false
  Max charging current: 0
  Max charging voltage: 0
  Charge counter: 3650000
  status: 3
  health: 2
  present: true
  level: 77
  scale: 100
  voltage: 3942
  temperature: 298
  technology: Li-ion
"""

THERMAL = "aoss-0\t34600\ncpu-0-0-0\t45200\ncpu-2-0-0\t51800\ncpu-3-1-0\t49100\ncpuss-0\t47000\n" \
          "gpuss-0\t40000\nnsphvx-0\t38800\nnsphmx-0\t39100\nsys-therm-0\t33000\nskin-msm-therm\t35100\n" \
          "battery\t\nqcom,secure-zone\t-273000\n"

# SM8650: cpu0-1 Cortex-A520 2.27 GHz, cpu2-4 Cortex-A720 3.15 GHz, cpu5-6 Cortex-A720 2.96 GHz,
# cpu7 Cortex-X4 3.30 GHz; Qualcomm's GKI kernels use the walt governor
CPUS = "".join(f"cpu{c}\twalt\t{khz}\t{rel}\n" for c, khz, rel in [
    (0, 2265600, "0 1"), (1, 2265600, "0 1"), (2, 3148800, "2 3 4"), (3, 3148800, "2 3 4"),
    (4, 3148800, "2 3 4"), (5, 2956800, "5 6"), (6, 2956800, "5 6"), (7, 3302400, "7")])
CPUINFO = "".join(f"processor\t: {c}\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"
                  f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\n"
                  f"CPU revision\t: 1\n\n"
                  for c, part in enumerate(["0xd80"] * 2 + ["0xd81"] * 5 + ["0xd82"]))


def test_getprop_with_multiline_value():
    props = parse_getprop(GETPROP)
    assert props["persist.sys.boot.reason.history"] == \
        "reboot,adb,1733550000\nreboot,shell,1733540000\nreboot,userrequested,1733530000"
    assert props["ro.board.platform"] == "pineapple" and props["ro.vendor.empty"] == ""
    assert device_facts(props) == {
        "model": "SM-S928B", "manufacturer": "samsung", "soc_model": "SM8650", "soc_manufacturer": "QTI",
        "board_platform": "pineapple",
        "os_build": "samsung/e3qxxx/e3q:14/UP1A.231005.007/S928BXXU1AXB7:user/release-keys",
        "android_release": "14", "sdk": 34}


def test_getprop_facts_missing_on_old_android():
    facts = device_facts(parse_getprop(GETPROP_OLD))
    assert facts["model"] == "Pixel 4a"
    assert facts["soc_model"] == {"unavailable": "getprop has no ro.soc.model (it exists from Android 12, "
                                                 "API 31; this phone is API 30)"}
    assert is_unavailable(facts["os_build"])


def test_dumpsys_battery_charging():
    b = parse_dumpsys_battery(DUMPSYS_BATTERY)
    assert b["usb_powered"] and b["plugged"] and not b["ac_powered"]
    assert (b["status"], b["status_name"], b["health_name"]) == (2, "charging", "good")
    assert b["level_percent"] == 84.0 and b["voltage_mv"] == 4063 and b["temperature_c"] == 32.6
    assert b["charge_counter_uah"] == 3873000 and b["technology"] == "Li-ion"
    assert not b["updates_stopped"] and b["raw"]["current now"] == "321"


def test_dumpsys_battery_after_unplug_is_flagged_frozen():
    b = parse_dumpsys_battery(DUMPSYS_UNPLUGGED)
    assert b["updates_stopped"] and not b["plugged"] and b["status_name"] == "discharging"
    with pytest.raises(EdgeVLMError, match="no battery state"):
        parse_dumpsys_battery("Can't find service: battery\n")


def test_thermal_zones_and_cooldown_temperature():
    zones = parse_thermal(THERMAL)
    assert [z["type"] for z in zones if z["kind"] == "cpu"] == ["cpu-0-0-0", "cpu-2-0-0", "cpu-3-1-0", "cpuss-0"]
    assert [z["type"] for z in zones if z["kind"] == "skin"] == ["sys-therm-0", "skin-msm-therm"]
    assert all(z["type"] not in ("battery", "qcom,secure-zone") for z in zones)  # unreadable, disabled
    assert pick_temperature(zones) == (51.8, "cpu zone cpu-2-0-0 (hottest of 4)")
    skin_only = [z for z in zones if z["kind"] != "cpu"]
    assert pick_temperature(skin_only) == (35.1, "skin zone skin-msm-therm (hottest of 2)")
    tensor = parse_thermal("BIG\t61000\nMID\t55000\nLITTLE\t48000\nVIRTUAL-SKIN\t36000\n")
    assert pick_temperature(tensor)[1] == "cpu zone BIG (hottest of 3)"
    assert "none of the 1" in pick_temperature(parse_thermal("gpuss-0\t40000\n"))["unavailable"]


def test_cpu_clusters_snapdragon_8_gen_3():
    assert parse_cpuinfo_parts(CPUINFO)[7] == "Cortex-X4"
    clusters = parse_cpu_clusters(CPUS, CPUINFO)
    assert [(c["core"], c["count"], c["max_freq_ghz"], c["cpus"]) for c in clusters] == [
        ("Cortex-A520", 2, 2.27, [0, 1]), ("Cortex-A720", 2, 2.96, [5, 6]),
        ("Cortex-A720", 3, 3.15, [2, 3, 4]), ("Cortex-X4", 1, 3.3, [7])]
    assert {c["governor"] for c in clusters} == {"walt"}
    # without /proc/cpuinfo the cores' names are unavailable, the grouping stays
    assert all(is_unavailable(c["core"]) for c in parse_cpu_clusters(CPUS))
    # an offline core (cpu6 gone from the listing) still belongs to its policy
    partial = parse_cpu_clusters(CPUS.replace("cpu6\twalt\t2956800\t5 6\n", ""))
    assert [c for c in partial if c["cpus"] == [5, 6]][0]["online_cpus"] == [5]


def test_pick_battery_power_supply():
    qcom = "battery\tBattery\nbms\tBMS\nusb\tUSB\nwireless\tWireless\n"
    assert pick_battery_supply(qcom) == "/sys/class/power_supply/battery"
    pixel = "battery\tBattery\ndc\tMains\ngcpm\tUnknown\nmaxfg\tBattery\nusb\tUSB\n"
    assert pick_battery_supply(pixel) == "/sys/class/power_supply/battery"
    assert pick_battery_supply("max1720x_battery\tBattery\nac\tMains\n") == \
        "/sys/class/power_supply/max1720x_battery"
    with pytest.raises(EdgeVLMError, match="type Battery"):
        pick_battery_supply("usb\tUSB\n")


@pytest.mark.parametrize("script", [THERMAL_SCRIPT, CPU_SCRIPT, POWER_SUPPLY_SCRIPT])
def test_scripts_run_in_a_posix_shell(script):
    """The scripts parse and run in a POSIX sh (the phone's is mksh); on a machine without such
    sysfs folders they print nothing rather than a glob pattern."""
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "*" not in r.stdout
