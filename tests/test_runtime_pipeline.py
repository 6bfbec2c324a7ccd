"""The native runtime end to end (runtime/src/pipeline.cpp, edgevlm-runner --artifacts, the C API)
against `edgevlm run` (export/run.py ArtifactRunner) on the same folders: the same prompt ids as
edgevlm.preprocess for every MiniCPM-V version, the same generated tokens with the ONNX vision
artifact (ONNX Runtime's C API) and with the .pte's own vision_encoder, for fp32 weights and the
recipes' INT4 decoder; the aarch64 build under qemu the same as the host's; every refusal a clear
message and exit status 1, never a crash."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from tests.runtime_helpers import CROSS_TOOLS, build, folders, images, python_run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

PRESETS = ("minicpmv-2.5-tiny", "minicpmv-2.6-tiny", "minicpmv-4.0-tiny", "minicpmv-4.5-tiny")
# the ios-m4 / android-sd8g3 decoder (8da4w AWQ weights, int4 embedding, INT4 cache, our kernels)
INT4_DECODER = {"backend": "executorch", "weights": "8da4w", "group_size": 32, "weight_calibration": "awq",
                "embedding": "int4", "kv_cache": "int4", "kv_group_size": "auto", "attention": "custom",
                "max_seq_len": 1536}
QUESTIONS = ("What is in the picture?", "  Describe it,\n then stop.  ", "这是什么？ 写一句话 🙂")
SCHEMA = json.loads((Path(__file__).parents[1] / "runtime" / "schemas" / "runner_result.schema.json").read_text())


def native(build: Path, folder: Path, ppms: list[Path], question: str, tmp_path: Path, *extra: str,
           argv: list[str] | None = None) -> tuple[dict, str]:
    out = tmp_path / "result.json"
    args = list(argv or [str(build / "edgevlm-runner")]) + ["--artifacts", str(folder), "--prompt", question,
                                                           "--max-new-tokens", "12", "--json", str(out), *extra]
    for ppm in ppms:
        args += ["--image", str(ppm)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    jsonschema.validate(result, SCHEMA)
    return result, proc.stdout


@pytest.mark.parametrize("preset", PRESETS)
def test_prompt_ids_match_preprocess(build, folders, preset):
    """The prompt the runtime assembles from prompt.assembly = edgevlm.preprocess's, id for id."""
    from edgevlm.config import MiniCPMVConfig
    from edgevlm.preprocess import preprocess
    from edgevlm.tokenizer import load_tokenizer

    folder = folders(preset)
    manifest = json.loads((folder / "manifest.json").read_text())
    config = MiniCPMVConfig.from_dict(manifest["config"], source=str(folder))
    tokenizer = load_tokenizer(folder / "tokenizer")
    norm = {k: manifest["preprocessing"][k] for k in ("norm_mean", "norm_std")}
    for question in QUESTIONS + ("", "\u3000 ideographic space around \u00a0"):
        for sizes in ([], [(448, 448)], [(1000, 600), (17, 23)], [(3000, 200)]):
            expected = preprocess([Image.new("RGB", s) for s in sizes], question, tokenizer, config, norm)
            args = [str(build / "edgevlm-prompt-dump"), "--artifacts", str(folder), "--question", question]
            for grid in expected.grids:
                args += ["--grid", "none" if grid is None else f"{grid[0]}x{grid[1]}"]
            proc = subprocess.run(args, capture_output=True, text=True, check=True)
            got = json.loads(proc.stdout)
            assert got["prompt"] == expected.prompt, (question, sizes)
            assert got["ids"] == expected.input_ids.tolist(), (question, sizes)
            assert got["bounds"] == expected.image_bounds.reshape(-1).tolist(), (question, sizes)


@pytest.mark.parametrize("preset", PRESETS)
def test_same_tokens_as_edgevlm_run(build, folders, images, preset, tmp_path):
    """ONNX vision through ORT's C API, then the .pte's vision_encoder: the tokens of `edgevlm run`."""
    folder = folders(preset)
    special = json.loads((folder / "manifest.json").read_text())["special_tokens"]
    cases = [(["448x448"], QUESTIONS[0]), (["1000x600", "17x23"], QUESTIONS[2]), ([], QUESTIONS[1])]
    for names, question in cases:
        pngs, ppms = [images[n][0] for n in names], [images[n][1] for n in names]
        for vision in ("auto", "pte"):
            expected = python_run(folder, pngs, question, vision)
            got, stdout = native(build, folder, ppms, question, tmp_path, "--vision", vision)
            assert got["tokens"] == expected.tokens, (names, question, vision)
            assert got["stopped_by"] == expected.stopped_by
            assert got["text"] == expected.text
            assert stdout == got["text"] + "\n"  # the streamed pieces add up to the text
            openings = {special[t] for t in ("<image>", "<slice>")}
            assert got["stats"]["vision_slices"] == sum(i in openings for i in got["prompt_ids"])
            assert got["stats"]["prompt_tokens"] == expected.prompt_tokens == len(got["prompt_ids"])


