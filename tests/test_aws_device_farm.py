"""AWS Device Farm up to the network boundary: the test spec (YAML, bash and sh syntax, shellcheck),
the test package (layout, the result-check wheel installed by pip and run), and the boto3 check.
boto3 is not installed here: the submission itself is not exercised."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest
import yaml

from edgevlm.backends.base import MissingTool
from edgevlm.device_tests.device_bench import DeviceBenchPlan, bench_options
from edgevlm.device_tests.farms import aws_device_farm as adf
from edgevlm.device_tests.farms import edgevlm_farm_check

DIGEST = "0123456789abcdef"
PROMPT = "What's in the image? Say it in 'one' line; $HOME stays literal."


def _args(contexts):
    """edgevlm-bench's arguments as device-bench passes them, relative to the bundle folder."""
    return bench_options(DeviceBenchPlan(prompt=PROMPT, contexts=tuple(contexts)), "", "bench.json")


def _spec():
    return adf.test_spec(DIGEST, _args([128, 1024]))


def test_spec_is_the_documented_yaml_shape():
    text = adf.spec_yaml(_spec())
    spec = yaml.safe_load(text)
    assert spec == _spec() and spec["version"] == 0.1 and spec["android_test_host"] == "amazon_linux_2"
    assert list(spec["phases"]) == ["install", "pre_test", "test", "post_test"]
    assert spec["artifacts"] == ["$DEVICEFARM_LOG_DIR"]
    joined = "\n".join(c for p in spec["phases"].values() for c in p["commands"])
    assert f"/data/local/tmp/edgevlm/{DIGEST}" in joined and 'adb -s "$DEVICEFARM_DEVICE_UDID"' in joined
    assert '"$DEVICEFARM_LOG_DIR"/bench.json' in joined and '"$DEVICEFARM_LOG_DIR"/power.csv' in joined
    assert '"$DEVICEFARM_LOG_DIR"/idle.csv' in joined and "--duration 5 --out idle.csv" in joined


def _phase_scripts(tmp_path):
    paths = []
    for name, phase in _spec()["phases"].items():
        path = tmp_path / f"{name}.sh"
        path.write_text("#!/bin/bash\n" + "\n".join(phase["commands"]) + "\n")
        paths.append(path)
    return paths


def test_phase_commands_are_valid_bash_and_pass_shellcheck(tmp_path):
    """-S warning: shellcheck's only notes are SC2016 (info) on the single-quoted phone-side lines,
    whose $ must expand on the phone, not on the farm host."""
    for path in _phase_scripts(tmp_path):
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, (path.name, proc.stderr)
        if shutil.which("shellcheck"):
            proc = subprocess.run(["shellcheck", "-s", "bash", "-S", "warning", str(path)], capture_output=True, text=True)
            assert proc.returncode == 0, (path.name, proc.stdout)


def test_phone_side_lines_are_valid_sh_and_keep_the_prompt_one_argument(tmp_path):
    scripts = adf.device_scripts(f"/data/local/tmp/edgevlm/{DIGEST}", _args([128]))
    for name, line in scripts.items():
        path = tmp_path / f"{name}.sh"
        path.write_text("#!/bin/sh\n" + line + "\n")
        assert subprocess.run(["sh", "-n", str(path)]).returncode == 0, name
        if shutil.which("shellcheck"):
            proc = subprocess.run(["shellcheck", "-s", "sh", "-S", "warning", str(path)], capture_output=True, text=True)
            assert proc.returncode == 0, (name, proc.stdout)
    # the outer bash line hands the inner line to `adb shell` as one argument, unchanged
    outer = next(c for c in _spec()["phases"]["test"]["commands"] if "edgevlm-bench" in c)
    argv = subprocess.run(["bash", "-c", 'printf "%s\\0" ' + outer.split(" shell ", 1)[1]], capture_output=True).stdout
    inner = argv.rstrip(b"\0").decode()
    assert inner == adf.device_scripts(f"/data/local/tmp/edgevlm/{DIGEST}", _args([128, 1024]))["bench"]
    # and sh on the phone splits it into edgevlm-bench's argv with the prompt whole
    words = subprocess.run(["sh", "-c", 'f() { shift 4; printf "%s\\0" "$@"; }; ' + inner.split(" && ", 1)[1].replace(
        "./bin/ld-linux-aarch64.so.1", "f", 1)], capture_output=True).stdout.rstrip(b"\0").split(b"\0")
    assert words[words.index(b"--prompt") + 1].decode() == PROMPT


def test_package_layout_and_its_wheel_installs_and_checks(tmp_path):
    tool = tmp_path / "edgevlm-bench"
    tool.write_bytes(b"\x7fELF")
    tool.chmod(0o755)
    (tmp_path / "manifest.json").write_text("{}")
    package = adf.test_package({"bin/edgevlm-bench": tool, "artifacts/manifest.json": tmp_path / "manifest.json"},
                               tmp_path / "package.zip")
    with zipfile.ZipFile(package) as z:
        names = set(z.namelist())
        assert {"requirements.txt", "tests/test_edgevlm_result.py", "bundle/bin/edgevlm-bench",
                "bundle/artifacts/manifest.json", "wheelhouse/edgevlm_farm_check-1.0-py3-none-any.whl"} == names
        assert stat.S_IMODE(z.getinfo("bundle/bin/edgevlm-bench").external_attr >> 16) == 0o755
        assert z.read("requirements.txt") == b"edgevlm_farm_check==1.0\n"
        z.extractall(tmp_path / "unzipped")
    # the install phase's pip command, offline, from the package's wheelhouse
    unzipped, target = tmp_path / "unzipped", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--target", str(target),
                    "--find-links", str(unzipped / "wheelhouse"), "-r", str(unzipped / "requirements.txt")], check=True)
    good, bad = tmp_path / "bench.json", tmp_path / "cut.json"
    good.write_text(json.dumps({"schema": "urn:edgevlm:device-bench-result:1", "phases": []}))
    bad.write_text('{"schema": "urn:edgevlm:device-bench-result:1", "pha')
    env = os.environ | {"PYTHONPATH": str(target)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "edgevlm_farm_check", *a], env=env, capture_output=True,
                                    text=True, cwd=tmp_path)
    assert run(str(good)).returncode == 0
    cut = run(str(bad))
    assert cut.returncode == 1 and "is not JSON (edgevlm-bench stopped while writing?)" in cut.stderr
    tests = subprocess.run([sys.executable, str(unzipped / "tests" / "test_edgevlm_result.py"), str(good)], env=env)
    assert tests.returncode == 0


def test_result_check_reasons(tmp_path):
    assert edgevlm_farm_check.check(tmp_path / "none.json").startswith("no edgevlm-bench result at ")
    other = tmp_path / "other.json"
    other.write_text('{"schema": "edgevlm.bench/2"}')
    assert edgevlm_farm_check.check(other) == f"{other} is not an edgevlm-bench result (schema 'edgevlm.bench/2')"
    assert edgevlm_farm_check.main([]) == 1  # nothing to check is not a pass


def test_missing_boto3_names_the_install(monkeypatch):
    assert importlib.util.find_spec("boto3") is None, "this test checks the real missing import"
    with pytest.raises(MissingTool, match="AWS Device Farm needs boto3, which is not installed") as err:
        adf.devicefarm_client()
    assert err.value.exit_code == 3 and "[farm]" in err.value.fix
