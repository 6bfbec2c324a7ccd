"""An Android phone over adb (`--device adb` or `adb:SERIAL`).

Every device command travels as ONE string to `adb -s SERIAL shell`, built with shlex.quote
(POSIX quoting, which the phone's /system/bin/sh, mksh, reads the same way): adb joins its
arguments with spaces and the phone's shell splits them again, so unquoted arguments would be
split twice. Exit codes come back through adb's shell protocol (adb 1.0.35+, Android 7+).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from edgevlm.device_tests import android
from edgevlm.device_tests.devices.base import Background, Bundle, CommandResult, ShellDevice, unavailable
from edgevlm.errors import EdgeVLMError

REMOTE_ROOT = "/data/local/tmp/edgevlm"  # writable by the shell user, exec allowed (not /sdcard)
INSTALL_HINT = ("install Android SDK platform-tools (https://developer.android.com/tools/releases/platform-tools) "
                "and put adb on PATH, or `apt-get install adb`")


def parse_devices(text: str) -> list[dict]:
    """`adb devices -l`: `SERIAL<spaces>STATE key:value ...`; the state may hold spaces
    ("no permissions (...); see [...]")."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("List of devices") or line.startswith("*"):
            continue
        serial, _, rest = line.partition(" ")
        if not rest.strip():
            serial, _, rest = line.partition("\t")
        rest = rest.strip()
        if rest.startswith("no permissions"):
            state, tail = "no permissions", rest.split("]", 1)[-1] if "]" in rest else ""
        else:
            state, _, tail = rest.partition(" ")
        info = dict(kv.split(":", 1) for kv in tail.split() if ":" in kv)
        out.append({"serial": serial, "state": state, **info})
    return out


class AdbBackground(Background):
    """A command left running on the phone. Killing the local `adb shell` client does not end
    the remote process (no pty: the phone never sees a hangup), so the command is started as
    `echo $$ && exec CMD` and stop() kills that pid on the phone, then checks it is gone."""

    def __init__(self, device: "AdbDevice", argv: list[str], cwd: str | None = None):
        self.device, self.argv = device, argv
        self._err = tempfile.TemporaryFile(mode="w+")
        # `exec` keeps the shell's pid for the command: the pid echoed is the one to kill
        command = f"echo $$ && exec {device.command(argv)}"
        if cwd:
            command = f"cd {shlex.quote(cwd)} && {command}"
        self.command = command
        self.proc = subprocess.Popen(device.adb_argv("shell", command),
                                     stdout=subprocess.PIPE, stderr=self._err, text=True)
        self._lines: list[str] = []
        self._first = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._first.wait(30) or not self._lines or not self._lines[0].strip().isdigit():
            self.proc.kill()
            self.proc.wait()
            raise EdgeVLMError(f"could not start {argv[0]} on the phone: {self._stderr() or 'no pid came back'}",
                               "check `adb shell` works and the bundle is pushed")
        self.pid = int(self._lines.pop(0))

    def _read(self):
        for line in self.proc.stdout:
            self._lines.append(line)
            self._first.set()
        self._first.set()

    def _stderr(self) -> str:
        self._err.seek(0)
        return self._err.read().strip()

    def stop(self) -> CommandResult:
        pid = str(self.pid)
        self.device.shell(["kill", "-TERM", pid], timeout=30)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # still alive on the phone: KILL it there, then end the local client
            self.device.shell(["kill", "-KILL", pid], timeout=30)
            self.proc.kill()
            self.proc.wait()
        if self.device.shell(["kill", "-0", pid], timeout=30).returncode == 0:
            raise EdgeVLMError(f"{self.argv[0]} (pid {pid}) is still running on the phone after kill",
                               f"run `adb -s {self.device.serial} shell kill -KILL {pid}`")
        return CommandResult(self.argv, self.proc.returncode, "".join(self._lines), self._stderr())


