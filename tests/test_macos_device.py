"""The macos device up to what this Linux host can run: its refusal, its parsers on captured command
output, the bench inputs, the .pte decoder path and the power fallback. Core ML prediction and
powermetrics themselves run only on an Apple silicon Mac."""

from __future__ import annotations

import json
import platform
import shutil

import pytest

from edgevlm.device_tests.devices import macos
from edgevlm.device_tests.devices.base import is_unavailable

# The commands' formats (sysctl/sw_vers "key: value" lines; pmset's notes and its "CPU Power notify" block with
# tab-separated "KEY = N" lines, as public parsers' fixtures record them) with an M4 Mac mini's values. The
# "Thermal warning level has been recorded: N" wording of a recorded warning is assumed, not captured.
SYSCTL = """machdep.cpu.brand_string: Apple M4
hw.model: Mac16,10
hw.memsize: 17179869184
hw.perflevel0.physicalcpu: 4
hw.perflevel1.physicalcpu: 6
hw.perflevel0.name: Performance
hw.perflevel1.name: Efficiency
"""
SW_VERS = "ProductName:\t\tmacOS\nProductVersion:\t\t15.1\nBuildVersion:\t\t24B83\n"
THERM_NOMINAL = "Note: No thermal warning level has been recorded\nNote: No performance warning level has been recorded\n"
THERM_THROTTLED = ("Thermal warning level has been recorded: 2\nNote: No performance warning level has been recorded\n"
                   "2026-08-20 05:08:37 -0700 CPU Power notify\n\tCPU_Scheduler_Limit \t= 100\n"
                   "\tCPU_Available_CPUs \t= 10\n\tCPU_Speed_Limit \t= 62\n")


def test_refuses_off_apple_silicon_with_the_way_out():
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        assert macos.MacDevice("macos").missing() is None
        return
    message = macos.MacDevice("macos").missing()
    assert message.startswith("the macos device runs on an Apple silicon Mac (this is Linux x86_64)"
                              if platform.machine() == "x86_64" and platform.system() == "Linux" else
                              "the macos device runs on an Apple silicon Mac (this is ")
    assert "iPad/iPhone M4 have no powermetrics: the iOS demo app reports latency and tokens/s" in message


def test_facts_from_captured_output():
    facts = macos.mac_facts(macos.parse_sysctl(SYSCTL), macos.parse_sw_vers(SW_VERS),
                            macos.parse_pmset_therm(THERM_NOMINAL))
    assert facts["soc"] == "Apple M4" and facts["model"] == "Mac16,10" and facts["os"] == "macOS 15.1"
    assert facts["os_build"] == "24B83" and facts["memory_bytes"] == 16 * 2**30
    assert facts["cpu"] == {"performance_cores": 4, "efficiency_cores": 6}
    assert facts["thermal"]["thermal_warning_level"] == 0 and facts["thermal"]["performance_warning_level"] == 0
    assert is_unavailable(facts["thermal"]["cpu_speed_limit_percent"])
    # an Intel Mac has no perflevels: unavailable with the reason, not a crash
    intel = macos.mac_facts(macos.parse_sysctl("machdep.cpu.brand_string: Intel(R) Core(TM) i9\nhw.model: MacBookPro16,1\n"),
                            {}, macos.parse_pmset_therm(""))
    assert intel["cpu"]["performance_cores"] == {"unavailable": "sysctl has no hw.perflevel0.physicalcpu on this Mac"}
    assert is_unavailable(intel["os_build"]) and is_unavailable(intel["thermal"]["thermal_warning_level"])


def test_throttled_pmset_output():
    therm = macos.parse_pmset_therm(THERM_THROTTLED)
    assert therm == {"thermal_warning_level": 2, "performance_warning_level": 0, "cpu_speed_limit_percent": 62,
                     "cpu_scheduler_limit_percent": 100, "cpu_available_cpus": 10}


def test_bench_slice_matches_the_artifact_inputs(int4_kv_export):
    from edgevlm.device_tests.host_bench import BenchSlice

    manifest = json.loads((int4_kv_export / "manifest.json").read_text())
    vision = next(a for a in manifest["artifacts"] if a["part"] == "vision")
    inputs = BenchSlice(int4_kv_export, manifest).inputs(vision)
    assert {i["name"]: list(i["shape"]) for i in vision["inputs"]} == {k: list(v.shape) for k, v in inputs.items()}


