"""Device farms as benchmark devices: Qualcomm AI Hub (the QNN vision artifact compiled and
profiled on a farm phone) and AWS Device Farm (the Android steps of `--device adb` on a farm
phone, through a custom-environment test spec). Neither is reachable from the machines the tests
run on: everything up to the network is exercised there, the submission itself is not.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from edgevlm.device_tests.devices.base import Device, unavailable
from edgevlm.errors import EdgeVLMError

# AI Hub device names -> SoC, for the report (AI Hub's profile does not carry it)
KNOWN_SOCS = {"Samsung Galaxy S24 (Family)": "Snapdragon 8 Gen 3 (SM8650)",
              "Samsung Galaxy S24": "Snapdragon 8 Gen 3 (SM8650)", "Snapdragon 8 Gen 3 QRD": "Snapdragon 8 Gen 3 (SM8650)"}
NOT_IN_PROFILE = "AI Hub's profile does not report it"


def _problem_text(error: EdgeVLMError) -> str:
    return f"{error.problem}: {error.fix}" if getattr(error, "fix", None) else error.problem


def aihub_report(manifest: dict, root: Path, device_name: str, jobs: dict, entry: dict) -> dict:
    """One AI Hub profile as a bench/2 report (the `aihub` command and `device-bench --device aihub`)."""
    from edgevlm.device_tests.schema import BENCH_SCHEMA_ID, artifact_hashes
    from edgevlm.export.manifest import sha256_path

    from edgevlm.backends.aihub import NO_POWER

    decoder = {"part": "decoder", "runtime": "executorch", "status": "not run", "artifact": None, "sha256": None,
               "reason": "AI Hub profiles the QNN vision artifact; the decoder .pte runs on a phone with "
                         "--device adb or --device aws-device-farm:PROJECT_ARN"}
    return {"schema": BENCH_SCHEMA_ID, "kind": "device",
            "device": {"kind": "aihub", "spec": f"aihub:{device_name}", "emulated": False, "model": device_name,
                       "soc": KNOWN_SOCS.get(device_name, unavailable(NOT_IN_PROFILE)),
                       "os": unavailable(NOT_IN_PROFILE), "cpu": unavailable(NOT_IN_PROFILE),
                       "thermal_before": unavailable(NOT_IN_PROFILE), "thermal_after": unavailable(NOT_IN_PROFILE),
                       "jobs": jobs},
            "artifacts": artifact_hashes(manifest, sha256_path(Path(root) / "manifest.json")),
            "runtime_versions": manifest["toolchain"], "model": manifest["model"],
            "results": [entry, decoder], "power": unavailable(NO_POWER)}


class AIHubDevice(Device):
    kind = "aihub"

    def __init__(self, spec: str):
        from edgevlm.backends.aihub import DEFAULT_DEVICE

        super().__init__(spec)
        self.name = spec.partition(":")[2] or DEFAULT_DEVICE

    def missing(self) -> str | None:
        from edgevlm.backends import aihub

        try:
            aihub.preflight()  # client installed, then a token, then the API reachable
        except EdgeVLMError as e:
            return _problem_text(e)
        return None

    def facts(self) -> dict:
        return {"kind": self.kind, "spec": self.spec, "emulated": False, "model": self.name}

    def bench(self, artifacts: Path, manifest: dict, plan, out_json: Path) -> dict:
        from edgevlm.backends import aihub
        from edgevlm.export.integrity import check_files

        artifact, _ = aihub.qnn_source(manifest, artifacts)
        check_files(artifacts, manifest, [artifact], prefixes=())  # upload only the exported bytes
        result = aihub.submit(artifacts, manifest, self.name, wait=True)
        entry = aihub.aihub_vision_entry(result["profile"], artifact, self.name)
        return aihub_report(manifest, artifacts, self.name, result["jobs"], entry)


class DeviceFarmDevice(Device):
    """`aws-device-farm:PROJECT_ARN`: the aarch64 bundle in a test package, the adb steps in a test
    spec, the run scheduled with boto3 and its collected files turned into the same report."""

    kind = "aws-device-farm"

    def __init__(self, spec: str):
        super().__init__(spec)
        self.project_arn = spec.partition(":")[2]

    def missing(self) -> str | None:
        from edgevlm.device_tests.devices.host import QemuDevice
        from edgevlm.device_tests.farms.aws_device_farm import devicefarm_client

        if not self.project_arn.startswith("arn:aws:devicefarm:"):
            return (f"`{self.project_arn}` is not a Device Farm project ARN: pass aws-device-farm:arn:aws:devicefarm:"
                    "us-west-2:ACCOUNT:project:ID (aws devicefarm list-projects)")
        cross = QemuDevice("qemu-aarch64").missing()  # the bundle is cross-built here
        if cross and "aarch64-linux-gnu-g++" in cross:
            return cross.replace("--device qemu-aarch64", "--device aws-device-farm (the phone bundle is built here)")
        try:
            devicefarm_client()
        except EdgeVLMError as e:
            return _problem_text(e)
        return None

    def facts(self) -> dict:
        return {"kind": self.kind, "spec": self.spec, "emulated": False}

    def prepare(self, artifacts: Path, manifest: dict, plan, raw: Path) -> tuple[dict, Path]:
        """The test spec and test package, written to `raw` (kept: they can be uploaded by hand)."""
        from edgevlm.device_tests.device_bench import bench_options
        from edgevlm.device_tests.device_bundle import make_bundle
        from edgevlm.device_tests.farms import aws_device_farm as adf

        bundle = make_bundle(artifacts, manifest, "aarch64-linux", plan.image, raw / "staging")
        spec = adf.test_spec(bundle.digest, bench_options(plan, "", "bench.json"), hz=plan.sample_hz)
        (raw / "edgevlm-testspec.yml").write_text(adf.spec_yaml(spec))
        return spec, adf.test_package(bundle.files, raw / "edgevlm-test-package.zip")

    def bench(self, artifacts: Path, manifest: dict, plan, out_json: Path) -> dict:
        from edgevlm.device_tests.device_report import assemble
        from edgevlm.device_tests.farms import aws_device_farm as adf

        raw = out_json.with_name(out_json.stem + ".raw")
        raw.mkdir(parents=True, exist_ok=True)
        spec, package = self.prepare(artifacts, manifest, plan, raw)
        client = adf.devicefarm_client()
        run = adf.submit(self.project_arn, spec, package, client=client)
        done = adf.wait_run(client, run["run_arn"])
        files = collect_run_files(client, run["run_arn"], raw)
        steps = {"files": files, "rounds": [{"index": 0, "cooldown": unavailable(FARM_NO_COOLDOWN)}],
                 "battery_root": "/sys/class/power_supply (found on the phone)" if files["power"] else
                 unavailable("the farm run returned no power samples"),
                 "thermal_before": unavailable(FARM_NO_THERMAL), "thermal_after": unavailable(FARM_NO_THERMAL)}
        facts = farm_facts(raw / "getprop.txt", self.spec) | {"run": run | done}
        return assemble(manifest, artifacts, facts, steps, raw, plan)


FARM_NO_COOLDOWN = "one round per farm run: the farm schedules the phone, edgevlm cannot wait on its temperature"
FARM_NO_THERMAL = "the farm spec records getprop only; thermal zones are not collected"


def farm_facts(getprop: Path, spec: str) -> dict:
    """The device block from the getprop text the spec saved."""
    from edgevlm.device_tests import android

    found = android.device_facts(android.parse_getprop(getprop.read_text())) if getprop.is_file() else {}
    why = unavailable("the farm run returned no getprop.txt")
    text = lambda name: found.get(name, why)  # noqa: E731
    return {"kind": "aws-device-farm", "spec": spec, "emulated": False, "model": text("model"),
            "soc": text("soc_model"), "os": text("os_build"),
            "cpu": unavailable("farm phones are unrooted and the spec reads no cpufreq"), "android": found}


def collect_run_files(client, run_arn: str, raw: Path) -> dict:
    """Download the run's customer artifacts ($DEVICEFARM_LOG_DIR, zipped by the farm) into `raw`."""
    import urllib.request

    for job in client.list_jobs(arn=run_arn)["jobs"]:
        for artifact in client.list_artifacts(arn=job["arn"], type="FILE")["artifacts"]:
            if artifact["type"] == "CUSTOMER_ARTIFACT":
                archive = raw / "customer-artifacts.zip"
                with urllib.request.urlopen(artifact["url"], timeout=300) as response:
                    archive.write_bytes(response.read())
                with zipfile.ZipFile(archive) as z:
                    for name in z.namelist():
                        if Path(name).name in ("bench.json", "power.csv", "idle.csv", "getprop.txt"):
                            (raw / Path(name).name).write_bytes(z.read(name))
    if not (raw / "bench.json").is_file():
        raise EdgeVLMError(f"the Device Farm run {run_arn} returned no bench.json",
                           "open the run in the Device Farm console: its test spec log says which step failed")
    json.loads((raw / "bench.json").read_text())
    power = ["power.csv"] if (raw / "power.csv").is_file() and (raw / "idle.csv").is_file() else []
    return {"bench": ["bench.json"], "power": power, "idle": ["idle.csv"] if power else []}