class AdbDevice(ShellDevice):
    kind = "adb"

    def __init__(self, spec: str):
        super().__init__(spec)
        head, _, serial = spec.partition(":")
        if head != "adb":
            raise EdgeVLMError(f"{spec!r} is not an adb device spec", "use --device adb or --device adb:SERIAL")
        self.serial = serial or None
        self.stale_bundles: list[str] = []

    # ---- reaching the phone ----------------------------------------------------------------

    def adb_argv(self, *args: str) -> list[str]:
        return ["adb"] + (["-s", self.serial] if self.serial else []) + list(args)

    def _adb(self, *args: str, timeout: float | None = 120) -> CommandResult:
        argv = self.adb_argv(*args)
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return CommandResult(argv, 124, e.stdout or "", f"timed out after {timeout} s")
        return CommandResult(argv, r.returncode, r.stdout, r.stderr)

    def missing(self) -> str | None:
        if shutil.which("adb") is None:
            return f"adb is not on PATH: {INSTALL_HINT}"
        r = subprocess.run(["adb", "devices", "-l"], capture_output=True, text=True, timeout=60)
        if r.returncode:
            return f"`adb devices -l` failed (exit {r.returncode}): {r.stderr.strip()[-300:]}"
        devices = parse_devices(r.stdout)
        if self.serial:
            devices = [d for d in devices if d["serial"] == self.serial]
            if not devices:
                listed = ", ".join(d["serial"] for d in parse_devices(r.stdout)) or "none"
                return f"no device {self.serial} attached (`adb devices -l` lists: {listed})"
        if not devices:
            return ("no device attached: `adb devices -l` lists none; connect the phone by USB, "
                    "enable Developer options > USB debugging (or `adb connect IP:PORT` for Wi-Fi debugging)")
        if len(devices) > 1:
            listing = "; ".join(f"{d['serial']} ({d['state']}, {d.get('model', '?')})" for d in devices)
            return f"several devices attached: {listing}; pick one with --device adb:SERIAL"
        d = devices[0]
        if d["state"] == "unauthorized":
            return (f"device {d['serial']} is unauthorized: unlock the phone and accept the "
                    "'Allow USB debugging?' RSA key prompt, then rerun")
        if d["state"] == "offline":
            return f"device {d['serial']} is offline: reconnect the cable or run `adb reconnect offline`"
        if d["state"] == "no permissions":
            return (f"device {d['serial']}: no permissions to open it over USB; add a udev rule for the "
                    "phone's vendor id (or run `adb kill-server` and start adb with access to the USB device)")
        if d["state"] != "device":
            return f"device {d['serial']} is in state {d['state']!r}, not 'device': boot it into Android"
        self.serial = d["serial"]
        return None

    # ---- ShellDevice -----------------------------------------------------------------------

    def command(self, argv: list[str], cwd: str | None = None) -> str:
        """The one string `adb shell` carries for argv (each element stays one argument)."""
        cmd = " ".join(shlex.quote(a) for a in argv)
        return f"cd {shlex.quote(cwd)} && {cmd}" if cwd else cmd

    def shell(self, argv: list[str], cwd: str | None = None, timeout: float | None = None) -> CommandResult:
        r = self._adb("shell", self.command(argv, cwd), timeout=timeout)
        return CommandResult(argv, r.returncode, r.stdout, r.stderr)

    def start(self, argv: list[str], cwd: str | None = None) -> Background:
        return AdbBackground(self, argv, cwd)

    def pull(self, remote: str, local: Path) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        self._adb("pull", remote, str(local), timeout=600).check(f"adb pull {remote}")

    def push_file(self, local: Path, remote: str, timeout: float = 1800) -> None:
        """Copy one file to the phone (its folder must exist: `mkdir -p` it first)."""
        self._adb("push", str(local), remote, timeout=timeout).check(f"adb push {Path(local).name} to {remote}")

    def push(self, bundle: Bundle) -> str:
        """The bundle's folder on the phone, named by its digest; sent only when its .complete
        marker is absent (written last, so an interrupted push is redone)."""
        folder = f"{REMOTE_ROOT}/{bundle.digest}"
        listing = self.shell(["ls", REMOTE_ROOT], timeout=30)
        present = listing.stdout.split() if listing.returncode == 0 else []
        # kept, not deleted: a user may be comparing bundles; the orchestrator reports them
        self.stale_bundles = [f"{REMOTE_ROOT}/{name}" for name in present if name != bundle.digest]
        done = self.shell(["test", "-f", f"{folder}/.complete"], timeout=30)
        if done.returncode == 0:
            return folder
        dirs = sorted({str(Path(folder, rel).parent) for rel in bundle.files} | {folder})
        self.shell(["mkdir", "-p", *dirs], timeout=60).check("mkdir on the phone")
        for rel in sorted(bundle.files):
            self._adb("push", str(bundle.files[rel]), f"{folder}/{rel}", timeout=1800).check(f"adb push {rel}")
        executables = [f"{folder}/{rel}" for rel in sorted(bundle.files) if rel.startswith("bin/")]
        if executables:
            self.shell(["chmod", "755", *executables], timeout=60).check("chmod on the phone")
        self.shell(["touch", f"{folder}/.complete"], timeout=30).check("writing the .complete marker")
        return folder

    # ---- facts -----------------------------------------------------------------------------

    def _script(self, script: str, what: str) -> str | dict:
        r = self.shell(["sh", "-c", script], timeout=60)
        if r.returncode or not r.stdout.strip():
            return unavailable(f"{what}: {(r.stderr or 'printed nothing').strip()[-200:]}")
        return r.stdout

    def facts(self) -> dict:
        """The schema's device block (model, soc, os, cpu) from getprop, cpufreq and cpuinfo, with
        every Android reading kept under `android` (battery state, power_supply folder)."""
        props = self.shell(["getprop"], timeout=60)
        if props.returncode == 0 and props.stdout.strip():
            found = android.device_facts(android.parse_getprop(props.stdout))
        else:
            why = unavailable(f"getprop failed: {props.stderr.strip()[-200:]}")
            found = {name: why for name in android.FACT_PROPS}
        cpus = self._script(android.CPU_SCRIPT, "reading cpufreq")
        cpuinfo = self.read_text("/proc/cpuinfo")
        clusters = cpus if isinstance(cpus, dict) else android.parse_cpu_clusters(cpus, cpuinfo)
        battery = self.shell(["dumpsys", "battery"], timeout=60)
        try:
            battery_state = android.parse_dumpsys_battery(battery.stdout)
        except EdgeVLMError as e:
            battery_state = unavailable(e.problem)
        return {"kind": "adb", "spec": self.spec, "emulated": False, "serial": self.serial,
                "model": _joined(found, "manufacturer", "model"),
                "soc": _joined(found, "soc_manufacturer", "soc_model", fallback="board_platform"),
                "os": _android_os(found), "cpu": {"clusters": clusters},
                "android": found | {"battery": battery_state, "battery_root": self.battery_root()}}

    def thermal(self) -> dict:
        """The hottest CPU zone, else the skin zone (says which), with every zone read."""
        text = self._script(android.THERMAL_SCRIPT, "reading /sys/class/thermal")
        if isinstance(text, dict):
            return text
        zones = android.parse_thermal(text)
        picked = android.pick_temperature(zones)
        if isinstance(picked, dict):
            return picked
        return {"celsius": picked[0], "sensor": picked[1], "zones": {z["type"]: z["temp_c"] for z in zones}}

    def battery_root(self) -> str | dict:
        try:
            return self.power_supply_root()
        except EdgeVLMError as e:
            return unavailable(e.problem)

    def power_supply_root(self) -> str:
        """The battery's power_supply folder, for the sampler's --root."""
        text = self._script(android.POWER_SUPPLY_SCRIPT, "reading /sys/class/power_supply")
        if isinstance(text, dict):
            raise EdgeVLMError(text["unavailable"], "check `adb shell ls /sys/class/power_supply` on the phone")
        return android.pick_battery_supply(text)


def _joined(found: dict, *names: str, fallback: str | None = None):
    """Manufacturer + model as one text; unavailable only when every part is."""
    parts = [found[n] for n in names if isinstance(found.get(n), str)]
    if parts:
        return " ".join(parts)
    if fallback and isinstance(found.get(fallback), str):
        return found[fallback]
    return found[names[-1]]


def _android_os(found: dict):
    release, fingerprint = found.get("android_release"), found.get("os_build")
    if not isinstance(release, str):
        return release
    sdk = found.get("sdk")
    text = f"Android {release}" + (f" (API {sdk})" if isinstance(sdk, int) else "")
    return text + (f", {fingerprint}" if isinstance(fingerprint, str) else "")
