"""The native tokenizer (runtime/src/tokenizer*.cpp) against the `tokenizers` library: the same ids
over a 10,000-line multilingual corpus for each supported pre-tokenizer (Qwen2/Qwen3 split regex
with NFC and Llama-3 split regex, on 32k-merge BPEs trained here, and the GPT-2 ByteLevel regex of edgevlm's preset
tokenizers), the same text back, streaming decode equal to full decode, special tokens as
`tokenizers` treats them, and clear refusals of bad input."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from edgevlm.tokenizer import CHAT_FORMATS, MULTIMODAL_TOKENS
from tests.conftest import TINY_PRESETS
from tests.tokenizer_corpus import corpus

QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_REGEX = QWEN2_REGEX.replace(r"\p{N}|", r"\p{N}{1,3}|")
MERGES = 32000  # trains in ~4 s per family on 2 cores (20,000 lines)
CORPUS_LINES = 10_000
SPECIALS = {"qwen2": CHAT_FORMATS["qwen2"].special_tokens + MULTIMODAL_TOKENS,
            "llama3": CHAT_FORMATS["llama"].special_tokens + MULTIMODAL_TOKENS}


@pytest.fixture(scope="module")
def tool(runtime_home):
    from edgevlm.runtime.build import build_runtime

    return build_runtime(home=runtime_home) / "edgevlm-tokenizer-dump"


def train(family: str) -> Tokenizer:
    """A byte-level BPE with the family's split regex, as the official tokenizer.json files have it."""
    regex = QWEN2_REGEX if family == "qwen2" else LLAMA3_REGEX
    tok = Tokenizer(models.BPE())
    if family == "qwen2":  # Qwen2/Qwen3 normalize to NFC; Llama 3 does not normalize
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(regex), "isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=256 + MERGES, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(20_000, seed=1), trainer=trainer)
    tok.add_special_tokens(list(SPECIALS[family]))
    if family == "llama3":  # Llama 3's tokenizer.json sets ignore_merges
        spec = json.loads(tok.to_str())
        spec["model"]["ignore_merges"] = True
        tok = Tokenizer.from_str(json.dumps(spec))
    return tok


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """family -> (tokenizers.Tokenizer, its tokenizer.json path)."""
    root = tmp_path_factory.mktemp("trained")
    out = {}
    for family in SPECIALS:
        tok = train(family)
        assert len(json.loads(tok.to_str())["model"]["merges"]) == MERGES
        tok.save(str(root / f"{family}.json"))
        out[family] = (tok, root / f"{family}.json")
    return out


@pytest.fixture(scope="module")
def presets(tiny_checkpoints):
    return {name: (Tokenizer.from_file(str(path / "tokenizer.json")), path / "tokenizer.json")
            for name, path in tiny_checkpoints.items()}


