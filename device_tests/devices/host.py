"""The machine edgevlm runs on, and the same machine emulating an aarch64 phone CPU (qemu-user).

Both run the device-side steps of an adb phone (bundle folder, native benchmark, power sampler)
locally, so `--device host` and `--device qemu-aarch64` exercise the whole path a phone takes up
to the adb boundary. qemu timings are marked emulated: they say nothing about a phone's speed.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from edgevlm.device_tests.devices.base import (Background, Bundle, CommandResult, LocalBackground, ShellDevice,
                                               unavailable)

POWER_SUPPLY = Path("/sys/class/power_supply")
THERMAL = Path("/sys/class/thermal")
CPU = Path("/sys/devices/system/cpu")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_model() -> str:
    for line in (_read(Path("/proc/cpuinfo")) or "").splitlines():
        if line.startswith(("model name", "Hardware")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_facts() -> dict:
    """Cores, and per-core governor / max frequency where the kernel shows cpufreq (containers and
    VMs often do not: then the reason)."""
    facts = {"architecture": platform.machine(), "cores": os.cpu_count() or 1}
    governors = {}
    for core in sorted(CPU.glob("cpu[0-9]*"), key=lambda p: int(p.name[3:])):
        governor = _read(core / "cpufreq" / "scaling_governor")
        if governor is not None:
            governors[core.name] = {"governor": governor,
                                    "max_khz": int(_read(core / "cpufreq" / "cpuinfo_max_freq") or 0) or None}
    facts["cpufreq"] = governors or unavailable(f"no cpufreq in {CPU} (a VM or container hides it)")
    return facts


def thermal_zones(root: Path = THERMAL) -> dict:
    """type -> degrees C of every readable thermal zone."""
    zones = {}
    for zone in sorted(root.glob("thermal_zone*")):
        kind, temp = _read(zone / "type"), _read(zone / "temp")
        if kind and temp and temp.lstrip("-").isdigit():
            zones[f"{zone.name}:{kind}"] = int(temp) / 1000
    return zones


def host_thermal() -> dict:
    zones = thermal_zones()
    if not zones:
        return unavailable(f"no readable thermal zone in {THERMAL} on this host")
    sensor = max(zones, key=zones.get)
    return {"celsius": zones[sensor], "sensor": sensor, "zones": zones}


def battery_folder(root: Path = POWER_SUPPLY) -> Path | None:
    """The power_supply folder of type Battery (its current_now/voltage_now feed the sampler)."""
    for folder in sorted(root.glob("*")):
        if _read(folder / "type") == "Battery" and (folder / "current_now").exists():
            return folder
    return None


class HostDevice(ShellDevice):
    kind = "host"

    def __init__(self, spec: str = "host", home: Path | None = None):
        super().__init__(spec)
        from edgevlm.defaults import home as edgevlm_home

        self.home = Path(home or edgevlm_home()) / "device-bench"

    def missing(self) -> str | None:
        return None

    def runtime_target(self) -> str:
        return "host"

    def facts(self) -> dict:
        system = platform.system()
        return {"kind": self.kind, "spec": self.spec, "emulated": self.emulated, "model": cpu_model(),
                "soc": unavailable(f"a {platform.machine()} host CPU, not a phone SoC"),
                "os": f"{system} {platform.release()}", "cpu": cpu_facts()}

    def thermal(self) -> dict:
        return host_thermal()

    def battery_root(self) -> str | dict:
        folder = battery_folder()
        if folder is None:
            return unavailable(f"no battery in {POWER_SUPPLY} on this host: power is measured on phones "
                               "(--device adb) and Apple silicon Macs (--device macos)")
        return str(folder)

    def push(self, bundle: Bundle) -> str:
        """The bundle folder under $EDGEVLM_HOME/device-bench/<digest>: files hard-linked where the
        file system allows (an export's .pte is gigabytes), else copied."""
        folder = self.home / bundle.digest
        if (folder / ".complete").is_file():
            return str(folder)
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        for rel, source in bundle.files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
        (staging / ".complete").write_text(bundle.digest + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
        return str(folder)

    def shell(self, argv: list[str], cwd: str | None = None, timeout: float | None = None) -> CommandResult:
        try:
            proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError as exc:
            return CommandResult(argv, 127, "", str(exc))
        return CommandResult(argv, proc.returncode, proc.stdout, proc.stderr)

    def start(self, argv: list[str], cwd: str | None = None) -> Background:
        return LocalBackground(argv, cwd)

    def pull(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)

    def runner_argv(self, folder: str, tool: str) -> list[str]:
        return [f"{folder}/bin/{tool}"]


class QemuDevice(HostDevice):
    """The aarch64 bundle a phone gets, run here under qemu-user: same files, same argv after the
    emulator; timings are emulated."""

    kind = "qemu-aarch64"
    emulated = True

    def missing(self) -> str | None:
        for tool, package in (("qemu-aarch64", "qemu-user"), ("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")):
            if shutil.which(tool) is None:
                return (f"--device qemu-aarch64 needs `{tool}`: apt-get install {package} "
                        "(or run scripts/system-deps.sh)")
        return None

    def runtime_target(self) -> str:
        return "aarch64-linux"

    def facts(self) -> dict:
        return super().facts() | {
            "model": f"qemu-aarch64 user-mode emulation on {cpu_model()}",
            "soc": unavailable("emulated: qemu-user runs aarch64 code on the host's CPU"),
            "cpu": cpu_facts() | {"architecture": "aarch64 (emulated)"}}

    def runner_argv(self, folder: str, tool: str) -> list[str]:
        from edgevlm.runtime.bundle import command

        return command(Path(folder) / "bin", tool, "qemu-aarch64")
