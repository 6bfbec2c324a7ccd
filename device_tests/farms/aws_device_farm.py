"""AWS Device Farm: the Android benchmark steps as a custom-environment test spec, the test package
that carries the bundle, and the run submitted through boto3.

A farm phone is reached by adb from a Device Farm host (Amazon Linux 2, test host `amazon_linux_2`),
so the spec repeats what AdbDevice does: push the content-addressed bundle to
/data/local/tmp/edgevlm/<digest>, start the power sampler in the background, run edgevlm-bench, pull
its JSON and the sampler's CSV into $DEVICEFARM_LOG_DIR (which Device Farm keeps as the run's
artifacts). The phones are unrooted and the sampler reads the battery fuel gauge only: power there
is approximate, and the charging state is whatever the farm's USB supplies.

The package is an Appium Python (web) test package, the type whose spec may run arbitrary commands
without an app to install: requirements.txt, tests/, wheelhouse/ (at least one wheel: ours holds
the result check) and, beside them, bundle/ with the files the phone gets.
"""

from __future__ import annotations

import shlex
import zipfile
from pathlib import Path

import yaml

from edgevlm.device_tests.farms import farm_check

REGION = "us-west-2"  # the only region Device Farm runs in
TEST_TYPE = "APPIUM_WEB_PYTHON"
DEVICE_ROOT = "/data/local/tmp/edgevlm"
ADB = 'adb -s "$DEVICEFARM_DEVICE_UDID"'
PKG = '"$DEVICEFARM_TEST_PACKAGE_PATH"'
LOGS = '"$DEVICEFARM_LOG_DIR"'
# The bundle's tools are a cross build: they start through the bundled glibc loader.
LOADER = ["./bin/ld-linux-aarch64.so.1", "--library-path", "bin/lib"]
# The battery's power_supply folder (the sampler's --root), found on the phone as AdbDevice finds it.
FIND_BATTERY = ('root=""; for d in /sys/class/power_supply/*; do '
                'if [ "$(cat "$d/type" 2>/dev/null)" = Battery ]; then root="$d"; break; fi; done')


def device_scripts(folder: str, args: list[str], hz: int = 10, idle_s: float = 5.0) -> dict[str, str]:
    """The sh lines run on the phone (Android's sh), each one `adb shell` argument: idle power
    first (the baseline subtracted from every phase), then the sampler beside the benchmark."""
    q = shlex.quote(folder)
    sampler = shlex.join([*LOADER, "./bin/edgevlm-power-sampler", "--hz", str(hz)])
    return {
        "idle_power": f'cd {q} || exit 1; {FIND_BATTERY}; {sampler} --root "$root" --duration {idle_s:g} '
                      f'--out idle.csv',
        "start_sampler": (f'cd {q} || exit 1; {FIND_BATTERY}; '
                          f'nohup {sampler} --root "$root" --out power.csv > sampler.log 2>&1 & echo $! > sampler.pid'),
        "bench": f"cd {q} && {shlex.join([*LOADER, './bin/edgevlm-bench', *args])}",
        "stop_sampler": f'cd {q} && kill "$(cat sampler.pid)"',
    }


def test_spec(digest: str, args: list[str], hz: int = 10, json_name: str = "bench.json") -> dict:
    """The custom-environment test spec (version 0.1) as a dict; `spec_yaml` writes it."""
    folder = f"{DEVICE_ROOT}/{digest}"
    on_phone = {k: f"{ADB} shell {shlex.quote(v)}" for k, v in device_scripts(folder, args, hz).items()}
    return {
        "version": 0.1,
        "android_test_host": "amazon_linux_2",
        "phases": {
            "install": {"commands": [
                f"python3 -m pip install --user --no-index --find-links {PKG}/wheelhouse -r {PKG}/requirements.txt"]},
            "pre_test": {"commands": [
                f"{ADB} shell mkdir -p {folder}",
                f"{ADB} push {PKG}/bundle/bin {PKG}/bundle/artifacts {PKG}/bundle/inputs {folder}/",
                f"{ADB} shell chmod -R 755 {folder}/bin",
                f"{ADB} shell getprop > {LOGS}/getprop.txt",
                f"{on_phone['idle_power']} || true",
                on_phone["start_sampler"]]},
            "test": {"commands": [
                on_phone["bench"],
                f"{ADB} pull {folder}/{json_name} {LOGS}/{json_name}",
                f"python3 -m edgevlm_farm_check {LOGS}/{json_name}"]},
            "post_test": {"commands": [
                f"{on_phone['stop_sampler']} || true",
                f"{ADB} pull {folder}/power.csv {LOGS}/power.csv || true",
                f"{ADB} pull {folder}/idle.csv {LOGS}/idle.csv || true",
                f"{ADB} pull {folder}/sampler.log {LOGS}/sampler.log || true",
                f"{ADB} shell rm -rf {folder}"]},  # a farm phone is shared: leave nothing behind
        },
        "artifacts": ["$DEVICEFARM_LOG_DIR"],
    }


