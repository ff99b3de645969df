"""The tokenizer: an HF `tokenizers` tokenizer saved as `tokenizer.json`, ours (trained BPE) or a base model's.

`Tokenizer` is the one object every stage uses to turn text into ids and back (tokenize, train, evaluate, SFT, serve).
A tokenizer trained here has lmforge's special tokens: `<|bos|>` separates documents in the token shards, `<|eos|>`
ends a generation, `<|pad|>` pads batches, and the chat-role tokens (`<|system|>`, `<|user|>`, `<|assistant|>`,
`<|end|>`) frame conversations (`models.text.chat.LMFORGE_TEMPLATE`); they get the first ids (0..6), so any vocab size
keeps them stable. A base model's tokenizer (`models.weights.hf_import`) keeps its own tokens and chat template, named
in a `TokenizerSpec` saved beside it as `tokenizer_config.json` (Hugging Face's file and keys, plus lmforge's
`document_token`: what separates documents in the token shards, e.g. SmolLM2's `<|endoftext|>`).

Text never turns into control tokens: `encode` reads special-token strings inside text ("<|assistant|>" on a web
page, in a user's message) as the ordinary bytes they are (`tokenizers`' `encode_special_tokens`), so corpus text
cannot split a document, end a generation or forge a chat turn. Control tokens enter a sequence only by id: the
tokenize stage puts `bos_id` between documents, `models.text.chat.encode_chat` inserts the role tokens.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
SPECIAL_TOKENS = [BOS, EOS, PAD, SYSTEM, USER, ASSISTANT, END]
CONFIG_FILE = "tokenizer_config.json"  # beside tokenizer.json, for tokenizers that are not lmforge's own


class TokenizerSpec(BaseModel):
    """What the pipeline needs to know of a tokenizer beyond its vocabulary (HF `tokenizer_config.json` keys)."""

    model_config = ConfigDict(extra="ignore")
    document_token: str = Field(description="Separates documents in token shards; stops a generation too.")
    eos_token: str = Field(description="Ends a generation.")
    pad_token: str = Field(description="Pads batches.")
    bos_token: str | None = Field(default=None, description="What the chat template names bos_token, if anything.")
    chat_template: str = Field(description="Jinja chat template, as in the model's tokenizer config.")

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any], document_token: str | None = None) -> TokenizerSpec:
        """From a Hugging Face tokenizer config (tokens as strings or AddedToken dicts); `document_token` defaults
        to the config's own, else its bos token, else eos (`models.weights.hf_import` picks it for an imported
        model)."""
        def text(key: str) -> str | None:
            value = config.get(key)
            return value.get("content") if isinstance(value, Mapping) else value

        template = config.get("chat_template")
        if isinstance(template, list):  # several named templates: the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        eos = text("eos_token")
        if not eos:
            raise ValueError("the tokenizer config names no eos_token: lmforge cannot tell where a generation ends")
        if not template:
            raise ValueError("the tokenizer config has no chat_template: a base model without one cannot chat "
                             "(set chat_template in its tokenizer_config.json)")
        return cls(document_token=document_token or config.get("document_token") or text("bos_token") or eos,
                   eos_token=eos, pad_token=text("pad_token") or eos, bos_token=text("bos_token"),
                   chat_template=template)


class Tokenizer:
    """A thin wrapper over `tokenizers.Tokenizer` with the ids and hash the pipeline needs."""

    def __init__(self, hf_tokenizer, spec: TokenizerSpec | None = None) -> None:
        """`spec` None = lmforge's own special tokens and template (a tokenizer trained by `train`)."""
        self._tok, self.spec = hf_tokenizer, spec
        # special-token strings in text are text; not serialised into tokenizer.json, so the file and hash stay
        hf_tokenizer.encode_special_tokens = True
        needed = SPECIAL_TOKENS if spec is None else [spec.document_token, spec.eos_token, spec.pad_token]
        missing = [t for t in needed if hf_tokenizer.token_to_id(t) is None]
        if missing:
            hint = "train it with models.text.tokenizer.train" if spec is None else f"fix {CONFIG_FILE}"
            raise ValueError(f"tokenizer lacks the special tokens {missing}; {hint}")
        # bos_id separates documents (lmforge's <|bos|>; a base model's document_token)
        self.bos_id: int = hf_tokenizer.token_to_id(BOS if spec is None else spec.document_token)
        self.eos_id: int = hf_tokenizer.token_to_id(EOS if spec is None else spec.eos_token)
        self.pad_id: int = hf_tokenizer.token_to_id(PAD if spec is None else spec.pad_token)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
        """Train byte-level BPE on `texts`; the 256 byte symbols are always in the alphabet, so nothing is unknown."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if vocab_size < 256 + len(SPECIAL_TOKENS):
            raise ValueError(f"vocab_size={vocab_size} is too small: byte-level BPE needs at least 263")
        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: Path | str) -> Tokenizer:
        """`tokenizer.json`, with the `tokenizer_config.json` beside it when there is one (a base model's)."""
        from tokenizers import Tokenizer as HFTokenizer

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {path} does not exist; run the tokenize stage first")
        config = path.with_name(CONFIG_FILE)
        spec = TokenizerSpec.model_validate_json(config.read_text("utf-8")) if config.is_file() else None
        return cls(HFTokenizer.from_file(str(path)), spec)

    def save(self, path: Path | str) -> Path:
        """Write `tokenizer.json` (and the spec beside it, for a base model's tokenizer) atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        files = {path: self._tok.to_str(pretty=True)}  # the exact bytes `sha256` hashes
        if self.spec is not None:
            files[path.with_name(CONFIG_FILE)] = self._spec_json()
        for target, text in files.items():
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(target)
        return path

    def _spec_json(self) -> str:
        return json.dumps(self.spec.model_dump(), indent=2, sort_keys=True) + "\n"

    @staticmethod
    def files(path: Path | str) -> list[Path]:
        """The files a saved tokenizer consists of: `tokenizer.json`, and its spec where there is one."""
        path = Path(path)
        return [path] + [p for p in [path.with_name(CONFIG_FILE)] if p.is_file()]

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def sha256(self) -> str:
        """sha256 of `tokenizer.json` as `save` writes it (then of its spec, for a base model's), recorded in
        checkpoint sidecars."""
        digest = hashlib.sha256(self._tok.to_str(pretty=True).encode("utf-8"))
        if self.spec is not None:
            digest.update(self._spec_json().encode("utf-8"))
        return digest.hexdigest()

    @cached_property
    def special_ids(self) -> frozenset[int]:
        """Ids of the special (control) tokens: what `encode` never produces from text."""
        return frozenset(i for i, token in self._tok.get_added_tokens_decoder().items() if token.special)

    @cached_property
    def chat_template(self):
        """The model's chat template (`models.text.chat.ChatTemplate`): lmforge's for a tokenizer trained here."""
        from models.text.chat import LMFORGE_TEMPLATE, ChatTemplate

        if self.spec is None:
            return ChatTemplate(LMFORGE_TEMPLATE, self, {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD})
        variables = {"bos_token": self.spec.bos_token or "", "eos_token": self.spec.eos_token,
                     "pad_token": self.spec.pad_token}
        return ChatTemplate(self.spec.chat_template, self, variables)

    @cached_property
    def _template_tok(self):
        """A twin of the tokenizer that reads special-token strings as control tokens: for template text only."""
        from tokenizers import Tokenizer as HFTokenizer

        twin = HFTokenizer.from_str(self._tok.to_str())
        twin.encode_special_tokens = False
        return twin

    def encode_template(self, text: str) -> list[int]:
        """Ids of a chat template's own text, its special-token strings as the control ids (never for content)."""
        return self._template_tok.encode(text, add_special_tokens=False).ids if text else []

    def encode(self, text: str) -> list[int]:
        """Ids of `text` as plain text: a special-token string inside it ("<|bos|>") is encoded as its bytes, never as
        the control id (insert those by id: `bos_id`, `models.text.chat.encode_chat`)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """`encode` of many texts at once; `tokenizers` spreads the batch over its Rust thread pool."""
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, idx: int) -> str | None:
        return self._tok.id_to_token(idx)
