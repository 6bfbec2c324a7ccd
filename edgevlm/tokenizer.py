"""Tokenizer loading (tokenizer.json through `tokenizers`) and the small deterministic tokenizer
written into generated checkpoints.

Official MiniCPM-V checkpoints ship a fast-tokenizer `tokenizer.json` plus `tokenizer_config.json`
(special tokens, chat template). The multimodal prompt needs `<image>`, `</image>`, `<slice>`,
`</slice>`, `<image_id>`, `</image_id>` and the unk token, whose runs mark where vision embeddings go.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from edgevlm.errors import TokenizerError

MULTIMODAL_TOKENS = (
    "<unk>", "<image>", "</image>", "<slice>", "</slice>", "<image_id>", "</image_id>",
    "<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>", "<point>", "</point>",
    "<unit>", "</unit>",
)

# Chat special tokens, BOS/EOS and chat template per LLM family, as the official tokenizers have them.
_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CHATML_THINK = _CHATML.replace(
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}",
)
_LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


@dataclass(frozen=True)
class ChatFormat:
    special_tokens: tuple[str, ...]
    bos: str | None
    eos: str
    stop_tokens: tuple[str, ...]  # generation stops at any of these
    chat_template: str


CHAT_FORMATS = {
    "llama": ChatFormat(("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                         "<|eot_id|>"), "<|begin_of_text|>", "<|end_of_text|>",
                        ("<|end_of_text|>", "<|eot_id|>"), _LLAMA3),
    "qwen2": ChatFormat(("<|endoftext|>", "<|im_start|>", "<|im_end|>"), None, "<|im_end|>",
                        ("<|im_end|>", "<|endoftext|>"), _CHATML),
    "minicpm": ChatFormat(("<s>", "</s>", "<|im_start|>", "<|im_end|>"), "<s>", "<|im_end|>",
                          ("<|im_end|>", "</s>"), "{{ bos_token }}" + _CHATML),
    "qwen3": ChatFormat(("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"), None,
                        "<|im_end|>", ("<|im_end|>", "<|endoftext|>"), _CHATML_THINK),
}


class Tokenizer:
    """A thin, typed wrapper over a `tokenizers.Tokenizer` plus its tokenizer_config.json."""

    def __init__(self, backend, config: dict, source: str):
        self.backend = backend
        self.config = config
        self.source = source
        self.chat_template: str | None = config.get("chat_template")

    # Special tokens are looked up by text so the same code serves every family.
    def token_id(self, token: str) -> int:
        tid = self.backend.token_to_id(token)
        if tid is None:
            raise TokenizerError(f"tokenizer at {self.source} has no token {token!r}",
                                 "use the tokenizer files that came with the MiniCPM-V checkpoint")
        return tid

    def maybe_token_id(self, token: str | None) -> int | None:
        return None if token is None else self.backend.token_to_id(token)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def max_token_id(self) -> int:
        return max(self.backend.get_vocab(with_added_tokens=True).values())

    @property
    def bos_token(self) -> str | None:
        return _token_text(self.config.get("bos_token"))

    @property
    def eos_token(self) -> str | None:
        return _token_text(self.config.get("eos_token"))

    @property
    def pad_token(self) -> str | None:
        return _token_text(self.config.get("pad_token"))

    @property
    def unk_token(self) -> str:
        return _token_text(self.config.get("unk_token")) or "<unk>"

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def stop_token_ids(self) -> set[int]:
        names = set(self.config.get("edgevlm_stop_tokens") or [])
        if self.eos_token:
            names.add(self.eos_token)
        names |= {"<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>", "</s>"}
        return {i for i in (self.backend.token_to_id(n) for n in names) if i is not None}

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True, **kwargs) -> str:
        """The checkpoint's chat template rendered by transformers (its sandbox, `raise_exception`,
        `tojson`, `strftime_now`: what the official processor renders with)."""
        if not self.chat_template:
            raise TokenizerError(f"tokenizer_config.json at {self.source} has no chat_template",
                                 "use the tokenizer_config.json that came with the checkpoint")
        from jinja2 import TemplateError

        try:
            return self._transformers.apply_chat_template(messages, chat_template=self.chat_template, tokenize=False,
                                                          add_generation_prompt=add_generation_prompt, **kwargs)
        except TemplateError as e:  # raise_exception() in the template, or a template bug
            raise TokenizerError(f"the chat template of {self.source} cannot render this conversation: {e}",
                                 "check the conversation's roles and order against the checkpoint's template") from None

    @functools.cached_property
    def _transformers(self):
        """A transformers fast tokenizer over the same `tokenizers` backend (built once: it copies it)."""
        from transformers import PreTrainedTokenizerFast

        specials = {k: v for k in ("bos_token", "eos_token", "pad_token") if (v := getattr(self, k))}
        return PreTrainedTokenizerFast(tokenizer_object=self.backend, **specials)


def _token_text(value) -> str | None:
    # tokenizer_config.json stores special tokens either as strings or as AddedToken dicts.
    if isinstance(value, dict):
        return value.get("content")
    return value


_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
MAX_CONFIG_BYTES = 64 << 20  # official tokenizer_config.json files are well under 10 MB


def read_tokenizer_config(path: Path) -> dict:
    """tokenizer_config.json as a dict whose fields edgevlm reads have the types it expects."""
    from edgevlm.jsonfiles import read_json_object

    fix = "restore tokenizer_config.json from the checkpoint"
    config = read_json_object(path, "tokenizer config", TokenizerError, max_bytes=MAX_CONFIG_BYTES, fix=fix)
    template = config.get("chat_template")
    if isinstance(template, list):  # transformers' named templates: [{"name": ..., "template": ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = config["chat_template"] = named.get("default")
    if template is not None and not isinstance(template, str):
        raise TokenizerError(f"{path}: chat_template is a {type(template).__name__}, not a string", fix)
    for key in _SPECIAL_KEYS:
        value = config.get(key)
        if not (value is None or isinstance(value, str) or
                (isinstance(value, dict) and isinstance(value.get("content"), str))):
            raise TokenizerError(f"{path}: {key} is {value!r}, not a token string or {{\"content\": ...}}", fix)
    stops = config.get("edgevlm_stop_tokens")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(t, str) for t in stops)):
        raise TokenizerError(f"{path}: edgevlm_stop_tokens is {stops!r}, not a list of token strings", fix)
    return config


def load_tokenizer(model_dir: Path, embedding_rows: int | None = None) -> Tokenizer:
    """Load tokenizer.json (+ tokenizer_config.json) and check it fits an embedding of `embedding_rows`."""
    from tokenizers import Tokenizer as HFTokenizer

    model_dir = Path(model_dir)
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        hint = ("this checkpoint has only a slow (sentencepiece) tokenizer; convert it once with "
                "`transformers.AutoTokenizer.from_pretrained(DIR, trust_remote_code=True).save_pretrained(DIR)`"
                if (model_dir / "tokenizer.model").is_file()
                else "copy tokenizer.json and tokenizer_config.json from the official checkpoint into the directory")
        raise TokenizerError(f"no tokenizer.json in {model_dir}", hint)
    try:
        backend = HFTokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
        raise TokenizerError(f"{path} cannot be parsed ({e})", "restore tokenizer.json from the checkpoint") from None
    config_path = model_dir / "tokenizer_config.json"
    config = read_tokenizer_config(config_path) if config_path.is_file() else {}
    tok = Tokenizer(backend, config, str(model_dir))
    if embedding_rows is not None and tok.max_token_id >= embedding_rows:
        raise TokenizerError(
            f"tokenizer at {model_dir} has token ids up to {tok.max_token_id}, but the model's embedding "
            f"has only {embedding_rows} rows (vocab_size in config.json)",
            "the tokenizer files belong to another model: use the ones shipped with this checkpoint",
        )
    return tok


# ---- the deterministic tokenizer for generated checkpoints ------------------------------------

_CORPUS_WORDS = (
    "the a an of in on to and is are what which how many where color colour shape red green blue "
    "yellow black white orange purple gray circle square triangle star left right top bottom above "
    "below middle center image picture photo text word digit number count there one two three four "
    "five six seven eight nine zero yes no describe read this that it with has have big small large "
    "tiny answer question user assistant system frame video slice"
).split()


def _training_corpus() -> list[str]:
    # A fixed corpus: letters, digits and common English, so any text still tokenizes (byte-level BPE).
    lines = [" ".join(_CORPUS_WORDS[i:i + 12]) for i in range(0, len(_CORPUS_WORDS), 12)]
    lines += ["0123456789 " * 4, "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,:;!?'\"()-\n"]
    return lines * 8


def build_tokenizer(arch: str, vocab_size: int = 1024, extra_lines: tuple[str, ...] = ()) -> tuple[object, dict]:
    """Train a small byte-level BPE deterministically; returns (tokenizers.Tokenizer, tokenizer_config).

    `extra_lines` (e.g. a trained model's task text) join the fixed corpus, so their words become
    whole tokens.
    """
    from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers

    fmt = CHAT_FORMATS[arch]
    specials = list(dict.fromkeys(fmt.special_tokens + MULTIMODAL_TOKENS))
    tok = HFTokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(specials), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[],
    )
    tok.train_from_iterator(_training_corpus() + list(extra_lines) * 8, trainer=trainer)
    tok.add_special_tokens(specials)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": fmt.bos,
        "eos_token": fmt.eos,
        "unk_token": "<unk>",
        "pad_token": fmt.eos,
        "chat_template": fmt.chat_template,
        "edgevlm_stop_tokens": list(fmt.stop_tokens),
        "model_max_length": 32768,
        "additional_special_tokens": list(MULTIMODAL_TOKENS),
    }
    return tok, config


def write_tokenizer(out_dir: Path, arch: str, vocab_size: int, extra_lines: tuple[str, ...] = ()) -> None:
    tok, config = build_tokenizer(arch, vocab_size=min(vocab_size, 1024), extra_lines=tuple(extra_lines))
    out_dir = Path(out_dir)
    tok.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(
        {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if config[k]}, indent=2) + "\n")