def run(tool, *args, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def native_encode(tool, tmp_path, tokenizer_json, texts, *flags) -> list[list[int]]:
    (tmp_path / "texts").write_bytes(b"\0".join(t.encode() for t in texts))
    run(tool, "encode", tokenizer_json, tmp_path / "texts", tmp_path / "ids", "--nul", *flags)
    lines = (tmp_path / "ids").read_text().split("\n")[:-1]
    assert len(lines) == len(texts)
    return [[int(i) for i in line.split()] for line in lines]


def native_decode(tool, tmp_path, tokenizer_json, id_lists, *flags) -> list:
    (tmp_path / "ids").write_text("".join(" ".join(map(str, ids)) + "\n" for ids in id_lists))
    run(tool, "decode", tokenizer_json, tmp_path / "ids", tmp_path / "text", *flags)
    data, at, records = (tmp_path / "text").read_bytes(), 0, []
    for _ in id_lists:
        end = data.index(b"\n", at)
        count, at, pieces = int(data[at:end]), end + 1, []
        for _ in range(count):
            space = data.index(b" ", at)
            size = int(data[at:space])
            pieces.append(data[space + 1:space + 1 + size].decode("utf-8"))  # complete UTF-8 on its own
            at = space + 1 + size + 1
        records.append(pieces)
    assert at == len(data)
    return records if "--stream" in flags else [pieces[0] for pieces in records]


def assert_same_ids(tok, texts, got, **kwargs):
    want = [enc.ids for enc in tok.encode_batch(texts, add_special_tokens=False)]
    bad = [(t, g, w) for t, g, w in zip(texts, got, want) if g != w]
    assert not bad, f"{len(bad)} of {len(texts)} lines differ; first: {bad[0]!r}"


@pytest.mark.parametrize("family", ["qwen2", "llama3"])
def test_encode_matches_tokenizers_on_trained_bpe(tool, tmp_path, trained, family):
    tok, path = trained[family]
    texts = corpus(CORPUS_LINES, seed=2, specials=SPECIALS[family])
    assert_same_ids(tok, texts, native_encode(tool, tmp_path, path, texts))
    tok.encode_special_tokens = True  # special token text as plain text
    try:
        assert_same_ids(tok, texts, native_encode(tool, tmp_path, path, texts, "--no-special"))
    finally:
        tok.encode_special_tokens = False


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_encode_matches_tokenizers_on_preset_tokenizers(tool, tmp_path, presets, preset):
    """edgevlm's generated checkpoints: ByteLevel with its own GPT-2 regex, a 1k vocabulary."""
    tok, path = presets[preset]
    specials = tuple(t.content for t in tok.get_added_tokens_decoder().values())
    texts = corpus(CORPUS_LINES, seed=3, specials=specials)
    assert_same_ids(tok, texts, native_encode(tool, tmp_path, path, texts))


def test_merges_as_strings_or_pairs_and_ignore_merges(tool, tmp_path, trained):
    """Older tokenizer.json files write merges as "a b"; the ids must not change. ignore_merges
    off changes some Llama-3 ids, and the native side follows."""
    tok, path = trained["llama3"]
    spec = json.loads(path.read_text())
    spec["model"]["merges"] = [" ".join(pair) for pair in spec["model"]["merges"]]
    spec["model"]["ignore_merges"] = False
    (tmp_path / "strings.json").write_text(json.dumps(spec))
    texts = corpus(2000, seed=4)
    assert_same_ids(Tokenizer.from_file(str(tmp_path / "strings.json")), texts,
                    native_encode(tool, tmp_path, tmp_path / "strings.json", texts))


@pytest.mark.parametrize("family", ["qwen2", "llama3"])
def test_decode_and_stream_decode_match_tokenizers(tool, tmp_path, trained, family):
    tok, path = trained[family]
    texts = corpus(3000, seed=5, specials=SPECIALS[family])
    ids = [enc.ids for enc in tok.encode_batch(texts, add_special_tokens=False)]
    rng = random.Random(6)  # plus random ids: split UTF-8 sequences, stray continuation bytes
    ids += [[rng.randrange(tok.get_vocab_size()) for _ in range(rng.randint(1, 20))] for _ in range(2000)]
    ids += [[100, 10**6, 101], [], [10**6]]  # ids past the vocabulary are dropped, as `tokenizers` does
    for flags, skip in (((), False), (("--skip-special",), True)):
        want = tok.decode_batch(ids, skip_special_tokens=skip)
        assert native_decode(tool, tmp_path, path, ids, *flags) == want
        streamed = native_decode(tool, tmp_path, path, ids, "--stream", *flags)
        assert ["".join(pieces) for pieces in streamed] == want
    assert want[: len(texts)] != texts  # (skip_special dropped the special tokens)
    normal = [tok.normalizer.normalize_str(t) if tok.normalizer else t for t in texts]
    assert tok.decode_batch(ids[: len(texts)], skip_special_tokens=False) == normal  # byte-level BPE round-trips


def test_stream_decoder_holds_back_split_characters(tool, tmp_path, trained):
    tok, path = trained["qwen2"]
    emoji = "👨‍👩‍👧‍👦😀中"
    byte_ids = [tok.token_to_id(pre_tokenizers.ByteLevel.alphabet() and _byte_char(b)) for b in emoji.encode()]
    pieces = native_decode(tool, tmp_path, path, [byte_ids], "--stream")[0]
    assert "".join(pieces) == emoji
    assert pieces[:3] == ["", "", ""] and pieces[3] == "👨"  # 4-byte emoji: 3 ids held back


def _byte_char(b: int) -> str:
    """GPT-2's printable stand-in for byte b (ByteLevel's alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    if b in printable:
        return chr(b)
    return chr(256 + [x for x in range(256) if x not in printable].index(b))


def test_special_tokens_are_matched_as_tokenizers_does(tool, tmp_path, trained):
    tok, path = trained["qwen2"]
    names = ["<|im_start|>", "<|im_end|>", "<image>", "</image>", "<unk>", "<slice>", "<|endoftext|>"]
    printed = run(tool, "id", path, *names, "not-a-token").stdout.split()
    assert printed == [str(tok.token_to_id(n)) for n in names] + ["-1"]
    texts = ["<|im_start|>user\n<image><unk><unk></image>What is this?<|im_end|>\n<|im_start|>assistant\n",
             "<image", "<|im_start|><|im_start|>", "a<unk>b", "<<image>>", "<|im_start|", "x</image>y",
             "  <|im_end|>  ", "<image><image>", "<|endoftext|>"]
    assert_same_ids(tok, texts, native_encode(tool, tmp_path, path, texts))
    assert native_encode(tool, tmp_path, path, ["<image>"])[0] == [tok.token_to_id("<image>")]


def test_added_token_options_lstrip_rstrip_single_word_normalized(tool, tmp_path, trained):
    """Non-special and option-bearing added tokens (what a fine-tuned tokenizer may add)."""
    tok = Tokenizer.from_str(trained["qwen2"][0].to_str())
    tok.add_tokens([AddedToken("<mask>", lstrip=True, rstrip=True), AddedToken("word", single_word=True),
                    AddedToken("<think>", special=False, normalized=True),
                    AddedToken("</think>", special=False, normalized=False), AddedToken("中文", special=False),
                    AddedToken("cafe\u0301!", special=False, normalized=True)])  # matched in NFC form
    tok.add_special_tokens([AddedToken("<|fim|>", rstrip=True)])
    tok.save(str(tmp_path / "added.json"))
    texts = ["a <mask> b", "a  <mask>  b", "<mask>", "word words sword word.", " word_x xword", "<think>x</think>",
             "中文中文字", "<|fim|>   tail", "<mask><mask>  <mask>", "\n<mask>\n", "café! x", "cafe\u0301! y",
             "a cafe\u0301!b"] + corpus(500, seed=7)
    assert_same_ids(tok, texts, native_encode(tool, tmp_path, tmp_path / "added.json", texts))
    tok.encode_special_tokens = True
    assert_same_ids(tok, texts, native_encode(tool, tmp_path, tmp_path / "added.json", texts, "--no-special"))


def test_bad_input_is_refused_with_a_message(tool, tmp_path, trained):
    path = trained["qwen2"][1]
    (tmp_path / "ok.txt").write_text("hello\n")

    def refused(*args, message):
        proc = run(tool, *args, check=False)
        assert proc.returncode == 1, (args, proc.returncode, proc.stderr)  # not a signal (negative)
        assert message in proc.stderr, proc.stderr

    refused("encode", tmp_path / "missing.json", tmp_path / "ok.txt", tmp_path / "o", message="cannot open")
    refused("encode", path, tmp_path / "missing.txt", tmp_path / "o", message="cannot open")
    wordpiece = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    wordpiece.save(str(tmp_path / "wordpiece.json"))
    refused("encode", tmp_path / "wordpiece.json", tmp_path / "ok.txt", tmp_path / "o", message="BPE tokenizers only")
    spec = json.loads(path.read_text())
    for name, change, message in [
        ("regex", lambda s: s["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=r"\w+"), "not one this"),
        ("nopre", lambda s: s.update(pre_tokenizer=None), "no pre_tokenizer"),
        ("merge", lambda s: s["model"]["merges"].append(["zzz", "q"]), "missing from the vocab"),
        ("decoder", lambda s: s.update(decoder={"type": "WordPiece"}), "decoder must be ByteLevel"),
    ]:
        broken = json.loads(json.dumps(spec))
        change(broken)
        (tmp_path / f"{name}.json").write_text(json.dumps(broken))
        refused("encode", tmp_path / f"{name}.json", tmp_path / "ok.txt", tmp_path / "o", message=message)
    for name, text in [("truncated", path.read_text()[:5000]), ("empty", ""), ("deep", "[" * 100000),
                       ("array", "[1, 2]")]:
        (tmp_path / f"{name}.json").write_text(text)
        refused("encode", tmp_path / f"{name}.json", tmp_path / "ok.txt", tmp_path / "o", message=str(tmp_path))
    for bad in (b"ok\n\xff\xfe\n", b"\xe4\xb8\n", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80"):
        (tmp_path / "bad.txt").write_bytes(bad)
        refused("encode", path, tmp_path / "bad.txt", tmp_path / "o", message="not valid UTF-8")
    (tmp_path / "ids.txt").write_text("1 2 x\n")
    refused("decode", path, tmp_path / "ids.txt", tmp_path / "o", message="not a token id")
    assert run(tool, check=False).returncode == 2


@pytest.mark.parametrize("family", ["qwen2", "llama3", "preset"])
def test_every_code_point_and_combining_runs(tool, tmp_path, trained, presets, family):
    """All of Unicode (in 300-code-point lines: every \\p{L}, \\p{N}, \\s and other class boundary)
    and 20,000 random runs of combining marks, Hangul jamo and composing bases, which Qwen2's NFC
    normalizer reorders, composes or leaves (exclusions)."""
    tok, path = presets[TINY_PRESETS[-1]] if family == "preset" else trained[family]
    cps = [c for c in range(0x20, 0x110000) if not 0xD800 <= c <= 0xDFFF]
    texts = ["".join(map(chr, cps[i:i + 300])) for i in range(0, len(cps), 300)]
    rng = random.Random(8)
    marks = [c for c in range(0x300, 0x20000) if unicodedata.combining(chr(c))] + [0x1161, 0x11A8, 0x11C2, 0x3099]
    bases = [ord(c) for c in "aeiouAEOUnczsgkKSLαωΩηυιΑרבךउक\u1100\u1112\uac00\uac01\u304b\u30cf\u0e01\u0e81"]
    texts += ["".join(chr(rng.choice(bases) if rng.random() < 0.35 else rng.choice(marks))
                      for _ in range(rng.randint(1, 8))) for _ in range(20_000)]
    assert_same_ids(tok, texts, native_encode(tool, tmp_path, path, texts))


def test_long_pieces_encode_fast_and_identically(tool, tmp_path, trained):
    """A page of Chinese is one \\p{L}+ match: BPE over it must stay O(n log n)."""
    tok, path = trained["qwen2"]
    rng = random.Random(9)
    texts = ["".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(50_000)), " " * 100_000, "7" * 100_000,
             "😀" * 30_000, "ab" * 50_000, "\n" * 50_000 + "x"]
    start = time.monotonic()
    got = native_encode(tool, tmp_path, path, texts)
    assert time.monotonic() - start < 30
    assert_same_ids(tok, texts, got)


def test_unicode_tables_regenerate_byte_for_byte(tmp_path):
    """runtime/src/unicode_tables.cpp and unicode_nfc_tables.cpp are what tools/gen_unicode_tables.py
    writes from this Python's unicodedata (and this `tokenizers`' NFC); committed, so cross builds
    need no Python."""
    runtime = Path(__file__).resolve().parent.parent / "runtime"
    subprocess.run([sys.executable, str(runtime / "tools" / "gen_unicode_tables.py"), str(tmp_path)], check=True)
    for name in ("unicode_tables.cpp", "unicode_nfc_tables.cpp"):
        assert (tmp_path / name).read_bytes() == (runtime / "src" / name).read_bytes(), name


def test_aarch64_build_encodes_like_tokenizers(runtime_home, tmp_path, trained):
    """The cross build (under qemu-aarch64 from its packed folder; char is unsigned there)."""
    import shutil

    if not all(shutil.which(t) for t in ("aarch64-linux-gnu-g++", "qemu-aarch64")):
        pytest.skip("cross tools missing (aarch64-linux-gnu-g++, qemu-aarch64): run scripts/system-deps.sh")
    from edgevlm.runtime.build import build_runtime
    from edgevlm.runtime.bundle import command

    bundle = build_runtime("aarch64-linux", home=runtime_home)
    argv = command(bundle, "edgevlm-tokenizer-dump", "qemu-aarch64")
    for family, (tok, path) in trained.items():
        texts = corpus(2000, seed=10, specials=SPECIALS[family])
        (tmp_path / "texts").write_bytes(b"\0".join(t.encode() for t in texts))
        proc = subprocess.run([*argv, "encode", str(path), str(tmp_path / "texts"), str(tmp_path / "ids"), "--nul"],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        got = [[int(i) for i in line.split()] for line in (tmp_path / "ids").read_text().split("\n")[:-1]]
        assert_same_ids(tok, texts, got)
