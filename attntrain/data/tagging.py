"""Per-token labeling of text: UPOS tagging on a Universal Dependencies treebank.

The word vocabulary comes from the training split; characters of every token feed a character CNN
so rare and unseen words still get useful vectors. A token is out-of-vocabulary (OOV) when its
(case-folded) form never occurs in train; OOV accuracy is reported separately.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import torch

from attntrain.data.batching import pad_stack
from attntrain.data.conll import UPOS, load_conllu_dataset
from attntrain.data.root import dataset_dir
from attntrain.data.task import Task
from attntrain.data.vocab import Vocab
from attntrain.errors import UserError
from attntrain.model.heads import IGNORE

# Splits "don't" into "do n't" and peels punctuation off words, close to UD English tokenisation.
_TOKEN = re.compile(r"\w+(?=n't\b)|n't\b|'\w+|\w+(?:[-.@/]\w+)*|[^\w\s]")


def tokenize(line: str) -> list[str]:
    return _TOKEN.findall(line)


class UdPosTask(Task):
    input = "text"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.words = self.chars = self.labels = None
        self.seen: set[str] = set()

    def _file(self, split: str) -> Path:
        folder = dataset_dir(self.cfg.data.root, self.cfg.data.dataset)
        found = sorted(folder.glob(f"*-ud-{split}.conllu"))
        if not found:
            raise UserError(f"no *-ud-{split}.conllu file in {folder}")
        return found[0]

    def read_split(self, split: str) -> list[dict]:
        return load_conllu_dataset(self._file(split)).to_list()

    def _form(self, word: str) -> str:
        return word.lower() if self.cfg.model.embed.lowercase else word

    def prepare(self, state: dict | None = None) -> None:
        if state is not None:
            self.words = Vocab.from_json(state["words"])
            self.chars = Vocab.from_json(state["chars"])
            self.labels = Vocab.from_json(state["labels"])
            self.seen = set(state["seen"])
            return
        train = self.read_split("train")
        if self.cfg.data.train_limit is not None:
            train = train[: self.cfg.data.train_limit]
        word_counts = Counter(self._form(w) for ex in train for w in ex["words"])
        char_counts = Counter(c for ex in train for w in ex["words"] for c in w)
        self.words = Vocab.build(word_counts, min_freq=self.cfg.model.embed.min_freq)
        self.chars = Vocab.build(char_counts)
        self.labels = Vocab(UPOS, unk=False)
        self.seen = set(word_counts)

    def state(self) -> dict:
        return {"words": self.words.to_json(), "chars": self.chars.to_json(), "labels": self.labels.to_json(),
                "seen": sorted(self.seen)}

    def info(self) -> dict:
        return {"input": "text", "num_words": len(self.words), "num_chars": len(self.chars),
                "num_labels": len(self.labels), "labels": self.labels.items}

    def _char_ids(self, word: str) -> list[int]:
        limit = self.cfg.model.embed.max_word_chars
        if len(word) > limit:  # keep prefix and suffix, which carry the morphology
            word = word[: limit // 2] + word[-(limit - limit // 2):]
        return self.chars.ids(word)

    def encode(self, example: dict, *, max_len: int | None) -> dict:
        words = example["words"][:max_len] if max_len else example["words"]
        forms = [self._form(w) for w in words]
        item = {
            "length": len(words),
            "words": torch.tensor(self.words.ids(forms), dtype=torch.long),
            "chars": pad_stack([torch.tensor(self._char_ids(w) or [0]) for w in words]) if words
            else torch.zeros(0, 1, dtype=torch.long),  # (T,C)
            "oov": torch.tensor([f not in self.seen for f in forms], dtype=torch.bool),
        }
        if "upos" in example:
            item["labels"] = torch.tensor(self.labels.ids(example["upos"][: len(words)]), dtype=torch.long)
        return item

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        B, T = len(items), max(it["length"] for it in items)
        C = max(it["chars"].shape[1] for it in items)
        chars = torch.zeros(B, T, C, dtype=torch.long)
        for b, it in enumerate(items):
            chars[b, : it["length"], : it["chars"].shape[1]] = it["chars"]
        batch = {
            "words": pad_stack([it["words"] for it in items]),
            "chars": chars,
            "mask": pad_stack([torch.ones(it["length"], dtype=torch.bool) for it in items], value=False),
            "oov": pad_stack([it["oov"] for it in items], value=False),
        }
        if "labels" in items[0]:
            batch["labels"] = pad_stack([it["labels"] for it in items], value=IGNORE)
        return batch

    def parse_inputs(self, lines: list[str]) -> list[dict]:
        return [{"words": tokenize(line)} for line in lines]

    def is_empty(self, example: dict) -> bool:
        return not example["words"]

    def describe(self, example: dict, prediction: list[int]) -> str:
        return " ".join(f"{w}/{self.labels.items[p]}" for w, p in zip(example["words"], prediction))
