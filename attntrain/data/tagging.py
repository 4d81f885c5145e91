"""Per-token labeling of text: UPOS tagging on a Universal Dependencies treebank.

The word vocabulary comes from the training split; characters of every token feed a character CNN
so rare and unseen words still get useful vectors. A token is out-of-vocabulary (OOV) when its
(case-folded) form never occurs in train; OOV accuracy is reported separately.
"""

from __future__ import annotations

from pathlib import Path

import torch

from attntrain.data.batching import pad_stack
from attntrain.data.conll import UPOS, load_conllu_dataset
from attntrain.data.root import dataset_dir
from attntrain.data.task import Task
from attntrain.data.text import TextVocab, tokenize
from attntrain.data.vocab import Vocab
from attntrain.errors import UserError
from attntrain.model.heads import IGNORE


class UdPosTask(Task):
    input = "text"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.text = TextVocab(cfg.model.embed)
        self.labels = Vocab(UPOS, unk=False)

    def _file(self, split: str) -> Path:
        folder = dataset_dir(self.cfg.data.root, self.cfg.data.dataset)
        found = sorted(folder.glob(f"*-ud-{split}.conllu"))
        if not found:
            raise UserError(f"no *-ud-{split}.conllu file in {folder}")
        return found[0]

    def read_split(self, split: str) -> list[dict]:
        return load_conllu_dataset(self._file(split)).to_list()

    def prepare(self, state: dict | None = None) -> None:
        self.text.prepare(state, lambda: self.split_raw("train"))
        if state is not None:
            self.labels = Vocab.from_json(state["labels"])  # the run's own tag set

    def state(self) -> dict:
        return {**self.text.state(), "labels": self.labels.to_json()}

    def info(self) -> dict:
        return {**self.text.info(), "num_labels": len(self.labels), "labels": self.labels.items}

    def encode(self, example: dict, *, max_len: int | None) -> dict:
        words = example["words"][:max_len] if max_len else example["words"]
        item = self.text.encode(words)
        if "upos" in example:
            item["labels"] = torch.tensor(self.labels.ids(example["upos"][: len(words)]), dtype=torch.long)
        return item

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.text.collate(items)
        if "labels" in items[0]:
            batch["labels"] = pad_stack([it["labels"] for it in items], value=IGNORE)
        return batch

    def parse_inputs(self, lines: list[str]) -> list[dict]:
        return [{"words": tokenize(line)} for line in lines]

    def is_empty(self, example: dict) -> bool:
        return not example["words"]

    def describe(self, example: dict, prediction: list[int]) -> str:
        return " ".join(f"{w}/{self.labels.items[p]}" for w, p in zip(example["words"], prediction))

    def record(self, example: dict, prediction: list[int], scores=None) -> dict:
        """{"tokens": [...], "tags": [...]}, one tag per token (a plain dict: span fields can join it)."""
        return {"tokens": list(example["words"]), "tags": [self.labels.items[p] for p in prediction]}
