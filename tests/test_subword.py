"""Subword encoding (attntrain.data.inputs.subword): the word-by-word `encode_normalized` that encodes translation
splits gives exactly the ids of the tokenizer run on each whitespace-collapsed text."""

from __future__ import annotations

import gzip
import random
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from tokenizers import pre_tokenizers

from attntrain.data.inputs import subword
from attntrain.data.inputs.subword import Subwords
from attntrain.data.tasks.translation import normalize_space
from tests.conftest import shared_data

WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]


@pytest.fixture(scope="module")
def lines() -> list[str]:
    """Multi30k sentences as shipped (German, English, French: three scripts' worth of words)."""
    out = []
    for lang in ("de", "en", "fr"):
        with gzip.open(shared_data() / "multi30k" / "raw" / f"val.{lang}.gz", "rt", encoding="utf-8") as f:
            out += f.read().splitlines()
    return out


@pytest.fixture(scope="module")
def bpe(lines) -> Subwords:
    return Subwords.train([normalize_space(line) for line in lines], 2000)


def odd_texts(count: int) -> list[str]:
    """Random texts of every kind of whitespace, special tokens, contractions, digits, marks and other scripts."""
    rng = random.Random(0)
    pool = [*WHITESPACE, *"abcXYZ019'’-.,!?<>/s", "<s>", "</s>", "<pad>", "<unk>", "'s", "'ll", "é", "中", "😀", "\u0301",
            "٣", "\u200b", "\ufeff", "\x00"]
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 14))) for _ in range(count)]


def decoded(values: np.ndarray, offsets: np.ndarray) -> list[list[int]]:
    assert values.dtype == np.int32 and offsets[0] == 0 and offsets[-1] == len(values)
    return [values[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])]


def by_batches(bpe: Subwords, texts: list, size: int) -> list[list[int]]:
    return [ids for i in range(0, len(texts), size) for ids in decoded(*bpe.encode_normalized(texts[i:i + size]))]


def test_arrow_splits_on_exactly_pythons_whitespace():
    """The word split is Arrow's; it must cut where str.split() cuts, for every whitespace character."""
    texts = [f"a{c}b{c}{c}c{c}" for c in WHITESPACE] + [f"a{chr(c)}b" for c in range(0x3100) if not chr(c).isspace()]
    texts += odd_texts(5000)
    words = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(pa.array(texts))).to_pylist()
    assert [[w for w in ws if w] for ws in words] == [text.split() for text in texts]


def test_encode_normalized_equals_the_tokenizer_on_each_text(bpe, lines):
    texts = lines + odd_texts(4000) + ["", "   ", "a", "'s", "it's", "<s>", "a <s>b", "x</s> y", " lead", "trail  "]
    expected = bpe.encode_batch([normalize_space(text) for text in texts])
    assert by_batches(bpe, texts, 1000) == expected
    assert by_batches(bpe, texts, 7) == expected  # a warm table: most words already known
    assert decoded(*bpe.encode_normalized(pa.array(texts))) == expected  # an Arrow column as given by a map


def test_a_full_word_table_starts_again(bpe, lines, monkeypatch):
    monkeypatch.setattr(subword, "WORD_CACHE", 60)
    fresh = Subwords(bpe.tokenizer)
    texts = lines[:400] + odd_texts(200)
    assert by_batches(fresh, texts, 20) == bpe.encode_batch([normalize_space(t) for t in texts])
    distinct = {w for t in texts for w in t.split()}
    assert len(fresh._words.index) < len(distinct)  # emptied on the way (one batch may hold more than 60)


def test_another_pre_tokenizer_takes_the_tokenizers_own_path(bpe, lines):
    """Word-by-word is exact only for the byte-level pre-tokenizer without a prefix space; any other is run whole."""
    other = Subwords(type(bpe.tokenizer).from_str(bpe.tokenizer.to_str()))
    other.tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    assert not other._plain_byte_level()
    texts = lines[:300] + odd_texts(300)
    assert by_batches(other, texts, 50) == other.encode_batch([normalize_space(t) for t in texts])
