"""Subword vocabulary: byte-level BPE learned on the training split with Hugging Face `tokenizers`.

Byte-level pre-tokenisation maps every UTF-8 byte to a symbol, so any text (unseen characters,
several spaces, leading space) is encoded without <unk> and decode(encode(s)) == s exactly; the
BPE merges are learned on top of the 256 byte symbols. The whole tokenizer (merges, vocabulary,
pre-tokenizer, decoder) is its Hugging Face JSON, which the task keeps in the run's task.json.
"""

from __future__ import annotations

import json
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from attntrain.errors import UserError

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
PAD, UNK, BOS, EOS = 0, 1, 2, 3  # ids of SPECIALS; PAD and UNK match attntrain.model.embed


class Subwords:
    """A trained byte-level BPE tokenizer: text <-> ids (special tokens never come out of `encode`)."""

    def __init__(self, tokenizer: Tokenizer):
        for i, token in enumerate(SPECIALS):
            if tokenizer.token_to_id(token) != i:
                raise UserError(f"tokenizer: special token {token!r} must have id {i}")
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> "Subwords":
        tokenizer = Tokenizer(models.BPE(unk_token=SPECIALS[UNK]))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator(texts, trainer)
        return cls(tokenizer)

    # ---- persistence ---------------------------------------------------------------------------
    def to_json(self) -> dict:
        return json.loads(self.tokenizer.to_str())

    @classmethod
    def from_json(cls, data: dict) -> "Subwords":
        return cls(Tokenizer.from_str(json.dumps(data)))

    # ---- use -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]  # no offsets: faster

    def decode(self, ids: list[int]) -> str:
        """Ids -> text; special tokens (padding, <s>, </s>) are dropped."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def byte_ids(self) -> list[int]:
        """Ids of the 256 single-byte symbols (from them any text can be spelled)."""
        vocab = self.tokenizer.get_vocab()
        return sorted(vocab[symbol] for symbol in pre_tokenizers.ByteLevel.alphabet())

    def tokens(self, ids: list[int]) -> list[str]:
        """The subword strings of ids (byte symbols as the tokenizer shows them), for inspection."""
        return [self.tokenizer.id_to_token(i) for i in ids]
