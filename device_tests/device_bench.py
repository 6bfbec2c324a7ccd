"""`edgevlm device-bench`: the same device-side steps on every shell device (host, qemu-aarch64,
an Android phone over adb).

Per round: wait for the device to cool back to its starting temperature (bounded, recorded),
sample the idle power, then run `edgevlm-bench` (load, cold and warm vision encodes, one
image + question answered end to end, prefill and decode at each context) with the power sampler
running beside it on the device's clock. The raw files come back beside the JSON and
`device_report.py` turns them into one `edgevlm.bench/2` report.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from edgevlm.device_tests.devices.base import ShellDevice, is_unavailable, unavailable
from edgevlm.progress import stage


@dataclasses.dataclass(frozen=True)
class DeviceBenchPlan:
    contexts: tuple[int, ...] = (128, 1024, 4096)
    runs: int = 10              # warm vision encodes per round, after warm-up
    warmup: int = 2
    decode_tokens: int = 32     # decode steps timed at each context
    max_new_tokens: int = 32    # of the end-to-end answer
    rounds: int = 1
    prompt: str = "What is in the picture?"
    image: Path | None = None   # None: the demo scene
    vision: str = "auto"
    threads: int = 0
    idle_s: float = 5.0         # idle power window before each round
    sample_hz: int = 20
    cooldown_tolerance_c: float = 1.0
    cooldown_max_s: float = 180.0
    allow_charging: bool = False
    battery_root: str | None = None  # the battery's sysfs folder, when discovery picks the wrong one
    perfetto: bool = False      # Android: also trace power rails and battery counters with Perfetto

    def __post_init__(self):
        from edgevlm.errors import ConfigError

        for name in ("runs", "rounds", "decode_tokens", "max_new_tokens", "sample_hz"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1", "pass a positive number")
        if not self.contexts or min(self.contexts) < 1:
            raise ConfigError("--contexts must list positive lengths, e.g. 128,1024,4096", "fix --contexts")


PERFETTO_MAX_S = 900  # the trace config's duration: longer than a round; the capture is stopped when it ends


def bench_options(plan: DeviceBenchPlan, prefix: str, out: str) -> list[str]:
    """edgevlm-bench's arguments for a bundle folder (`prefix`: the folder + "/", or "" when the
    command runs inside it, as the farm's test spec does)."""
    return ["--artifacts", f"{prefix}artifacts", "--image", f"{prefix}inputs/image.ppm", "--prompt", plan.prompt,
            "--vision", plan.vision, "--contexts", ",".join(map(str, plan.contexts)), "--runs", str(plan.runs),
            "--warmup", str(plan.warmup), "--decode-tokens", str(plan.decode_tokens),
            "--max-new-tokens", str(plan.max_new_tokens), "--threads", str(plan.threads), "--json", out]


def bench_argv(device: ShellDevice, folder: str, plan: DeviceBenchPlan, out: str) -> list[str]:
    return [*device.runner_argv(folder, "edgevlm-bench"), *bench_options(plan, f"{folder}/", out)]


def sampler_argv(device: ShellDevice, folder: str, root: str, hz: int, out: str, duration: float | None = None):
    argv = [*device.runner_argv(folder, "edgevlm-power-sampler"), "--root", root, "--hz", str(hz), "--out", out]
    return argv + (["--duration", f"{duration:g}"] if duration else [])


def sampling_margin(plan: DeviceBenchPlan) -> float:
    """How long the sampler runs before the benchmark starts and after it ends: three sample periods
    (energy at a phase edge is interpolated between the samples around it), and the time a process
    takes to start on a phone."""
    return max(3 / plan.sample_hz, 0.3)


def cool_down(device: ShellDevice, start_c: float | None, plan: DeviceBenchPlan, poll_s: float = 2.0) -> dict:
    """Wait until the device is back within the tolerance of its starting temperature (bounded)."""
    if start_c is None:
        return unavailable("no readable temperature on this device: rounds run back to back")
    waited, now_c = 0.0, device.temperature_c()
    while now_c is not None and now_c > start_c + plan.cooldown_tolerance_c and waited < plan.cooldown_max_s:
        time.sleep(poll_s)
        waited += poll_s
        now_c = device.temperature_c()
    end_c = start_c if now_c is None else now_c
    return {"start_c": start_c, "end_c": end_c, "waited_s": waited,
            "reached": end_c <= start_c + plan.cooldown_tolerance_c}


def refuse_old_manifest(artifacts: Path) -> None:
    """The native runtime reads manifest schema 2 only (Python upgrades older ones in memory)."""
    import json

    from edgevlm.errors import ConfigError
    from edgevlm.export.manifest import SCHEMA_VERSION

    version = json.loads((artifacts / "manifest.json").read_text()).get("schema_version")
    if version != SCHEMA_VERSION:
        raise ConfigError(f"{artifacts}/manifest.json has schema_version {version}; the device runtime reads "
                          f"{SCHEMA_VERSION}", "re-export the folder with this edgevlm (`edgevlm export`)")


def refuse_charging(idle_csv: Path, allow_charging: bool) -> None:
    """A phone on its charger measures the charger, not the model: stop before the benchmark runs."""
    from edgevlm.device_tests import power

    power.BatteryPower.from_samples(power.parse_sampler_csv(idle_csv.read_text()), allow_charging=allow_charging)


