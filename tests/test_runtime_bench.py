"""The device benchmark's native tools (issue 18): edgevlm-bench on tiny exports against `edgevlm
run` and its JSON Schema, and edgevlm-power-sampler reading a folder of real files the test rewrites
while it runs; both again from the aarch64 bundle under qemu."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import jsonschema
import pytest
import referencing
from PIL import Image

from tests.runtime_helpers import CROSS_TOOLS, FP32_DECODER, build, folders, images, python_run  # noqa: F401

pytestmark = pytest.mark.slow

SCHEMAS = Path(__file__).parents[1] / "runtime" / "schemas"
BENCH_SCHEMA = json.loads((SCHEMAS / "device_bench_result.schema.json").read_text())
REGISTRY = referencing.Registry().with_resource(
    "urn:edgevlm:runner-result:1",
    referencing.Resource.from_contents(json.loads((SCHEMAS / "runner_result.schema.json").read_text())))
QUESTION = "What is in the picture?"
PRESET = "minicpmv-2.6-tiny"  # FP32_DECODER: max_seq_len 1536


def bench(argv: list[str], folder: Path, out: Path, *extra: str) -> dict:
    proc = subprocess.run([*argv, "--artifacts", str(folder), "--json", str(out), *extra],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    jsonschema.Draft202012Validator(BENCH_SCHEMA, registry=REGISTRY).validate(result)
    return result


def check_phases(result: dict, expected_names: list[str]) -> None:
    phases = result["phases"]
    assert [p["name"] for p in phases] == expected_names
    for phase in phases:
        assert phase["start_ns"] <= phase["end_ns"], phase
    for before, after in zip(phases, phases[1:]):
        assert before["end_ns"] <= after["start_ns"], (before, after)  # in order, never overlapping


def largest_slice(folder: Path, png: Path) -> tuple[int, int]:
    """(h, w) in patches of the image's largest slice, as edgevlm.preprocess slices it."""
    from edgevlm.config import MiniCPMVConfig
    from edgevlm.preprocess import preprocess
    from edgevlm.tokenizer import load_tokenizer

    manifest = json.loads((folder / "manifest.json").read_text())
    config = MiniCPMVConfig.from_dict(manifest["config"], source=str(folder))
    norm = {k: manifest["preprocessing"][k] for k in ("norm_mean", "norm_std")}
    sizes = preprocess([Image.open(png).convert("RGB")], QUESTION, load_tokenizer(folder / "tokenizer"), config,
                       norm).tgt_sizes.tolist()
    return tuple(max(sizes, key=lambda s: s[0] * s[1]))


def test_bench_matches_edgevlm_run(build, folders, images, tmp_path):
    folder = folders(PRESET)
    png, ppm = images["1000x600"]
    result = bench([str(build / "edgevlm-bench")], folder, tmp_path / "bench.json", "--image", str(ppm),
                   "--prompt", QUESTION, "--contexts", "8,16,1533", "--runs", "3", "--warmup", "1",
                   "--decode-tokens", "5", "--max-new-tokens", "12")
    expected = python_run(folder, [png], QUESTION, max_new_tokens=12)
    assert result["e2e"]["tokens"] == expected.tokens
    assert result["e2e"]["text"] == expected.text
    assert result["e2e"]["stats"]["vision_slices"] > 1  # 1000x600 is sliced: the largest slice is a choice
    check_phases(result, ["load", "vision_cold", "vision_warm", "e2e", "prefill:8", "decode:8", "prefill:16",
                          "decode:16"])
    counts = {p["name"]: (p["count"], p["unit"]) for p in result["phases"]}
    assert counts["vision_warm"] == (3, "image") and counts["prefill:16"] == (16, "token")
    assert counts["decode:8"] == (5, "token") and counts["e2e"] == (len(expected.tokens), "token")

    vision = result["vision"]
    h, w = largest_slice(folder, png)
    assert vision["slice"] == {"height": h, "width": w, "patches": h * w}
    assert "onnx" in vision["runtime"].lower() and len(vision["warm_ms"]) == 3 and vision["warmup"] == 1
    assert result["load"]["vision_ms"] > 0 and result["load"]["decoder_ms"] > 0
    assert result["load"]["total_ms"] >= result["load"]["decoder_ms"] + result["load"]["vision_ms"]

    decoder = result["decoder"]
    assert decoder["max_seq_len"] == FP32_DECODER["max_seq_len"] and decoder["decode_tokens"] == 5
    for length in (8, 16):
        context = decoder["contexts"][str(length)]
        assert context["prefill_tokens"] == length and len(context["decode_ms"]) == 5
        assert context["ttft_ms"] >= context["prefill_ms"] > 0
    assert decoder["contexts"]["1533"] == {  # 1533 + 5 > 1536
        "unavailable": "context 1533 + 5 decode tokens exceeds the program's max_seq_len 1536"}
    assert result["peak_rss_bytes"] > 0 and result["threads"] >= 1


