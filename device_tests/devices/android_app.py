"""android_demo's bench mode driven over adb: start the app's activity with `--es mode bench`, wait
for the edgevlm.bench/2 JSON it writes into its own files folder, and read it back with `run-as`
(the app's data folder is private; run-as works because the debug build is debuggable, and needs no
root). The exact commands (android_demo/README.md repeats them):

    adb shell run-as ai.edgevlm.demo rm -f files/edgevlm-bench.json files/edgevlm-bench.error
    adb shell am start -W -S -n ai.edgevlm.demo/.MainActivity --es mode bench --es runs 5 --es warmup 1 \\
        --es max_new_tokens 32
    adb shell run-as ai.edgevlm.demo cat files/edgevlm-bench.json   (polled until it exists)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from edgevlm.device_tests.devices.adb import AdbDevice
from edgevlm.errors import EdgeVLMError

PACKAGE = "ai.edgevlm.demo"
ACTIVITY = f"{PACKAGE}/.MainActivity"
RESULT = "files/edgevlm-bench.json"  # relative to the app's data folder, where run-as starts
ERROR = "files/edgevlm-bench.error"


def start_argv(runs: int = 5, warmup: int = 1, max_new_tokens: int = 32, prompt: str | None = None) -> list[str]:
    """`am start` for the bench: -S stops a running instance first (a fresh process, a cold model
    load), -W waits until the activity is up. Extras are strings: the app reads getStringExtra."""
    argv = ["am", "start", "-W", "-S", "-n", ACTIVITY, "--es", "mode", "bench", "--es", "runs", str(runs),
            "--es", "warmup", str(warmup), "--es", "max_new_tokens", str(max_new_tokens)]
    return argv + (["--es", "prompt", prompt] if prompt is not None else [])


def run_app_bench(device: AdbDevice, out: Path, *, runs: int = 5, warmup: int = 1, max_new_tokens: int = 32,
                  prompt: str | None = None, timeout_s: float = 900, poll_s: float = 2,
                  sleep: Callable[[float], None] = time.sleep) -> dict:
    """Runs the installed app's bench mode and writes its JSON to `out`; returns the document."""
    clear = device.shell(["run-as", PACKAGE, "rm", "-f", RESULT, ERROR])
    if clear.returncode:
        raise EdgeVLMError(f"`run-as {PACKAGE}` failed: {(clear.stderr or clear.stdout).strip()[-500:]}",
                           "install the debug build of android_demo (./gradlew installDebug): run-as needs "
                           "the app installed and debuggable")
    started = device.shell(start_argv(runs, warmup, max_new_tokens, prompt))
    if started.returncode or "Error" in started.stdout:  # am prints "Error: Activity class ... does not exist."
        raise EdgeVLMError(f"`am start -n {ACTIVITY}` failed: {(started.stdout + started.stderr).strip()[-500:]}",
                           "install android_demo on the phone (./gradlew installDebug in android_demo/)")
    deadline = time.monotonic() + timeout_s
    while True:
        result = device.shell(["run-as", PACKAGE, "cat", RESULT])
        if result.returncode == 0 and result.stdout.strip():
            document = json.loads(result.stdout)
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(result.stdout)
            return document
        error = device.shell(["run-as", PACKAGE, "cat", ERROR])
        if error.returncode == 0 and error.stdout.strip():
            raise EdgeVLMError(f"android_demo's bench failed on the phone: {error.stdout.strip()[-1500:]}",
                               "`adb logcat -s edgevlm-demo` has the stack trace")
        if time.monotonic() > deadline:
            raise EdgeVLMError(f"android_demo wrote no {RESULT} within {timeout_s:.0f} s",
                               "watch `adb logcat -s edgevlm-demo`; raise the timeout for large models")
        sleep(poll_s)
