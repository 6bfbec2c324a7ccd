"""The native runtime's preprocessing (runtime/src) against Pillow and edgevlm.preprocess: resizes
bit-exact with Pillow's BICUBIC, and for every image the same slice plan, tgt sizes, float32 patch
rows and position ids, bit for bit."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from edgevlm.preprocess import image_slices, navit_position_ids

# the sizes the issue names, plus odd, tiny, elongated and random ones
IMAGE_SIZES = [(1, 4000), (4000, 1), (17, 23), (448, 448), (1344, 1344), (3000, 200), (200, 3000), (1, 1),
               (14, 14), (13, 15), (640, 480), (480, 640), (1920, 1080), (1080, 1920), (500, 2), (2, 500),
               (999, 1001), (1023, 769), (300, 1200), (2048, 1536), (55, 3333), (2561, 97), (700, 701)]


@pytest.fixture(scope="module")
def tool(runtime_home):
    from edgevlm.runtime.build import build_runtime

    return build_runtime(home=runtime_home) / "edgevlm-preprocess-dump"


def photo_like(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth gradients, soft blobs, hard edges and sensor noise: what resampling rounds differently."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([x / max(width, 1) * 255, y / max(height, 1) * 255, (x + y) % 97 * 2.6], axis=-1)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(2, max(width, height) / 3 + 3)
        image += rng.uniform(-120, 120, 3) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
    image[(x.astype(int) // 7 + y.astype(int) // 5) % 2 == 0] *= 0.6  # sharp edges
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def run(tool, *args) -> None:
    proc = subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("size, out", [((17, 23), (448, 448)), ((1, 4000), (14, 3000)), ((4000, 1), (3000, 14)),
                                       ((1344, 1344), (448, 448)), ((3000, 200), (1680, 112)), ((250, 734), (604, 3)),
                                       ((81, 776), (20, 487)), ((224, 279), (47, 47)), ((640, 480), (518, 392)),
                                       ((7, 3), (700, 300)), ((33, 77), (33, 154)), ((100, 100), (100, 40))])
def test_resize_is_bit_exact_with_pillow_bicubic(tool, tmp_path, size, out):
    """Both pass orders Pillow 13 picks (vertical first when the height shrinks by more than twice
    the pixels the width does), single-axis resizes, up and down."""
    pixels = photo_like(*size, seed=sum(size))
    pixels.tofile(tmp_path / "in.rgb")
    run(tool, "resize", tmp_path / "in.rgb", *size, *out, tmp_path / "out.rgb")
    got = np.fromfile(tmp_path / "out.rgb", dtype=np.uint8).reshape(out[1], out[0], 3)
    want = np.asarray(Image.fromarray(pixels, "RGB").resize(out, Image.Resampling.BICUBIC))
    assert np.array_equal(got, want), f"{int((got != want).sum())} values differ"


def test_resize_matches_pillow_on_random_size_pairs(tool, tmp_path):
    rng = np.random.default_rng(7)
    for _ in range(40):
        w, h, ow, oh = (int(v) for v in rng.integers(1, 400, 4))
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pixels.tofile(tmp_path / "in.rgb")
        run(tool, "resize", tmp_path / "in.rgb", w, h, ow, oh, tmp_path / "out.rgb")
        got = np.fromfile(tmp_path / "out.rgb", dtype=np.uint8).reshape(oh, ow, 3)
        want = np.asarray(Image.fromarray(pixels, "RGB").resize((ow, oh), Image.Resampling.BICUBIC))
        assert np.array_equal(got, want), ((w, h), (ow, oh))


CONFIGS = {
    "2.6": dict(max_slice_nums=9, scale_resolution=448, patch_size=14, slice_mode=True, mean=(0.5,) * 3, std=(0.5,) * 3),
    "clip-norm": dict(max_slice_nums=4, scale_resolution=448, patch_size=14, slice_mode=True,
                      mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711)),
    "no-slicing": dict(max_slice_nums=9, scale_resolution=448, patch_size=14, slice_mode=False,
                       mean=(0.5,) * 3, std=(0.5,) * 3),
}


def native_slices(tool, tmp_path, pixels: np.ndarray, config: dict):
    h, w, _ = pixels.shape
    pixels.tofile(tmp_path / "img.rgb")
    run(tool, "slices", tmp_path / "img.rgb", w, h, config["max_slice_nums"], config["scale_resolution"],
        config["patch_size"], int(config["slice_mode"]), 70, *config["mean"], *config["std"], tmp_path / "out")
    layout = json.loads((tmp_path / "out.json").read_text())
    return layout, np.fromfile(tmp_path / "out.f32", dtype=np.float32), np.fromfile(tmp_path / "out.i64", dtype=np.int64)


@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_slices_patch_rows_and_positions_equal_edgevlm_preprocess(tool, tmp_path, config_name):
    config = CONFIGS[config_name]
    sizes = IMAGE_SIZES if config_name == "2.6" else IMAGE_SIZES[::3]
    for i, (w, h) in enumerate(sizes):
        if not config["slice_mode"] and (w * h > 1000 * 1000 or min(w, h) < config["patch_size"]):
            continue  # unresized: large ones only cost time; under a patch is refused (test below)
        pixels = photo_like(w, h, seed=i)
        layout, values, ids = native_slices(tool, tmp_path, pixels, config)
        rows, sizes_t, plan = image_slices(Image.fromarray(pixels, "RGB"), config["max_slice_nums"],
                                           config["scale_resolution"], config["patch_size"], config["slice_mode"],
                                           config["mean"], config["std"])
        where = f"{w}x{h} ({config_name})"
        assert tuple(layout["source_size"]) == plan.source_size, where
        assert (tuple(layout["grid"]) if layout["grid"] else None) == plan.grid, where
        assert (tuple(layout["refine_size"]) if layout["refine_size"] else None) == plan.refine_size, where
        assert layout["num_slices"] == plan.num_slices == len(rows), where
        assert layout["tgt_sizes"] == sizes_t.tolist(), where
        want = np.concatenate([r.numpy().ravel() for r in rows])
        assert values.shape == want.shape and np.array_equal(values.view(np.uint32), want.view(np.uint32)), where
        want_ids = torch.cat([navit_position_ids(int(a), int(b), 70) for a, b in sizes_t.tolist()]).numpy()
        assert np.array_equal(ids, want_ids), where


@pytest.mark.parametrize("per_side", [70, 32])
def test_position_ids_equal_the_official_float32_bucketing_for_every_grid(tool, tmp_path, per_side):
    """Every h, w in 1..80 (the float32 1/h step differs from float64 at 25, 49, 50, 55, 58, ...)."""
    run(tool, "positions", 80, per_side, tmp_path / "ids.i64")
    got = np.fromfile(tmp_path / "ids.i64", dtype=np.int64)
    want = np.concatenate([navit_position_ids(h, w, per_side).numpy() for h in range(1, 81) for w in range(1, 81)])
    assert np.array_equal(got, want)


@pytest.mark.parametrize("args, message", [
    (("resize", "{img}", 4, 4, 2, 2, "{out}"), "RGB buffer holds 30 bytes, but a 4x4 RGB8 image needs 48"),
    (("resize", "{img}", 0, 10, 2, 2, "{out}"), "image size 0x10 is empty"),
    (("slices", "{img}", 5, 2, 0, 448, 14, 1, 70, .5, .5, .5, .5, .5, .5, "{out}"), "slice config values must be positive"),
    (("slices", "{img}", 10, 1, 9, 448, 14, 0, 70, .5, .5, .5, .5, .5, .5, "{out}"), "10x1 view is smaller than one 14-pixel"),
])
def test_bad_input_is_refused_with_a_message_not_a_crash(tool, tmp_path, args, message):
    (tmp_path / "img.rgb").write_bytes(bytes(30))
    argv = [str(a).format(img=tmp_path / "img.rgb", out=tmp_path / "out") for a in args]
    proc = subprocess.run([str(tool), *argv], capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_aarch64_build_preprocesses_bit_for_bit_like_python(runtime_home, tmp_path):
    """The cross build (run under qemu-aarch64 from its packed folder) computes the same resizes,
    patch rows and position ids: the arithmetic is plain IEEE, with no fused multiply-adds."""
    import shutil

    if not all(shutil.which(t) for t in ("aarch64-linux-gnu-g++", "qemu-aarch64")):
        pytest.skip("cross tools missing (aarch64-linux-gnu-g++, qemu-aarch64): run scripts/system-deps.sh")
    from edgevlm.runtime.build import build_runtime
    from edgevlm.runtime.bundle import command

    bundle = build_runtime("aarch64-linux", home=runtime_home)
    argv = command(bundle, "edgevlm-preprocess-dump", "qemu-aarch64")
    config = CONFIGS["2.6"]
    for i, (w, h) in enumerate([(17, 23), (1344, 1344), (3000, 200), (1, 4000), (999, 1001)]):
        pixels = photo_like(w, h, seed=i)
        pixels.tofile(tmp_path / "img.rgb")
        proc = subprocess.run([*argv, "slices", str(tmp_path / "img.rgb"), str(w), str(h), "9", "448", "14", "1", "70",
                               *map(str, config["mean"]), *map(str, config["std"]), str(tmp_path / "out")],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        rows, sizes_t, _ = image_slices(Image.fromarray(pixels, "RGB"), 9, 448, 14, True, config["mean"], config["std"])
        values = np.fromfile(tmp_path / "out.f32", dtype=np.float32)
        want = np.concatenate([r.numpy().ravel() for r in rows])
        assert np.array_equal(values.view(np.uint32), want.view(np.uint32)), (w, h)
        ids = np.fromfile(tmp_path / "out.i64", dtype=np.int64)
        assert np.array_equal(ids, torch.cat([navit_position_ids(int(a), int(b), 70) for a, b in sizes_t.tolist()]))


@pytest.mark.parametrize("times, duration, group", [
    ([0.0, 0.5, 1.0, 1.5], None, 6),
    ([0.05, 0.15, 0.25, 0.35, 0.45], None, 2),  # exact ties snap to the earlier point
    ([0.0, 0.33, 0.66, 0.99, 1.32, 1.65, 1.98, 2.31], None, 6),
    ([0.0, 1.0 / 3, 2.0 / 3, 1.0], 1.05, 3),
    ([12.34, 0.0, 7.77], 20.0, 6),  # out of order, duration given
    ([0.0], None, 6),
    ([3.0, 3.04, 3.06], 0.05, 6),  # duration before the frames: all snap to the last point
])
def test_temporal_ids_match_python(tool, times, duration, group):
    """MiniCPM-V 4.5 video temporal ids and groups, as edgevlm.preprocess.video computes them."""
    from edgevlm.preprocess.video import group_frames, temporal_ids_from_timestamps

    proc = subprocess.run([str(tool), "temporal", "0.1", str(-1 if duration is None else duration), str(group),
                           *map(repr, times)], capture_output=True, text=True, check=True)
    got = json.loads(proc.stdout)
    want = temporal_ids_from_timestamps(times, duration=duration)
    assert got["ids"] == want and got["groups"] == group_frames(want, group)


def test_temporal_ids_refuse_negative_times(tool):
    proc = subprocess.run([str(tool), "temporal", "0.1", "-1", "6", "1.0", "-0.5"], capture_output=True, text=True)
    assert proc.returncode == 2 and "non-negative" in proc.stderr  # the dump tool's refusal status