def test_bench_decoder_only_export(build, folders, images, tmp_path):
    """No vision encoder: vision and its load time carry the pipeline's reason; the text parts run
    (e2e on the prompt alone, the image left out)."""
    decoder = {k: v for k, v in FP32_DECODER.items() if k != "vision_in_pte"}
    folder = folders(PRESET, decoder, vision=[])
    result = bench([str(build / "edgevlm-bench")], folder, tmp_path / "bench.json", "--prompt", QUESTION,
                   "--image", str(images["448x448"][1]), "--contexts", "8", "--decode-tokens", "3",
                   "--max-new-tokens", "6")
    reason = "the folder has no vision encoder (exported with --part decoder?)"
    assert result["vision"] == {"unavailable": reason} and result["load"]["vision_ms"] == {"unavailable": reason}
    assert result["e2e"]["tokens"] == python_run(folder, [], QUESTION, max_new_tokens=6).tokens
    check_phases(result, ["load", "e2e", "prefill:8", "decode:8"])


def test_bench_names_why_each_vision_artifact_cannot_run_here(build, folders, images, tmp_path):
    """A Core ML encoder only (an ios recipe's vision part) on a Linux build: the reason names the
    package and what it needs, and the .pte's missing vision_encoder, instead of blaming ORT."""
    decoder = {k: v for k, v in FP32_DECODER.items() if k != "vision_in_pte"}
    folder = folders(PRESET, decoder, vision=[{"backend": "coreml", "precision": "fp16", "max_patches": 1120}])
    result = bench([str(build / "edgevlm-bench")], folder, tmp_path / "bench.json", "--prompt", QUESTION,
                   "--image", str(images["448x448"][1]), "--contexts", "8", "--decode-tokens", "2",
                   "--max-new-tokens", "2")
    package = next(p.name for p in folder.iterdir() if p.suffix == ".mlpackage")
    pte = next(p.name for p in folder.iterdir() if p.suffix == ".pte")
    assert result["vision"] == {"unavailable": f"{package} needs Core ML (an Apple build: runtime/platforms/apple); "
                                               f"and {pte} has no vision_encoder method"}