def test_recipe_int4_decoder_same_tokens(build, folders, images, tmp_path):
    """The recipes' decoder (8da4w AWQ weights, int4 embeddings, INT4 cache with our kernels)."""
    folder = folders("minicpmv-2.6-tiny", INT4_DECODER)
    for names, question in ((["448x448"], QUESTIONS[0]), (["1000x600"], QUESTIONS[1])):
        expected = python_run(folder, [images[n][0] for n in names], question)
        got, _ = native(build, folder, [images[n][1] for n in names], question, tmp_path)
        assert got["tokens"] == expected.tokens
        assert "onnx" in got["stats"]["vision_runtime"].lower()


def test_aarch64_build_matches_host(runtime_home, build, folders, images, tmp_path):
    missing = [tool for tool in CROSS_TOOLS if not shutil.which(tool)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/system-deps.sh installs them from Debian)")
    from edgevlm.runtime.build import build_runtime
    from edgevlm.runtime.bundle import command

    bundle = build_runtime("aarch64-linux", home=runtime_home)
    folder = folders("minicpmv-2.6-tiny")
    ppms = [images["448x448"][1]]
    for vision in ("auto", "pte"):
        host, _ = native(build, folder, ppms, QUESTIONS[0], tmp_path, "--vision", vision)
        arm, _ = native(build, folder, ppms, QUESTIONS[0], tmp_path, "--vision", vision,
                        argv=command(bundle, "edgevlm-runner", "qemu-aarch64"))
        assert arm["tokens"] == host["tokens"], vision
        assert arm["prompt_ids"] == host["prompt_ids"]


def test_c_api_rgba_and_rgb(build, folders, images, tmp_path):
    """The C API from a C program: RGBA pixels (alpha dropped) give the runner's tokens; an unknown
    pixel format is refused with the fix."""
    folder = folders("minicpmv-2.6-tiny")
    png, ppm = images["1000x600"]
    rgb = np.asarray(Image.open(png).convert("RGB"))
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 77, np.uint8)], axis=-1)
    (tmp_path / "rgba.raw").write_bytes(rgba.tobytes())
    demo = str(build / "edgevlm-c-api-demo")
    proc = subprocess.run([demo, str(folder), QUESTIONS[0], str(tmp_path / "rgba.raw"), "1000", "600", "rgba"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    jsonschema.validate(result, SCHEMA)
    runner, _ = native(build, folder, [ppm], QUESTIONS[0], tmp_path, "--max-new-tokens", "8")
    assert result["tokens"] == runner["tokens"]
    bad = subprocess.run([demo, str(folder), QUESTIONS[0], str(tmp_path / "rgba.raw"), "1000", "600", "7"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "error 3:" in bad.stderr and "EDGEVLM_PIXELS_RGB8" in bad.stderr


def refused(build: Path, args: list[str]) -> str:
    proc = subprocess.run([str(build / "edgevlm-runner"), *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)  # a refusal, not a crash (signals are < 0)
    assert proc.stderr.startswith("error: "), proc.stderr
    return proc.stderr


def test_refusals(build, folders, images, tmp_path):
    source = folders("minicpmv-2.6-tiny")
    folder = tmp_path / "copy"
    shutil.copytree(source, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    pte = next(a["file"] for a in manifest["artifacts"] if a["part"] == "decoder")
    ppm = str(images["448x448"][1])
    ask = ["--artifacts", str(folder), "--prompt", "hi", "--image", ppm]

    data = bytearray((folder / pte).read_bytes())  # tampered: one byte flipped, same size
    data[len(data) // 2] ^= 0xFF
    (folder / pte).write_bytes(bytes(data))
    message = refused(build, ask)
    assert pte in message and "sha256" in message and "re-export" in message
    (folder / pte).unlink()
    assert "is missing" in refused(build, ask)
    shutil.copy(source / pte, folder / pte)

    for version, fix in ((3, "release that wrote it"), (1, "re-export")):
        (folder / "manifest.json").write_text(json.dumps(manifest | {"schema_version": version}))
        assert f"schema_version {version}" in (message := refused(build, ask)) and fix in message
    (folder / "manifest.json").write_text("{not json")
    assert "not valid JSON" in refused(build, ask)
    shutil.copy(source / "manifest.json", folder / "manifest.json")

    long_question = "word " * 2000  # past the 1536-position cache
    assert "the decoder's cache holds 1536" in refused(build, ["--artifacts", str(folder), "--prompt", long_question])

    raw = tmp_path / "rgba.raw"
    raw.write_bytes(bytes(20 * 10 * 4))
    assert "4 bytes per pixel" in refused(build, ["--artifacts", str(folder), "--prompt", "hi", "--rgb", f"{raw},20,10"])
    Image.new("L", (8, 8)).save(tmp_path / "gray.pgm")
    assert "grayscale (P5)" in refused(build, ["--artifacts", str(folder), "--prompt", "hi",
                                               "--image", str(tmp_path / "gray.pgm")])
    assert "image mark" in refused(build, ask[:3] + ["(<image>./</image>) what?", "--image", ppm])
    assert "vision_encoder" in refused(build, ["--artifacts", str(folders("minicpmv-2.6-tiny", INT4_DECODER)),
                                               "--prompt", "hi", "--vision", "pte"])
