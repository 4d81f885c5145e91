"""Subword vocabulary: byte-level BPE learned on the training split with Hugging Face `tokenizers`.

Byte-level pre-tokenisation maps every UTF-8 byte to a symbol, so any text (unseen characters,
several spaces, leading space) is encoded without <unk> and decode(encode(s)) == s exactly; the
BPE merges are learned on top of the 256 byte symbols. The whole tokenizer (merges, vocabulary,
pre-tokenizer, decoder) is its Hugging Face JSON, which the task keeps in the run's task.json.
"""

from __future__ import annotations

import json
from itertools import chain
from typing import Callable, Iterable

import numpy as np

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from attntrain.errors import UserError

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
PAD, UNK, BOS, EOS = 0, 1, 2, 3  # ids of SPECIALS; PAD and UNK match attntrain.model.embed
WORD_CACHE = 500_000  # distinct words whose ids encode_normalized keeps (the table starts again when full)


class Subwords:
    """A trained byte-level BPE tokenizer: text <-> ids (special tokens never come out of `encode`)."""

    def __init__(self, tokenizer: Tokenizer):
        for i, token in enumerate(SPECIALS):
            if tokenizer.token_to_id(token) != i:
                raise UserError(f"tokenizer: special token {token!r} must have id {i}")
        self.tokenizer = tokenizer
        self._words = WordIds()  # encode_normalized's table of distinct words

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

    def encode_normalized(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """`encode_batch` of each text with its whitespace collapsed (`" ".join(text.split())`), as one flat
        int32 array of ids and the offsets of each text's ids in it (`ids[offsets[i]:offsets[i + 1]]`).
        `texts`: a list of strings or an Arrow string array.

        One tokenizer call per distinct word, not per text: in the byte-level pre-tokenizer's pattern (GPT-2's:
        contractions, then an optional space followed by a run of letters, of digits or of other non-space
        symbols, then whitespace) no piece crosses a space and a single space always starts the piece after
        it, and BPE works piece by piece; so a text's ids are those of its first word followed by those of
        " " + each later word. Texts are split into words by Arrow (its whitespace is Python's, checked in
        tests/test_subword.py), each distinct word of the batch is looked up in a bounded table (the tokenizer
        runs on the words it does not hold yet) and each text's ids are gathered from it with numpy.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        column = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.string())
        words = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(column))  # "" -> [""]: every text has a first word
        if isinstance(words, pa.ChunkedArray):
            words = words.combine_chunks()
        if not self._plain_byte_level():
            encoded = self.encode_batch([" ".join(w) for w in words.to_pylist()])
            return np.fromiter(chain.from_iterable(encoded), np.int32), np.cumsum([0, *map(len, encoded)])
        coded = pc.dictionary_encode(words.flatten())
        distinct = coded.dictionary.to_pylist()  # the batch's distinct words
        index = coded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        starts = words.offsets.to_numpy()[:-1].astype(np.int64)  # where each text's words begin
        first = np.unique(index[starts])  # distinct words that begin a text (no space before them)
        self._words.make_room(len(distinct) + len(first))
        encode = lambda keys: self.encode_batch([k[1:] if k[:1] == "\n" else " " + k for k in keys])  # noqa: E731
        rows = self._words.rows(distinct, encode)[index]  # a later word is its own key ...
        by_first = np.zeros(len(distinct), np.int64)
        by_first[first] = self._words.rows(["\n" + distinct[i] for i in first.tolist()], encode)  # ... a first one "\n" + it
        rows[starts] = by_first[index[starts]]  # (no word holds "\n": the split took whitespace away)
        return self._words.gather(rows, np.diff(words.offsets.to_numpy()).astype(np.int64))

    def _plain_byte_level(self) -> bool:
        """The tokenizer is the byte-level BPE `train` makes (no normalizer, no prefix space), for which
        `encode_normalized`'s word-by-word encoding is exact."""
        pre = self.tokenizer.pre_tokenizer
        return (self.tokenizer.normalizer is None and isinstance(pre, pre_tokenizers.ByteLevel)
                and pre.use_regex and not pre.add_prefix_space)

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


class WordIds:
    """Subword ids of distinct words (keys), stored flat: row r's ids are values[starts[r]:starts[r] + lengths[r]].

    `make_room(n)` empties it when n more words would take it past WORD_CACHE words.
    """

    def __init__(self):
        self.index: dict[str, int] = {}
        self.values = np.zeros(0, np.int32)
        self.starts = np.zeros(0, np.int64)
        self.lengths = np.zeros(0, np.int64)

    def make_room(self, n: int) -> None:
        if len(self.index) + n > WORD_CACHE:
            self.__init__()

    def rows(self, keys: list[str], encode: Callable[[list[str]], list[list[int]]]) -> np.ndarray:
        """The row of every key, encoding (in one call) the keys the table does not hold yet."""
        new = set(keys).difference(self.index)
        if new:
            new = sorted(new)
            ids = encode(new)
            lengths = np.fromiter(map(len, ids), np.int64, len(ids))
            self.index.update(zip(new, range(len(self.lengths), len(self.lengths) + len(new))))
            self.starts = np.concatenate([self.starts, len(self.values) + np.cumsum(lengths) - lengths])
            self.lengths = np.concatenate([self.lengths, lengths])
            self.values = np.concatenate([self.values, np.fromiter(chain.from_iterable(ids), np.int32)])
        return np.fromiter(map(self.index.__getitem__, keys), np.int64, len(keys))

    def gather(self, rows: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ids of consecutive groups of rows (`counts` rows each), flat, with each group's offsets."""
        lengths = self.lengths[rows]
        ends = np.cumsum(lengths)
        values = self.values[np.repeat(self.starts[rows] - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0)]
        group = np.repeat(np.arange(len(counts)), counts)  # the group of every row
        per_group = np.bincount(group, weights=lengths, minlength=len(counts)).astype(np.int64)
        return values, np.concatenate([[0], np.cumsum(per_group)])
