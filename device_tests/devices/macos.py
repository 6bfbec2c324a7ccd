"""The `macos` device: an Apple silicon Mac (M4) benchmarked in this Python process.

Vision: the `.mlpackage` through Core ML, compiled and loaded with the Neural Engine allowed
(CPU_AND_NE) and again on the CPU alone (CPU_ONLY) for comparison; compile, load, the first
(cold) prediction and the warm predictions are timed apart. Decoder: the `.pte` through
PteDecoderSession (device_tests/decoder_contexts.py). Power: powermetrics (device_tests/powermetrics.py)
when this process may run it as root. iPad/iPhone M4 have no powermetrics and run no Python: the
iOS demo app reports latency and tokens/s there.

The facts come from `sysctl`, `sw_vers` and `pmset -g therm`; their parsers take the commands'
text, so they are tested on captured output anywhere.
"""

from __future__ import annotations

import platform
import re
import subprocess
import time
from pathlib import Path

from edgevlm.device_tests.devices.base import Device, unavailable

SYSCTL_KEYS = ("machdep.cpu.brand_string", "hw.model", "hw.memsize", "hw.perflevel0.physicalcpu",
               "hw.perflevel1.physicalcpu", "hw.perflevel0.name", "hw.perflevel1.name")
NOT_A_MAC = ("the macos device runs on an Apple silicon Mac (this is {system} {machine}): run the same command "
             "there; iPad/iPhone M4 have no powermetrics: the iOS demo app reports latency and tokens/s")


