"""Benchmark devices: one spec grammar, `KIND[:ARGUMENT]`, and one interface (devices/base.py).

    host                          this machine
    qemu-aarch64                  the aarch64 phone bundle run here under qemu-user (timings emulated)
    adb[:SERIAL]                  an Android phone over adb (SERIAL from `adb devices`)
    macos                         this Apple silicon Mac (Core ML, ExecuTorch, powermetrics)
    aihub[:DEVICE NAME]           a Qualcomm AI Hub device ("Samsung Galaxy S24 (Family)" by default)
    aws-device-farm:PROJECT_ARN   an AWS Device Farm project (the ARN keeps its own colons)

Each kind is imported when used, so a missing SDK never breaks the others.
"""

from __future__ import annotations

import importlib

from edgevlm.errors import ConfigError

DEVICE_KINDS = {  # kind -> (module, class)
    "host": ("edgevlm.device_tests.devices.host", "HostDevice"),
    "qemu-aarch64": ("edgevlm.device_tests.devices.host", "QemuDevice"),
    "adb": ("edgevlm.device_tests.devices.adb", "AdbDevice"),
    "macos": ("edgevlm.device_tests.devices.macos", "MacDevice"),
    "aihub": ("edgevlm.device_tests.devices.farms", "AIHubDevice"),
    "aws-device-farm": ("edgevlm.device_tests.devices.farms", "DeviceFarmDevice"),
}
NEEDS_ARGUMENT = {"aws-device-farm": "PROJECT_ARN, e.g. aws-device-farm:arn:aws:devicefarm:us-west-2:123456789012:"
                                     "project:UUID"}
TAKES_NO_ARGUMENT = ("host", "qemu-aarch64", "macos")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """`KIND[:ARGUMENT]` -> (kind, argument); unknown kinds fail with the known list."""
    kind, _, argument = spec.strip().partition(":")
    if kind not in DEVICE_KINDS:
        raise ConfigError(f"unknown device `{spec}`", f"use one of: {', '.join(DEVICE_KINDS)} "
                          "(adb:SERIAL, aihub:DEVICE NAME, aws-device-farm:PROJECT_ARN)")
    if kind in NEEDS_ARGUMENT and not argument:
        raise ConfigError(f"--device {kind} needs an argument", f"pass --device {kind}:{NEEDS_ARGUMENT[kind]}")
    if kind in TAKES_NO_ARGUMENT and argument:
        raise ConfigError(f"--device {kind} takes no argument (got `{argument}`)", f"pass --device {kind}")
    return kind, argument or None


def get_device(spec: str):
    kind, _ = parse_spec(spec)
    module, name = DEVICE_KINDS[kind]
    return getattr(importlib.import_module(module), name)(spec.strip())
