"""Sentence and document sentiment (whole-sequence label over text): SST-2 and IMDB.

sst2: `stsa_binary/stsa.binary.{train,dev,test}` (Kim 2014 split, sentences lowercased and
PTB-tokenised). With `data.phrases`, the GLUE SST-2 training phrases (sub-phrases of the training
sentences) are added to train; any phrase equal to a dev or test sentence is dropped first.
imdb: `{train,test}.jsonl.gz` reviews; `data.dev_size` reviews of train are held out as dev.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from attntrain.data.classify import ClassifyTask, holdout
from attntrain.data.root import dataset_dir
from attntrain.data.text import TextVocab, tokenize, truncate
from attntrain.errors import UserError

SENTIMENT = ["negative", "positive"]


class TextClassifyTask(ClassifyTask):
    """Text in, one class out; subclasses read the examples {"words": [...], "label": name}."""

    input = "text"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.text = TextVocab(cfg.model.embed)
        self.set_classes(SENTIMENT)

    def prepare(self, state: dict | None = None) -> None:
        self.text.prepare(state, lambda: self.split_raw("train"))

    def state(self) -> dict:
        return self.text.state()

    def info(self) -> dict:
        return {**self.text.info(), **super().info()}

    def encode(self, example: dict, *, max_len: int | None) -> dict:
        words = truncate(example["words"], max_len, self.cfg.data.truncate)
        return self.with_label(self.text.encode(words), example)

    def collate(self, items: list[dict]) -> dict:
        return self.collate_labels(self.text.collate(items), items)

    def parse_inputs(self, lines: list[str]) -> list[dict]:
        return [{"words": tokenize(clean(line))} for line in lines]

    def position_labels(self, example: dict, item: dict) -> list[str]:
        return truncate(list(example["words"]), self.eval_max_len(), self.cfg.data.truncate)  # the words encoded

    def is_empty(self, example: dict) -> bool:
        return not example["words"]


def clean(text: str) -> str:
    return re.sub(r"<br\s*/?>", " ", text)


def _ptb(sentence: str) -> str:
    """GLUE spelling -> stsa_binary spelling, to compare sentences across the two packagings."""
    return sentence.strip().lower().replace("(", "-lrb-").replace(")", "-rrb-").replace("/", "\\/")


class Sst2Task(TextClassifyTask):
    def _folder(self) -> Path:
        return dataset_dir(self.cfg.data.root, self.cfg.data.dataset)

    def _read_stsa(self, split: str) -> list[dict]:
        path = self._folder() / "stsa_binary" / f"stsa.binary.{split}"
        if not path.is_file():
            raise UserError(f"sst2: {path} not found")
        examples = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            label, _, sentence = line.partition(" ")
            if label not in ("0", "1") or not sentence.strip():
                raise UserError(f"{path}:{number}: expected '<0|1> <sentence>', got {line[:60]!r}")
            examples.append({"words": sentence.split(), "label": SENTIMENT[int(label)]})
        return examples

    def _read_phrases(self, exclude: set[str]) -> tuple[list[dict], int]:
        path = self._folder() / "glue_sst2" / "train.tsv"
        if not path.is_file():
            raise UserError(f"data.phrases: {path} not found")
        phrases, dropped = [], 0
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines[1:], 2):  # first line is the header
            sentence, tab, label = line.rpartition("\t")
            if not tab or label not in ("0", "1"):
                raise UserError(f"{path}:{number}: expected '<sentence>\\t<0|1>', got {line[:60]!r}")
            form = _ptb(sentence)
            if form in exclude:
                dropped += 1
                continue
            phrases.append({"words": form.split(), "label": SENTIMENT[int(label)]})
        return phrases, dropped

    def read_split(self, split: str) -> list[dict]:
        examples = self._read_stsa(split)
        if split == "train" and self.cfg.data.phrases:
            exclude = {" ".join(ex["words"]) for s in ("dev", "test") for ex in self._read_stsa(s)}
            phrases, dropped = self._read_phrases(exclude)
            self.phrase_stats = {"phrases": len(phrases), "dropped_dev_test": dropped}
            examples = examples + phrases
        return examples


class ImdbTask(TextClassifyTask):
    def _read(self, name: str) -> list[dict]:
        path = dataset_dir(self.cfg.data.root, self.cfg.data.dataset) / f"{name}.jsonl.gz"
        if not path.is_file():
            raise UserError(f"imdb: {path} not found")
        examples = []
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    try:
                        row = json.loads(line)
                        examples.append({"words": tokenize(clean(row["text"])), "label": SENTIMENT[int(row["label"])]})
                    except (ValueError, KeyError, IndexError, TypeError) as e:
                        raise UserError(f"{path}:{number}: not a review record ({e})") from None
        except (OSError, EOFError) as e:
            raise UserError(f"{path}: unreadable gzip file ({e})") from None
        return examples

    def read_split(self, split: str) -> list[dict]:
        if split == "test":
            return self._read("test")
        if not hasattr(self, "_train_all"):
            self._train_all = self._read("train")
        train, dev = holdout(len(self._train_all), self.cfg.data.dev_size)
        return [self._train_all[i] for i in (train if split == "train" else dev)]