def parse_sysctl(text: str) -> dict[str, str]:
    """`sysctl KEY...` output ("key: value" per line) -> {key: value}. Unknown keys are simply absent
    (sysctl reports them on stderr: hw.perflevel* does not exist on Intel Macs)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            out[key.strip()] = value.strip()
    return out


def parse_sw_vers(text: str) -> dict[str, str]:
    """`sw_vers` ("ProductName:\\tmacOS" ...) -> {"ProductName": "macOS", "ProductVersion": ..., "BuildVersion": ...}."""
    return {k: v for k, v in parse_sysctl(text).items()}


def parse_pmset_therm(text: str) -> dict:
    """`pmset -g therm` -> thermal facts. The warning levels are 0 when pmset says none has been recorded
    (the nominal state on Apple silicon); the CPU limits (percent, CPUs) appear only after a CPU power
    notification. A field pmset did not print is unavailable, not assumed nominal."""
    facts: dict = {}
    for kind in ("thermal", "performance"):
        if re.search(rf"No {kind} warning level has been recorded", text, re.I):
            facts[f"{kind}_warning_level"] = 0
        elif m := re.search(rf"{kind} warning level[^0-9\n]*(\d+)", text, re.I):
            facts[f"{kind}_warning_level"] = int(m.group(1))
        else:
            facts[f"{kind}_warning_level"] = unavailable(f"pmset -g therm printed no {kind} warning level")
    for key, name in (("CPU_Speed_Limit", "cpu_speed_limit_percent"), ("CPU_Scheduler_Limit", "cpu_scheduler_limit_percent"),
                      ("CPU_Available_CPUs", "cpu_available_cpus")):
        m = re.search(rf"{key}\s*=\s*(\d+)", text)
        facts[name] = int(m.group(1)) if m else unavailable(f"pmset -g therm printed no {key} (no CPU power "
                                                            "notification since boot)")
    return facts


def mac_facts(sysctl: dict, sw_vers: dict, therm: dict) -> dict:
    """The device block from the parsed command outputs."""
    def num(key):
        value = sysctl.get(key)
        return int(value) if value and value.isdigit() else unavailable(f"sysctl has no {key} on this Mac")

    return {"kind": "macos", "model": sysctl.get("hw.model") or unavailable("sysctl hw.model failed"),
            "soc": sysctl.get("machdep.cpu.brand_string") or unavailable("sysctl machdep.cpu.brand_string failed"),
            "os": f"{sw_vers.get('ProductName', 'macOS')} {sw_vers.get('ProductVersion', '?')}",
            "os_build": sw_vers.get("BuildVersion") or unavailable("sw_vers printed no BuildVersion"),
            "memory_bytes": num("hw.memsize"),
            "cpu": {"performance_cores": num("hw.perflevel0.physicalcpu"),
                    "efficiency_cores": num("hw.perflevel1.physicalcpu")},
            "thermal": therm}


class MacDevice(Device):
    kind = "macos"

    def missing(self) -> str | None:
        system, machine = platform.system(), platform.machine()
        if system == "Darwin" and machine == "arm64":
            return None
        return NOT_A_MAC.format(system=system, machine=machine)

    def facts(self) -> dict:
        def run(argv):
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            return proc.stdout

        return mac_facts(parse_sysctl(run(["sysctl", *SYSCTL_KEYS])), parse_sw_vers(run(["sw_vers"])),
                         parse_pmset_therm(run(["pmset", "-g", "therm"])))

    def bench(self, artifacts: Path, manifest: dict, plan, out_json: Path) -> dict:
        from edgevlm.device_tests.mac_bench import mac_report

        return mac_report(self, artifacts, manifest, plan)


def coreml_vision(package: Path, inputs: dict, compute_units: str = "CPU_AND_NE", warmup: int = 3,
                  runs: int = 10) -> dict:
    """One Core ML vision timing: compile (.mlpackage -> .mlmodelc), load with the compute units,
    first prediction (cold: Core ML finishes device-specific preparation there), then warm calls.
    Needs macOS (coremltools predicts only there)."""
    import shutil
    import tempfile

    import coremltools as ct

    from edgevlm.device_tests.host_bench import time_calls

    units = ct.ComputeUnit[compute_units]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        compiled = ct.models.utils.compile_model(str(package), str(Path(tmp) / "vision.mlmodelc"))
        compile_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        model = ct.models.CompiledMLModel(compiled, compute_units=units)
        load_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        model.predict(inputs)
        cold_ms = (time.perf_counter() - t0) * 1000
        warm = time_calls(lambda: model.predict(inputs), warmup, runs)
        model = None  # released before its compiled folder is removed
        shutil.rmtree(compiled, ignore_errors=True)
    return {"compute_units": compute_units, "compile_ms": compile_ms, "load_ms": load_ms, "cold_ms": cold_ms,
            "warm": warm}


def coreml_vision_entries(artifacts_dir: Path, manifest: dict, warmup: int = 3, runs: int = 10) -> list[dict]:
    """Every Core ML vision artifact of a manifest, timed with the Neural Engine and on the CPU alone."""
    from edgevlm.device_tests.host_bench import BenchSlice

    bench_slice = BenchSlice(artifacts_dir, manifest)
    entries = []
    for artifact in [a for a in manifest["artifacts"] if a["part"] == "vision" and a["target"] == "coreml"]:
        inputs = bench_slice.inputs(artifact)
        timings = {units: coreml_vision(Path(artifacts_dir) / artifact["file"], inputs, units, warmup, runs)
                   for units in ("CPU_AND_NE", "CPU_ONLY")}
        entries.append({"runtime": f"coreml:{artifact['precision']}", "artifact": artifact["file"],
                        "sha256": artifact["sha256"], "status": "ok", "input": bench_slice.describe(),
                        **{k: timings["CPU_AND_NE"][k] for k in ("compile_ms", "load_ms", "cold_ms", "warm")},
                        "compute_units": "CPU_AND_NE", "cpu_only": timings["CPU_ONLY"]})
    return entries


def pte_decoder_entries(artifacts_dir: Path, manifest: dict, contexts: list[int], decode_tokens: int) -> list[dict]:
    """Every ExecuTorch decoder .pte of a manifest through PteDecoderSession, per context (clipped to its cache)."""
    from edgevlm.device_tests.decoder_contexts import decoder_contexts
    from edgevlm.export.decoder.session import PteDecoderSession

    entries = []
    for artifact in [a for a in manifest["artifacts"] if a["part"] == "decoder" and a["file"].endswith(".pte")]:
        limit = artifact["kv_cache"]["max_seq_len"]
        fits = [c for c in contexts if c + decode_tokens <= limit]
        entry = {"runtime": f"{artifact['target']}:{artifact['precision']}", "artifact": artifact["file"],
                 "sha256": artifact["sha256"]}
        if not fits:
            entries.append(entry | {"status": "not run", "reason": f"no context of {contexts} leaves room for "
                                                                   f"{decode_tokens} tokens in its {limit}-position cache"})
            continue
        t0 = time.perf_counter()
        session = PteDecoderSession(Path(artifacts_dir), artifact)
        load_ms = (time.perf_counter() - t0) * 1000
        measured = decoder_contexts(session, fits, decode_tokens, vocab=artifact["outputs"][0]["shape"][-1],
                                    max_seq_len=limit)
        entries.append(entry | {"status": "ok", "load_ms": load_ms, **measured})
    return entries


def with_power(fn, interval_ms: int = 100):
    """(fn(), power): power is the parsed powermetrics intervals sampled while fn ran, or
    unavailable(reason) where powermetrics cannot run as root here."""
    from edgevlm.device_tests import powermetrics as pm

    problem = pm.access_problem()
    if problem:
        return fn(), unavailable(problem)
    sampler = pm.PowermetricsSampler(interval_ms=interval_ms)
    try:
        result = fn()
    finally:
        plists = sampler.stop()
    return result, {"source": "powermetrics", "interval_ms": interval_ms, "intervals": pm.interval_energy(plists, sampler.started_s)}