def test_pte_decoder_entries_and_power_fallback(int4_kv_export):
    manifest = json.loads((int4_kv_export / "manifest.json").read_text())
    (entry,), power = macos.with_power(lambda: macos.pte_decoder_entries(int4_kv_export, manifest, [16, 4096], 3))
    assert entry["status"] == "ok" and list(entry["contexts"]) == ["16"] and entry["load_ms"] > 0
    assert entry["contexts"]["16"]["decode"]["runs"] == 3
    if shutil.which("powermetrics") is None:
        assert power == {"unavailable": "powermetrics is not on PATH (it ships with macOS in /usr/bin)"}
    (refused,) = macos.pte_decoder_entries(int4_kv_export, manifest, [4096], 3)
    assert refused["status"] == "not run" and "256-position cache" in refused["reason"]


def test_mac_report_pieces_validate_as_bench2(int4_kv_export):
    """What `device-bench --device macos` writes, from the parts that run here: the .pte decoder
    through ExecuTorch (real), powermetrics intervals parsed from its plist stream format, and Core
    ML timings in the shape coreml_vision returns (Core ML predicts only on macOS)."""
    import datetime as dt

    from edgevlm.device_tests import mac_bench, powermetrics as pm
    from edgevlm.device_tests.devices.base import unavailable
    from edgevlm.device_tests.schema import validate_bench
    from tests.test_powermetrics import T0, sample, stream

    manifest = json.loads((int4_kv_export / "manifest.json").read_text())
    entries = macos.pte_decoder_entries(int4_kv_export, manifest, [16, 4096], 3)
    (decoder,) = mac_bench.decoder_results(entries, (16, 4096))
    assert decoder["decoder"]["decode"]["4096"] == {"unavailable": "context 4096 + 3 decode tokens exceeds the "
                                                                   "program's cache"}
    assert decoder["decoder"]["decode"]["16"]["tokens_per_s"] > 0
    timing = {"compile_ms": 900.0, "load_ms": 120.0, "cold_ms": 40.0,
              "warm": {"runs": 10, "warmup": 3, "median_ms": 9.0, "p90_ms": 9.5, "min_ms": 8.9, "max_ms": 9.9,
                       "mean_ms": 9.2, "std_ms": 0.3}}
    vision = mac_bench.vision_results([{"runtime": "coreml:fp16", "artifact": "v.mlpackage", "sha256": "ab" * 32,
                                        **timing, "cpu_only": timing}])
    assert [v["runtime"] for v in vision] == ["coreml:fp16 CPU_AND_NE", "coreml:fp16 CPU_ONLY"]
    # idle at 1.0 W combined for 1 s, then 3.8 W for 2 s while the Neural Engine encodes 100 slices
    t0 = T0.replace(tzinfo=dt.timezone.utc).timestamp()
    idle = {"intervals": pm.interval_energy(pm.parse_stream(stream(
        [sample(i, cpu_mw=600.0, gpu_mw=100.0, ane_mw=300.0) for i in range(10)])), started_s=t0)}
    run = {"interval_ms": 100, "intervals": pm.interval_energy(pm.parse_stream(stream(
        [sample(i) for i in range(10, 30)])), started_s=t0 + 1.0)}
    block = mac_bench.powermetrics_block(idle, run, [{"name": "vision_warm", "start_s": t0 + 1.2,
                                                      "end_s": t0 + 2.8, "count": 100}], slices=3)
    assert block["idle_w"] == pytest.approx(1.0) and block["sample_rate_hz"] == 10
    phase = block["phases"]["vision_warm"]
    assert phase["mean_w"] == pytest.approx(3.8) and phase["net_w"] == pytest.approx(2.8)
    assert block["energy_per_slice_j"] == pytest.approx(2.8 * 1.6 / 100)
    assert block["energy_per_image_j"] == pytest.approx(3 * 2.8 * 1.6 / 100)
    report = {"schema": "edgevlm.bench/2", "kind": "device",
              "device": {"kind": "macos", "spec": "macos", "emulated": False, "model": "Mac16,1", "soc": "Apple M4",
                         "os": "macOS 15.1", "cpu": {"performance_cores": 4},
                         "thermal_before": unavailable(mac_bench.THERMAL_LEVELS),
                         "thermal_after": unavailable(mac_bench.THERMAL_LEVELS)},
              "artifacts": unavailable("test"), "runtime_versions": {}, "model": manifest["model"],
              "results": vision + [decoder], "power": block}
    validate_bench(report)