def run_rounds(device: ShellDevice, folder: str, plan: DeviceBenchPlan, raw: Path) -> dict:
    """The device-side steps; returns what device_report needs (raw file names, facts, rounds)."""
    raw.mkdir(parents=True, exist_ok=True)
    results = f"{folder}/results"
    device.shell(["mkdir", "-p", results]).check("creating the results folder on the device")
    battery = plan.battery_root or device.battery_root()
    start_c = device.temperature_c()
    thermal_before = device.thermal()
    rounds, files = [], {"bench": [], "power": [], "idle": []}
    perfetto = None if plan.perfetto else unavailable("not asked for (--perfetto)")
    for index in range(plan.rounds):
        cooldown = cool_down(device, start_c, plan)
        if not is_unavailable(battery):
            with stage(f"round {index + 1}/{plan.rounds}: idle power for {plan.idle_s:g} s"):
                idle = f"idle-{index}.csv"
                device.shell(sampler_argv(device, folder, battery, plan.sample_hz, f"{results}/{idle}", plan.idle_s),
                             timeout=plan.idle_s + 30).check("sampling idle power")
                device.pull(f"{results}/{idle}", raw / idle)
                files["idle"].append(idle)
                refuse_charging(raw / idle, plan.allow_charging)  # before the benchmark, not after it
        sampler = trace = None
        if not is_unavailable(battery):
            power = f"power-{index}.csv"
            sampler = device.start(sampler_argv(device, folder, battery, plan.sample_hz, f"{results}/{power}"))
            time.sleep(sampling_margin(plan))  # samples before the first phase starts
        if plan.perfetto and index == 0:  # one trace: the rails of the first round
            from edgevlm.device_tests.perfetto_capture import start_perfetto

            trace = start_perfetto(device, duration_s=PERFETTO_MAX_S)
        bench = f"bench-{index}.json"
        try:
            with stage(f"round {index + 1}/{plan.rounds}: edgevlm-bench on {device.spec}"):
                device.shell(bench_argv(device, folder, plan, f"{results}/{bench}")).check(
                    f"edgevlm-bench on {device.spec}")
        finally:
            if sampler is not None:
                time.sleep(sampling_margin(plan))  # and after the last phase ends, so both edges interpolate
            for running in (sampler, trace):
                if running is not None:
                    running.stop()
        device.pull(f"{results}/{bench}", raw / bench)
        files["bench"].append(bench)
        if trace is not None:
            from edgevlm.device_tests.device_report import load_rounds, phases_of
            from edgevlm.device_tests.perfetto_capture import TRACE_FILE, collect_perfetto

            perfetto = collect_perfetto(device, raw, phases_of(load_rounds(raw, [bench])[0]))
            files["perfetto"] = [TRACE_FILE] if (raw / TRACE_FILE).is_file() else []
        if sampler is not None:
            device.pull(f"{results}/{power}", raw / power)
            files["power"].append(power)
        rounds.append({"index": index, "cooldown": cooldown})
    return {"files": files, "rounds": rounds, "battery_root": battery, "thermal_before": thermal_before,
            "thermal_after": device.thermal(), "perfetto": perfetto}


def bench_device(artifacts: Path, spec: str, plan: DeviceBenchPlan, out_json: Path) -> dict:
    """Check, push, run the rounds, pull, assemble and validate: the whole `device-bench`."""
    from edgevlm.backends.base import MissingTool
    from edgevlm.device_tests.device_bundle import make_bundle
    from edgevlm.device_tests.device_report import assemble
    from edgevlm.device_tests.devices import get_device
    from edgevlm.export.integrity import check_files
    from edgevlm.export.manifest import read_manifest

    device = get_device(spec)
    if plan.perfetto and device.kind not in ("adb",):
        from edgevlm.errors import ConfigError

        raise ConfigError(f"--perfetto traces an Android phone; --device {spec} is not one", "drop --perfetto")
    problem = device.missing()  # before any build or transfer: a missing phone or tool costs nothing
    if problem:
        raise MissingTool(problem, "fix that, or benchmark here with --device host / --device qemu-aarch64")
    manifest = read_manifest(artifacts)
    if not isinstance(device, ShellDevice):
        return device.bench(artifacts, manifest, plan, out_json)
    check_files(artifacts, manifest, manifest["artifacts"], prefixes=())  # push only the exported bytes
    refuse_old_manifest(artifacts)
    raw = out_json.with_name(out_json.stem + ".raw")
    with stage(f"bundle for {device.spec} ({device.runtime_target()} runtime, export, image)"):
        bundle = make_bundle(artifacts, manifest, device.runtime_target(), plan.image, raw / "staging")
    with stage(f"push bundle {bundle.digest} to {device.spec}"):
        folder = device.push(bundle)
    facts = device.facts()
    steps = run_rounds(device, folder, plan, raw)
    if device.kind == "adb":  # the QNN context binary on the HTP, with Qualcomm's own qnn-net-run
        from edgevlm.device_tests.qnn_vision import qnn_vision_result

        with stage("vision on the HTP: qnn-net-run (QNN_SDK_ROOT)"):
            steps["extra_results"] = [r for r in [qnn_vision_result(device, folder, artifacts, manifest, plan, raw)]
                                      if r is not None]
    report = assemble(manifest, artifacts, facts, steps, raw, plan)
    report["input"] |= {"bundle": bundle.digest, "device_folder": folder}
    return report
