"""The lmforge tokenizer: byte-level BPE from HF `tokenizers`, with our special tokens, saved as `tokenizer.json`.

`Tokenizer` is the one object every stage uses to turn text into ids and back (tokenize, train, evaluate, SFT, serve).
Special tokens: `<|bos|>` separates documents in the token shards, `<|eos|>` ends a generation, `<|pad|>` pads
batches, and the chat-role tokens (`<|system|>`, `<|user|>`, `<|assistant|>`, `<|end|>`) frame SFT conversations.
They get the first ids (0..6), so any vocab size keeps them stable.

Text never turns into control tokens: `encode` reads special-token strings inside text ("<|assistant|>" on a web
page, in a user's message) as the ordinary bytes they are (`tokenizers`' `encode_special_tokens`), so corpus text
cannot split a document, end a generation or forge a chat turn. Control tokens enter a sequence only by id: the
tokenize stage puts `bos_id` between documents, `models.chat.encode_chat` inserts the role tokens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
SPECIAL_TOKENS = [BOS, EOS, PAD, SYSTEM, USER, ASSISTANT, END]


class Tokenizer:
    """A thin wrapper over `tokenizers.Tokenizer` with the ids and hash the pipeline needs."""

    def __init__(self, hf_tokenizer) -> None:
        self._tok = hf_tokenizer
        # special-token strings in text are text; not serialised into tokenizer.json, so the file and hash stay
        hf_tokenizer.encode_special_tokens = True
        missing = [t for t in SPECIAL_TOKENS if hf_tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(f"tokenizer lacks the special tokens {missing}; train it with models.tokenizer.train")
        self.bos_id: int = hf_tokenizer.token_to_id(BOS)
        self.eos_id: int = hf_tokenizer.token_to_id(EOS)
        self.pad_id: int = hf_tokenizer.token_to_id(PAD)

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
        from tokenizers import Tokenizer as HFTokenizer

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {path} does not exist; run the tokenize stage first")
        return cls(HFTokenizer.from_file(str(path)))

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self._tok.to_str(pretty=True), encoding="utf-8")  # the exact bytes `sha256` hashes
        tmp.replace(path)
        return path

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def sha256(self) -> str:
        """sha256 of `tokenizer.json` as `save` writes it, recorded in checkpoint sidecars."""
        return hashlib.sha256(self._tok.to_str(pretty=True).encode("utf-8")).hexdigest()

    def encode(self, text: str) -> list[int]:
        """Ids of `text` as plain text: a special-token string inside it ("<|bos|>") is encoded as its bytes, never as
        the control id (insert those by id: `bos_id`, `models.chat.encode_chat`)."""
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
