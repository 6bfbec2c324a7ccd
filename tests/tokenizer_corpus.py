"""A deterministic multilingual corpus for the native tokenizer tests: English, Chinese, Japanese,
Korean, Cyrillic, Arabic, Devanagari, emoji (ZWJ, skin tones, flags), code, numbers of every
Unicode kind, contractions in any case, combining marks and runs of every kind of whitespace,
built from seeded pieces."""

from __future__ import annotations

import random

ENGLISH = ("the quick brown fox jumps over a lazy dog while image tokens flow through the vision encoder "
           "and the decoder answers questions about photos charts receipts and screenshots on a phone").split()
CONTRACTIONS = ["it's", "we're", "they've", "I'm", "you'll", "she'd", "don't", "IT'S", "We'Re", "YOU'LL",
                "o'clock", "rock'n'roll", "'s", "'", "''", "'ſ", "'ſx", "'\u212ax", "'\ufb05x", "l'été"]
CHINESE = "我们今天在手机上运行视觉语言模型这张图片里有什么请描述一下图中的文字和数字北京上海深圳的天气很好"
JAPANESE = ["これは", "テスト", "です。", "日本語の", "文章を", "トークナイザー", "で分割", "します", "ｶﾀｶﾅ", "ー"]
OTHER_SCRIPTS = ["Привет мир", "Ёжик", "مرحبا بالعالم", "नमस्ते दुनिया", "안녕하세요 세계", "Γειά σου",
                 "ÀÉÎÕÜ çñß", "e\u0301te\u0301", "Zalgo\u0336\u0337", "ﬁne ﬂow", "İstanbul ıi", "ǅ ǈ",
                 # NFC at work: decomposed Hangul and accents, marks out of order, singletons, exclusions
                 "\u1100\u1161\u11a8", "A\u030a", "\u2126", "\u212b", "\u0958", "a\u0328\u0301", "a\u0301\u0328",
                 "\u0e38\u0e3a", "\u0eb8\u0eba", "\u304b\u3099", "\u0344"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵", "🇺🇸", "❤️", "🏳️‍🌈", "✨", "🤖", "🧑🏿‍💻", "☕", "🔥🔥🔥", "\U0001FAE0"]
NUMBERS = ["0", "7", "42", "123", "1234", "12345678901234567890", "3.14159", "-2.5e-10", "1,000,000",
           "٣٤٥", "१२३", "１２３", "²³", "½", "Ⅻ", "〇", "0x1F600", "v2.6", "2026-12-06", "10:45"]
CODE = ["def f(x):\n    return x ** 2", "for (int i = 0; i < n; ++i) {", "}", "x = [1, 2, 3]",
        "if (a && b || !c) return;", "print(f\"{name!r}\")", "#include <vector>", "SELECT * FROM t;",
        "<div class=\"a\">", "a->b", "foo_bar_baz", "CamelCaseName", "$HOME/.cache", "// comment",
        "\t\treturn;", "λx.x", "x₁ + x₂"]
WHITESPACE = [" ", "  ", "   ", "    ", "\n", "\n\n", "\r\n", "\t", " \t ", "\n \n", "  \n  ", "\u3000",
              "\u00a0", "\u2028", "\u0085", "\x1c", "\x1f", "\x0b\x0c", "\u200b", " \n\n\n", "\r", "\n    "]
PUNCT = [".", ",", "!", "?", "...", "—", "–", "“quoted”", "«»", "()", "[]", "{}", "!!", "?!", "。", "、",
         "「」", "：", "·", "@", "#", "%", "&", "*", "~", "^", "\\", "|", "`", "_", "-", "--", "=="]


SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "ing", "tion", "er", "ou"]


def _coined(rng: random.Random) -> str:
    """A made-up word, so a trained vocabulary can grow to tens of thousands of merges."""
    script = rng.random()
    if script < 0.5:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4)))
        return word.capitalize() if rng.random() < 0.2 else word
    if script < 0.75:
        return "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 4)))  # CJK ideographs
    if script < 0.9:
        return "".join(chr(rng.randint(0x3041, 0x30FA)) for _ in range(rng.randint(1, 5)))  # kana
    return "".join(chr(rng.randint(0xAC00, 0xD7A3)) for _ in range(rng.randint(1, 3)))  # hangul


def _piece(rng: random.Random, specials: tuple[str, ...]) -> str:
    kind = rng.random()
    if kind < 0.15:
        return " ".join(_coined(rng) for _ in range(rng.randint(1, 4)))
    kind = rng.random()
    if kind < 0.30:
        return " ".join(rng.choice(ENGLISH) for _ in range(rng.randint(1, 6)))
    if kind < 0.38:
        return rng.choice(CONTRACTIONS)
    if kind < 0.48:
        start = rng.randrange(len(CHINESE))
        return CHINESE[start:start + rng.randint(1, 12)]
    if kind < 0.54:
        return "".join(rng.choice(JAPANESE) for _ in range(rng.randint(1, 3)))
    if kind < 0.59:
        return rng.choice(OTHER_SCRIPTS)
    if kind < 0.65:
        return "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 3)))
    if kind < 0.73:
        return rng.choice(NUMBERS)
    if kind < 0.80:
        return rng.choice(CODE)
    if kind < 0.90:
        return rng.choice(WHITESPACE)
    if kind < 0.97 or not specials:
        return rng.choice(PUNCT)
    return rng.choice(specials)


def corpus(lines: int, seed: int, specials: tuple[str, ...] = ()) -> list[str]:
    """`lines` texts of 1-12 pieces joined by nothing, a space or a newline run; some lines begin
    or end with whitespace. `specials` are mixed in (special token strings)."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        parts = [_piece(rng, specials) for _ in range(rng.randint(1, 12))]
        out.append("".join(p + rng.choice(["", "", " ", " ", "\n", ""]) for p in parts))
    return out
