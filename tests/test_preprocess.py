"""Preprocessing: slicing against an independent implementation, image loading, prompts, bounds."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgevlm.errors import ImageLoadError
from edgevlm.preprocess import image_slices, load_image, preprocess, slice_layout, to_patch_row

SIZES = [(1, 4000), (4000, 1), (17, 23), (448, 448), (1344, 1344), (3000, 200), (1000, 600), (600, 1000),
         (2000, 2000), (100, 100), (900, 449)]


@pytest.mark.parametrize("w, h", SIZES)
def test_slicing_matches_transformers_minicpmv46(w, h):
    """transformers' MiniCPM-V 4.6 processor implements the same LLaVA-UHD family. With its patch
    size 7 and 4x merge it snaps to multiples of 14 like the official 2.x-4.5 processor; it returns
    (rows, cols) and (height, width), and breaks exact error ties toward more rows, which for the
    candidate orders involved equals the official first-candidate rule."""
    from transformers.models.minicpmv4_6.image_processing_pil_minicpmv4_6 import MiniCPMV4_6ImageProcessorPil

    ref = MiniCPMV4_6ImageProcessorPil()
    layout = slice_layout((w, h), 9, 448, 14)
    grid = ref.get_sliced_grid((h, w), 9, 448)
    assert layout.grid == (None if grid is None else (grid[1], grid[0]))
    src_h, src_w = ref.find_best_resize((h, w), 448, 7, "4x", allow_upscale=grid is None)
    assert layout.source_size == (src_w, src_h)
    if grid is not None:
        rh, rw = ref.get_refine_size((h, w), grid, 448, 7, "4x", allow_upscale=True)
        assert layout.refine_size == (rw, rh)
        assert layout.slice_size[0] % 14 == 0 and layout.slice_size[1] % 14 == 0


def test_slices_order_and_patch_rows():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 1000, 3), dtype=np.uint8))
    rows, sizes, layout = image_slices(image)
    cols, nrows = layout.grid
    assert len(rows) == 1 + cols * nrows
    refined = image.resize(layout.refine_size, Image.Resampling.BICUBIC)
    cw, ch = layout.slice_size
    last = refined.crop(((cols - 1) * cw, (nrows - 1) * ch, cols * cw, nrows * ch))  # bottom-right cell is last
    assert torch.equal(rows[-1], to_patch_row(last, (0.5,) * 3, (0.5,) * 3, 14)[0])
    for row, (h, w) in zip(rows, sizes.tolist()):
        assert row.shape == (3, 14, h * w * 14)


def test_patch_row_is_raster_order_of_patches():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (28, 42, 3), dtype=np.uint8))
    row, (h, w) = to_patch_row(image, (0.5,) * 3, (0.5,) * 3, 14)
    array = (np.asarray(image, np.float32) / 255 - 0.5) / 0.5
    for r in range(h):
        for c in range(w):
            patch = array[r * 14:(r + 1) * 14, c * 14:(c + 1) * 14].transpose(2, 0, 1)
            k = r * w + c
            np.testing.assert_allclose(row[:, :, k * 14:(k + 1) * 14].numpy(), patch, atol=1e-6)


def _png(image, **kw):
    buf = io.BytesIO()
    image.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def test_image_modes_become_rgb(tmp_path):
    assert load_image(_png(Image.new("RGBA", (4, 4), (255, 0, 0, 0)))).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(_png(Image.new("LA", (4, 4), (10, 255)))).getpixel((0, 0)) == (10, 10, 10)
    assert load_image(_png(Image.new("CMYK", (4, 4), (0, 0, 0, 0)), format="JPEG")).mode == "RGB"
    sixteen = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert load_image(_png(sixteen)).getpixel((0, 0)) == (255, 255, 255)
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 200, 0] * 256)
    assert load_image(_png(palette)).getpixel((1, 1)) == (0, 200, 0)


def test_exif_orientation_and_first_frame():
    image = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    assert load_image(_png(image, format="JPEG", exif=exif.tobytes())).size == (20, 40)
    frames = [Image.new("RGB", (8, 8), c) for c in ("blue", "red")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    assert load_image(buf.getvalue()).getpixel((0, 0))[2] > 200


def test_bad_files_give_clear_errors(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(empty)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageLoadError, match="not an image.*\n.*JPEG, PNG"):
        load_image(text)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(_png(Image.new("RGB", (64, 64), "blue"))[:60])
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(truncated)
    with pytest.raises(ImageLoadError, match="does not exist"):
        load_image(tmp_path / "missing.png")


def test_huge_image_is_reduced_while_loading():
    big = Image.new("RGB", (9000, 9000), "green")
    image = load_image(_png(big, format="JPEG"), max_pixels=2048 * 2048)
    assert image.width * image.height <= 2048 * 2048 and image.width == image.height


@pytest.mark.parametrize("name, image_id, think", [("minicpmv-2.6-tiny", True, False),
                                                    ("minicpmv-4.5-tiny", True, True),
                                                    ("minicpmv-2.5-tiny", False, False)])
def test_prompt_and_bounds(name, image_id, think, loaded_models):
    loaded = loaded_models[name]
    q = loaded.config.query_num
    image = Image.new("RGB", (1000, 600), "white")
    inputs = preprocess([image, image], "What is here?", loaded.tokenizer, loaded.config, loaded.processor_config)
    assert inputs.grids == [(2, 1), (2, 1)]
    assert len(inputs.image_bounds) == len(inputs.pixel_values) == 6
    assert all(int(e - s) == q for s, e in inputs.image_bounds.tolist())
    unk = loaded.tokenizer.token_id(loaded.tokenizer.unk_token)
    assert all((inputs.input_ids[s:e] == unk).all() for s, e in inputs.image_bounds.tolist())
    assert ("<image_id>1</image_id><image>" in inputs.prompt) == image_id
    assert ("<think>\n\n</think>\n\n" in inputs.prompt) == think
    assert inputs.prompt.rstrip().endswith(("assistant", "</think>", "<|end_header_id|>"))
    placeholder = "<image>" + "<unk>" * q + "</image>" + "<slice>" + "<unk>" * q + "</slice>" + "<slice>"
    assert placeholder in inputs.prompt and "</slice>\nWhat is here?" in inputs.prompt


def test_generation_is_deterministic_and_uses_the_image(loaded_models):
    from edgevlm.defaults import demo_image
    from edgevlm.generate import generate

    loaded = loaded_models["minicpmv-2.6-tiny"]
    inputs = preprocess([demo_image()], "Describe.", loaded.tokenizer, loaded.config, loaded.processor_config)
    a = generate(loaded, inputs, max_new_tokens=6)
    b = generate(loaded, inputs, max_new_tokens=6)
    assert a.tokens == b.tokens and len(a.step_logits) == len(a.tokens)
    torch.testing.assert_close(a.step_logits[0], b.step_logits[0], rtol=0, atol=0)
    assert a.vision_embeds.shape == (len(inputs.pixel_values), 64, 256)
    s, e = inputs.image_bounds[0].tolist()
    torch.testing.assert_close(a.inputs_embeds[s:e], a.vision_embeds[0])
    other = preprocess([Image.new("RGB", (896, 560), "black")], "Describe.", loaded.tokenizer, loaded.config,
                       loaded.processor_config)
    assert not torch.equal(generate(loaded, other, max_new_tokens=1).step_logits[0], a.step_logits[0])


def test_banded_png_decode_equals_whole_decode_then_reduce(monkeypatch):
    """Huge PNGs are decoded band by band; the result must be the whole-image box reduction."""
    from edgevlm.preprocess import png_bands

    rng = np.random.default_rng(0)
    for mode, shape in [("RGB", (301, 203, 3)), ("RGBA", (301, 203, 4)), ("L", (301, 203))]:
        pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
        pixels[:, :40] = 200  # flat regions make the encoder pick Up/Average/Paeth filters across bands
        data = _png(Image.fromarray(pixels, mode))
        monkeypatch.setattr(png_bands, "BAND_BYTES", 7 * 203 * shape[-1] if mode != "L" else 7 * 203)
        image = load_image(data, max_pixels=100 * 70)
        expected = load_image(data).reduce(png_bands.reduce_factor((203, 301), 100 * 70))
        np.testing.assert_array_equal(np.asarray(image), np.asarray(expected))
        assert image.info["edgevlm.original_size"] == ((203, 301), image.size)


def test_banded_png_decode_reads_files_and_refuses_truncated_ones(tmp_path):
    """libvips decodes the bands: from a path as from bytes, and a cut file is an error, not grey rows."""
    pixels = np.random.default_rng(1).integers(0, 256, size=(400, 300, 3), dtype=np.uint8)
    path = tmp_path / "big.png"
    path.write_bytes(_png(Image.fromarray(pixels)))
    from_path = load_image(path, max_pixels=100 * 70)
    np.testing.assert_array_equal(np.asarray(from_path), np.asarray(load_image(path.read_bytes(), max_pixels=100 * 70)))
    cut = tmp_path / "cut.png"
    cut.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    for source in (cut, cut.read_bytes()):
        with pytest.raises(ImageLoadError, match="truncated or corrupt"):
            load_image(source, max_pixels=100 * 70)


def test_video_frames_group_into_temporal_placeholders(loaded_models):
    from edgevlm.preprocess import group_frames, preprocess_video, temporal_ids_from_timestamps

    loaded = loaded_models["minicpmv-4.5-tiny"]
    q = loaded.config.query_num
    frames = [Image.new("RGB", (640, 360), (20 * i, 0, 0)) for i in range(13)]
    times = [i * 0.5 for i in range(13)]
    ids = temporal_ids_from_timestamps(times)
    assert ids == [5 * i for i in range(13)]
    inputs = preprocess_video(frames, "What happens?", loaded.tokenizer, loaded.config, loaded.processor_config,
                              timestamps=times)
    assert [len(g) for g in inputs.temporal_ids] == [6, 6, 1] and inputs.temporal_ids == group_frames(ids)
    assert len(inputs.pixel_values) == len(inputs.tgt_sizes) == 13  # one unsliced view per frame
    assert inputs.prompt.count("<image>") == 3 and "<slice>" not in inputs.prompt
    assert inputs.image_bounds.shape == (3, 2)
    assert all(int(e - s) == q for s, e in inputs.image_bounds.tolist())
    assert "</image>\nWhat happens?" in inputs.prompt

    from edgevlm.generate import generate
    trace = generate(loaded, inputs, max_new_tokens=2)
    assert trace.vision_embeds.shape[0] == 3  # one set of queries per temporal group
    s, e = inputs.image_bounds[2].tolist()
    torch.testing.assert_close(trace.inputs_embeds[s:e], trace.vision_embeds[2])


def test_video_errors_name_the_fix(loaded_models):
    from edgevlm.errors import PromptError
    from edgevlm.preprocess import preprocess_video

    loaded = loaded_models["minicpmv-4.5-tiny"]
    frame = Image.new("RGB", (64, 64))
    with pytest.raises(PromptError, match="timestamps"):
        preprocess_video([frame], "q", loaded.tokenizer, loaded.config)
    with pytest.raises(PromptError, match="one timestamp per frame"):
        preprocess_video([frame, frame], "q", loaded.tokenizer, loaded.config, temporal_ids=[[0]])
    old = loaded_models["minicpmv-2.6-tiny"]
    with pytest.raises(PromptError, match="3D resampler"):
        preprocess_video([frame], "q", old.tokenizer, old.config, timestamps=[0.0])


def test_chat_templates_render_with_transformers_helpers():
    """Templates render through transformers: `tojson` and `raise_exception` work, and a refusal is a TokenizerError."""
    from edgevlm.errors import TokenizerError
    from edgevlm.tokenizer import load_tokenizer

    tok = load_tokenizer(Path(__file__).parents[1] / "edgevlm" / "assets" / "edgevlm-tiny")
    tok.chat_template = ("{% if messages[0]['role'] != 'user' %}{{ raise_exception('the user speaks first') }}"
                         "{% endif %}{{ messages[0]['content'] | tojson }}")
    assert tok.apply_chat_template([{"role": "user", "content": "a\n\"b\""}]) == '"a\\n\\"b\\""'
    with pytest.raises(TokenizerError, match="cannot render this conversation: the user speaks first"):
        tok.apply_chat_template([{"role": "assistant", "content": "x"}])


@pytest.mark.parametrize("template, content", [
    ("<s>{% for m in messages %}[{{ m['content'] }}]{% endfor %}{% if add_generation_prompt %}>{% endif %}", "verbatim"),
    ("{% for m in messages %}<u>{{ m['content'] | trim }}</u>{% endfor %}<a>", "trimmed"),
    ("{% for m in messages %}{{ m['content'] | upper }}{% endfor %}", None),  # rewrites the turn: no assembly
    ("{% for m in messages %}{{ m['content'] }}{{ m['content'] }}{% endfor %}", None),
])
def test_prompt_assembly_block_reproduces_the_template(template, content, loaded_models):
    """The manifest's prompt.assembly rebuilds the rendered prompt without Jinja, or is absent."""
    from edgevlm.preprocess.prompt import assembly_block, user_content

    loaded = loaded_models["minicpmv-2.6-tiny"]
    tok = loaded.tokenizer
    saved, tok.chat_template = tok.chat_template, template
    try:
        block = assembly_block(tok, loaded.config)
        if content is None:
            assert block is None
            return
        assert block["content"] == content and block["image_id"] is True and block["unk_token"] == "<unk>"
        for turn in (user_content(1, " a question \n"), "\u3000plain\u00a0"):
            rendered = tok.apply_chat_template([{"role": "user", "content": turn}], add_generation_prompt=True)
            body = turn.strip() if content == "trimmed" else turn
            assert rendered == block["prefix"] + body + block["suffix"]
    finally:
        tok.chat_template = saved
