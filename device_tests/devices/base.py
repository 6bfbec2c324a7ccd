"""What every benchmark device provides, so the device-side steps are written once.

A device is named by a spec (`host`, `qemu-aarch64`, `adb[:SERIAL]`, `macos`, `aihub[:NAME]`,
`aws-device-farm:PROJECT_ARN`; `devices/__init__.py` parses it). The shell devices (host, qemu,
adb) run the same steps: push a content-hashed bundle, read facts, sample power, run the native
benchmark, pull its JSON. A device that cannot be used here says what is missing (`missing()`)
instead of failing half-way.
"""

from __future__ import annotations

import hashlib
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path


def unavailable(reason: str) -> dict:
    """A field this device cannot provide: present, with the reason (the bench/2 schema's form)."""
    if not reason:
        raise ValueError("an unavailable field needs a reason")
    return {"unavailable": reason}


def is_unavailable(value) -> bool:
    return isinstance(value, dict) and set(value) == {"unavailable"}


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self, what: str) -> "CommandResult":
        if self.returncode:
            from edgevlm.errors import EdgeVLMError

            tail = (self.stderr or self.stdout).strip()[-1500:]
            raise EdgeVLMError(f"{what} failed (exit {self.returncode}): {tail}",
                               "the device-side message above names what to change; EDGEVLM_LOG=debug adds "
                               "the runtime's log")
        return self


@dataclass
class Bundle:
    """A local folder staged for a device: the runner files, the artifacts, prepared inputs.

    `files` maps the path inside the bundle to the local file; `digest` names the bundle by its
    content, so a device keeps one folder per content and a push transfers only what changed."""

    root: Path
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for rel in sorted(self.files):
            h.update(rel.encode() + b"\0" + file_sha256(self.files[rel]).encode() + b"\n")
        return h.hexdigest()[:16]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class Background(ABC):
    """A command left running on the device (the power sampler); `stop` ends it and returns its output."""

    @abstractmethod
    def stop(self) -> CommandResult: ...


class LocalBackground(Background):
    def __init__(self, argv: list[str], cwd: str | None = None):
        self.argv = argv
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> CommandResult:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return CommandResult(self.argv, self.proc.returncode, out, err)


class Device(ABC):
    """One benchmark target. `kind` is the spec's first word; `emulated` marks timings that say
    nothing about a phone's speed (qemu)."""

    kind: str = ""
    emulated: bool = False

    def __init__(self, spec: str):
        self.spec = spec

    @abstractmethod
    def missing(self) -> str | None:
        """What keeps this device from running a benchmark, with the fix; None when usable."""

    @abstractmethod
    def facts(self) -> dict:
        """The schema's device block: model, soc, os_build, cpu, ... (value or `unavailable(reason)`)."""


class ShellDevice(Device):
    """A device reached through a shell (host, qemu, adb): the same benchmark steps run on each."""

    @abstractmethod
    def push(self, bundle: Bundle) -> str:
        """Make the bundle present on the device; returns its folder there (named by its digest).
        A folder already complete on the device (its `.complete` marker) is not sent again."""

    @abstractmethod
    def shell(self, argv: list[str], cwd: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run argv on the device (no shell quoting issues: each element is one argument)."""

    @abstractmethod
    def start(self, argv: list[str], cwd: str | None = None) -> Background:
        """Start argv on the device and leave it running (the power sampler)."""

    @abstractmethod
    def pull(self, remote: str, local: Path) -> None:
        """Copy one file from the device."""

    def read_text(self, remote: str) -> str | None:
        """A small file on the device (sysfs, /proc), or None when it cannot be read."""
        result = self.shell(["cat", remote], timeout=10)
        return result.stdout if result.returncode == 0 else None

    def thermal(self) -> dict:
        """The schema's thermal reading: {"celsius", "sensor", "zones"} or `unavailable(reason)`."""
        return unavailable(f"{self.kind} devices report no temperature")

    def temperature_c(self) -> float | None:
        """The reading cool-down waits on, or None."""
        reading = self.thermal()
        return None if is_unavailable(reading) else reading["celsius"]

    def battery_root(self) -> str | dict:
        """The battery's sysfs folder the power sampler reads, or `unavailable(reason)`."""
        return unavailable(f"{self.kind} devices have no battery to sample")

    def runtime_target(self) -> str:
        """The native runtime build this device runs (runtime/targets.py)."""
        return "aarch64-linux"

    def runner_argv(self, folder: str, tool: str) -> list[str]:
        """How a bundled native tool is started on this device (qemu wraps it in the emulator)."""
        bin_dir = f"{folder}/bin"  # a cross build runs through its own glibc loader
        return [f"{bin_dir}/ld-linux-aarch64.so.1", "--library-path", f"{bin_dir}/lib", f"{bin_dir}/{tool}"]
