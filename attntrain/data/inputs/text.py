"""Text as a sequence of token vectors: word and character vocabularies, encoding and padding.

Shared by every text task (tagging, sentence classification): words are looked up in a vocabulary
built from the training split (optionally case-folded), characters of each word feed the character
CNN, and a word is out-of-vocabulary (OOV) when its form never occurs in train.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Iterable

import torch

from attntrain.data.batching import length_mask, pad_stack
from attntrain.data.inputs.vocab import Vocab

# Splits "don't" into "do n't" and peels punctuation off words, close to UD / PTB English tokenisation.
_TOKEN = re.compile(r"\w+(?=n't\b)|n't\b|'\w+|\w+(?:[-.@/]\w+)*|[^\w\s]")


def tokenize(line: str) -> list[str]:
    return _TOKEN.findall(line)


def truncate(tokens: list, max_len: int | None, how: str) -> list:
    """Keep the first max_len items, or (head_tail) the first third and the last two thirds."""
    if not max_len or len(tokens) <= max_len:
        return tokens
    if how == "head":
        return tokens[:max_len]
    head = max_len // 3
    return tokens[:head] + tokens[len(tokens) - (max_len - head):]


def word_shape(word: str) -> int:
    """A word's shape class (1..11; 0 is padding): case pattern, digits, punctuation, @user, #tag, URL."""
    if word.startswith("@") and len(word) > 1:
        return 8
    if word.startswith("#") and len(word) > 1:
        return 9
    if word.lower().startswith(("http", "www.")):
        return 10
    if word.isdigit():
        return 5
    if any(c.isdigit() for c in word):
        return 6
    if not any(c.isalnum() for c in word):
        return 7
    if word.islower():
        return 1
    if word.isupper():
        return 2 if len(word) > 1 else 3
    if word[0].isupper() and word[1:].islower():
        return 3
    return 4 if any(c.isalpha() for c in word) else 11


def extended(words: Vocab, path: str, form: Callable[[str], str]) -> Vocab:
    """The vocabulary + the (formed) words of a vector file it lacks, in file order (model.embed.vectors_extend)."""
    from attntrain.data.inputs.vectors import vector_words

    known, extra = set(words.items), []
    for word in map(form, vector_words(path)):
        if word not in known:
            known.add(word)
            extra.append(word)
    return Vocab(words.items + extra, unk=words.unk)


class TextVocab:
    """Word + character vocabularies of a text task, configured by `model.embed` (EmbedConfig)."""

    def __init__(self, embed_cfg):
        self.cfg = embed_cfg
        self.words = self.chars = None
        self.seen: set[str] = set()

    def form(self, word: str) -> str:
        return word.lower() if self.cfg.lowercase else word

    def build(self, sentences: Iterable[list[str]]) -> None:
        word_counts, char_counts = Counter(), Counter()
        for words in sentences:
            word_counts.update(self.form(w) for w in words)
            if self.cfg.char_dim:
                char_counts.update(c for w in words for c in w)
        self.words = Vocab.build(word_counts, min_freq=self.cfg.min_freq)
        self.chars = Vocab.build(char_counts)
        self.seen = set(word_counts)
        self.counts = word_counts  # not saved: the coverage line of model.embed.vectors
        if getattr(self.cfg, "vectors_extend", False):
            self.words = extended(self.words, self.cfg.vectors, self.form)

    def prepare(self, state: dict | None, train: Callable[[], list[dict]]) -> None:
        """Load a saved vocabulary, or build one from the words of the training examples."""
        if state is not None:
            self.load(state)
        else:
            self.build(ex["words"] for ex in train())

    def state(self) -> dict:
        return {"words": self.words.to_json(), "chars": self.chars.to_json(), "seen": sorted(self.seen)}

    def load(self, state: dict) -> None:
        self.words = Vocab.from_json(state["words"])
        self.chars = Vocab.from_json(state["chars"])
        self.seen = set(state["seen"])

    def info(self) -> dict:
        return {"input": "text", "num_words": len(self.words), "num_chars": len(self.chars)}

    def _char_ids(self, word: str) -> list[int]:
        limit = self.cfg.max_word_chars
        if len(word) > limit:  # keep prefix and suffix, which carry the morphology
            word = word[: limit // 2] + word[-(limit - limit // 2):]
        return self.chars.ids(word)

    def encode(self, words: list[str]) -> dict:
        """Tokens -> {"length", "words" (T,), "chars" (T,C), "oov" (T,)}."""
        forms = [self.form(w) for w in words]
        item = {"length": len(words), "words": torch.tensor(self.words.ids(forms), dtype=torch.long),
                "oov": torch.tensor([f not in self.seen for f in forms], dtype=torch.bool)}
        if self.cfg.shape_dim:
            item["shapes"] = torch.tensor([word_shape(w) for w in words], dtype=torch.long)
        if self.cfg.char_dim:
            item["chars"] = (pad_stack([torch.tensor(self._char_ids(w) or [0]) for w in words]) if words
                             else torch.zeros(0, 1, dtype=torch.long))
        return item

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        """Encoded items -> {"words" (B,T), "chars" (B,T,C), "mask" (B,T), "oov" (B,T)}."""
        batch = {
            "words": pad_stack([it["words"] for it in items]),
            "mask": length_mask([it["length"] for it in items]),
            "oov": pad_stack([it["oov"] for it in items], value=False),
        }
        if self.cfg.shape_dim:
            batch["shapes"] = pad_stack([it["shapes"] for it in items])
        if self.cfg.char_dim:
            B, T = batch["words"].shape
            C = max(it["chars"].shape[1] for it in items)
            chars = torch.zeros(B, T, C, dtype=torch.long)
            for b, it in enumerate(items):
                chars[b, : it["length"], : it["chars"].shape[1]] = it["chars"]
            batch["chars"] = chars
        return batch