def spec_yaml(spec: dict) -> str:
    return yaml.safe_dump(spec, sort_keys=False, width=10_000)


def test_package(bundle_files: dict[str, Path], out: Path) -> Path:
    """The test package zip: requirements.txt, tests/, wheelhouse/ (the result check's wheel) and
    bundle/<path> for each bundle file (bin/..., artifacts/..., inputs/...)."""
    out = Path(out)
    wheel_name, wheel_bytes = farm_check.wheel()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("requirements.txt", f"{farm_check.NAME}=={farm_check.VERSION}\n")
        z.writestr("tests/test_edgevlm_result.py", farm_check.TEST_FILE)
        z.writestr(f"wheelhouse/{wheel_name}", wheel_bytes)
        for rel, path in sorted(bundle_files.items()):
            z.write(path, f"bundle/{rel}")  # streamed; the file mode is kept, so the tools stay executable
    return out


def devicefarm_client(region: str = REGION):
    """A boto3 Device Farm client, or a MissingTool naming what is missing (boto3, credentials)."""
    import importlib.util

    from edgevlm.backends.aihub import install_hint
    from edgevlm.backends.base import MissingTool

    if importlib.util.find_spec("boto3") is None:
        raise MissingTool("AWS Device Farm needs boto3, which is not installed", install_hint())
    import boto3

    session = boto3.Session(region_name=region)
    if session.get_credentials() is None:
        raise MissingTool("no AWS credentials: none in the environment, ~/.aws/credentials, ~/.aws/config or "
                          "an instance role", "run `aws configure` (or `aws sso login --profile P` and export "
                          "AWS_PROFILE=P), or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    return session.client("devicefarm")


def upload(client, project_arn: str, path: Path, kind: str, poll_s: float = 5.0, timeout_s: float = 900) -> str:
    """create_upload, PUT the file to its presigned URL, wait until Device Farm has processed it."""
    import time
    import urllib.request

    from edgevlm.backends.base import BackendError

    created = client.create_upload(projectArn=project_arn, name=Path(path).name, type=kind,
                                   contentType="application/octet-stream")["upload"]
    with open(path, "rb") as f:
        request = urllib.request.Request(created["url"], data=f, method="PUT",
                                         headers={"Content-Type": "application/octet-stream",
                                                  "Content-Length": str(Path(path).stat().st_size)})
        urllib.request.urlopen(request, timeout=600).close()
    deadline = time.monotonic() + timeout_s
    while True:
        state = client.get_upload(arn=created["arn"])["upload"]
        if state["status"] == "SUCCEEDED":
            return created["arn"]
        if state["status"] == "FAILED" or time.monotonic() > deadline:
            raise BackendError(f"Device Farm rejected the {kind} upload {Path(path).name}: "
                               f"{state.get('metadata') or state.get('message') or state['status']}",
                               "check the package layout (requirements.txt, tests/, wheelhouse/) and the spec's YAML")
        time.sleep(poll_s)


def submit(project_arn: str, spec: dict, bundle_zip: Path, device_pool_arn: str | None = None,
           name: str = "edgevlm device-bench", work: Path | None = None, client=None) -> dict:
    """Upload the package and spec, schedule the run on the pool (default: the project's first
    pool), return {"run_arn", "url"}. `wait_run` follows it."""
    import tempfile

    from edgevlm.backends.base import BackendError

    client = client or devicefarm_client()
    if device_pool_arn is None:
        pools = client.list_device_pools(arn=project_arn)["devicePools"]
        if not pools:
            raise BackendError(f"project {project_arn} has no device pool", "create one in the Device Farm console "
                               "or pass a device pool ARN")
        device_pool_arn = pools[0]["arn"]
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        spec_path = Path(tmp) / "edgevlm-testspec.yml"
        spec_path.write_text(spec_yaml(spec))
        package_arn = upload(client, project_arn, bundle_zip, f"{TEST_TYPE}_TEST_PACKAGE")
        spec_arn = upload(client, project_arn, spec_path, f"{TEST_TYPE}_TEST_SPEC")
    run = client.schedule_run(projectArn=project_arn, devicePoolArn=device_pool_arn, name=name,
                              test={"type": TEST_TYPE, "testPackageArn": package_arn, "testSpecArn": spec_arn})["run"]
    return {"run_arn": run["arn"], "status": run["status"], "device_pool_arn": device_pool_arn}


def wait_run(client, run_arn: str, poll_s: float = 30.0) -> dict:
    """get_run until COMPLETED; the run's result and counters (the artifacts are listed by list_artifacts)."""
    import time

    while True:
        run = client.get_run(arn=run_arn)["run"]
        if run["status"] == "COMPLETED":
            return {"run_arn": run_arn, "result": run.get("result"), "counters": run.get("counters", {})}
        time.sleep(poll_s)