def test_bench_refusals(build, folders, tmp_path):
    tool = str(build / "edgevlm-bench")
    folder = str(folders(PRESET))
    base = [tool, "--artifacts", folder, "--prompt", "hi", "--json", str(tmp_path / "out.json")]
    for extra, flag in ((["--runs", "x"], "--runs"), (["--contexts", "8,0"], "--contexts"),
                        (["--decode-tokens", "0"], "--decode-tokens"), (["--warmup"], "--warmup"),
                        (["--frobnicate", "1"], "--frobnicate")):
        proc = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and flag in proc.stderr, (extra, proc.stderr)
    proc = subprocess.run(base[:5], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--json" in proc.stderr
    proc = subprocess.run([tool, "--artifacts", str(tmp_path / "nothing"), *base[3:]], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "nothing" in proc.stderr
    assert not (tmp_path / "out.json").exists()


# ---- edgevlm-power-sampler ------------------------------------------------------------------------

def battery(folder: Path, current: str = "100000", voltage: str = "3900000", status: str = "Discharging") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("current_now", current), ("voltage_now", voltage), ("status", status)):
        (folder / name).write_text(text + "\n")
    return folder


def samples(text: str) -> tuple[str, list[list[str]]]:
    header, *lines = text.splitlines()
    return header, [line.split(",") for line in lines]


def test_power_sampler_rate_clock_and_changing_values(build, tmp_path):
    root = battery(tmp_path / "battery")
    written, done = ["100000"], threading.Event()

    def rewrite():  # in place, same length: the sampler keeps its descriptors open
        fd = os.open(root / "current_now", os.O_WRONLY)
        for i in range(1, 1000):
            if done.wait(0.1):
                break
            written.append(str(100000 + 1111 * i))
            os.pwrite(fd, (written[-1] + "\n").encode(), 0)
        os.close(fd)

    writer = threading.Thread(target=rewrite)
    before = time.monotonic_ns()  # CLOCK_MONOTONIC, as the sampler's stamps
    writer.start()
    try:
        proc = subprocess.run([str(build / "edgevlm-power-sampler"), "--root", str(root), "--hz", "20",
                               "--duration", "1"], capture_output=True, text=True, timeout=30)
    finally:
        done.set()
        writer.join()
    after = time.monotonic_ns()
    assert proc.returncode == 0, proc.stderr
    header, rows = samples(proc.stdout)
    assert header == f"# edgevlm-power-sampler 1 clock=CLOCK_MONOTONIC root={root} hz=20"
    assert 17 <= len(rows) <= 21, len(rows)  # 20 Hz over 1 s
    stamps = [int(r[0]) for r in rows]
    assert before <= stamps[0] and stamps[-1] <= after
    gaps = [(b - a) / 1e6 for a, b in zip(stamps, stamps[1:])]
    assert all(g > 0 for g in gaps) and 45 <= sorted(gaps)[len(gaps) // 2] <= 55, gaps
    assert (stamps[-1] - stamps[0]) / 1e6 == pytest.approx(50 * (len(rows) - 1), abs=25)  # no drift
    currents = [r[1] for r in rows]
    assert set(currents) <= set(written) and len(set(currents)) >= 5  # what the files held, as they changed
    assert {tuple(r[2:]) for r in rows} == {("3900000", "Discharging")}  # trimmed, as read


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_power_sampler_stops_cleanly_on_signal(build, tmp_path, sig):
    root = battery(tmp_path / "battery", status="Charging")
    out = tmp_path / "power.csv"
    proc = subprocess.Popen([str(build / "edgevlm-power-sampler"), "--root", str(root), "--hz", "50", "--out",
                             str(out)], stderr=subprocess.PIPE, text=True)
    time.sleep(0.6)
    proc.send_signal(sig)
    assert proc.wait(timeout=10) == 0, proc.stderr.read()
    text = out.read_text()
    assert text.endswith("\n")
    _, rows = samples(text)
    assert len(rows) >= 10 and all(len(r) == 4 and r[1:] == ["100000", "3900000", "Charging"] for r in rows)


def test_power_sampler_refusals(build, tmp_path):
    tool = str(build / "edgevlm-power-sampler")
    proc = subprocess.run([tool, "--root", str(tmp_path / "absent"), "--duration", "0.1"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 3 and proc.stdout == ""
    assert proc.stderr == (f"error: cannot read {tmp_path / 'absent'}/current_now: No such file or directory; the "
                           "battery's power_supply folder differs on this device: pass --root "
                           "(ls /sys/class/power_supply)\n")
    root = battery(tmp_path / "battery")
    (root / "status").unlink()
    (root / "status").mkdir()  # opens, but reading fails (EISDIR)
    proc = subprocess.run([tool, "--root", str(root), "--duration", "0.1"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3 and "cannot read" in proc.stderr and "Is a directory" in proc.stderr
    for args, flag in ((["--hz", "0.5"], "--hz"), (["--hz", "fast"], "--hz"), (["--duration", "-2"], "--duration"),
                       (["--root"], "--root")):
        proc = subprocess.run([tool, *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and flag in proc.stderr, (args, proc.stderr)


# ---- the aarch64 bundle ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundle(runtime_home) -> Path:
    missing = [tool for tool in CROSS_TOOLS if not shutil.which(tool)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/system-deps.sh installs them from Debian)")
    from edgevlm.runtime.build import build_runtime

    return build_runtime("aarch64-linux", home=runtime_home)


def test_aarch64_bundle_runs_both_tools(build, bundle, folders, images, tmp_path):
    from edgevlm.runtime.bundle import command

    assert {"edgevlm-bench", "edgevlm-power-sampler"} <= {p.name for p in bundle.iterdir()}
    folder = folders(PRESET)
    tiny = ("--image", str(images["448x448"][1]), "--prompt", QUESTION, "--contexts", "8,1600", "--runs", "1",
            "--warmup", "0", "--decode-tokens", "2", "--max-new-tokens", "4")
    arm = bench(command(bundle, "edgevlm-bench", "qemu-aarch64"), folder, tmp_path / "arm.json", *tiny)
    host = bench([str(build / "edgevlm-bench")], folder, tmp_path / "host.json", *tiny)
    assert arm["e2e"]["tokens"] == host["e2e"]["tokens"] and arm["vision"]["slice"] == host["vision"]["slice"]
    check_phases(arm, ["load", "vision_cold", "vision_warm", "e2e", "prefill:8", "decode:8"])
    assert "unavailable" in arm["decoder"]["contexts"]["1600"]

    root = battery(tmp_path / "battery")
    proc = subprocess.run([*command(bundle, "edgevlm-power-sampler", "qemu-aarch64"), "--root", str(root),
                           "--hz", "20", "--duration", "0.5"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    header, rows = samples(proc.stdout)
    assert header.startswith("# edgevlm-power-sampler 1 clock=CLOCK_MONOTONIC") and 7 <= len(rows) <= 11
    assert all(r[1:] == ["100000", "3900000", "Discharging"] for r in rows)
