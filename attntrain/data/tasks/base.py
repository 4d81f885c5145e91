"""The task interface every dataset implements; the trainer only talks to this.

A task reads its splits, builds (or loads) its vocabularies, encodes examples into tensors once,
and turns lists of examples into padded batches. The batch is a dict of tensors that the model's
Embed and Head understand; `mask` (B,T) bool marks real positions in every batch.
"""

from __future__ import annotations

from typing import Any

import torch

from attntrain.data.sources.arrow import ArrowExamples
from attntrain.data.batching import padding_fraction, token_batches
from attntrain.data.tasks.subset import Subset, train_subset
from attntrain.errors import UserError


class Task:
    """Base class: subclasses implement the data-specific methods marked below."""

    input: str = "text"  # input kind, a key of attntrain.model.embed.INPUTS
    splits: tuple[str, ...] = ("train", "dev", "test")
    data_checks: tuple | list = ()  # findings of data/tasks/overlap.py when prepared from train (held-out inputs in train, ...)
    predict_batch_size: int = 32  # inputs per forward pass in `predict`
    truncate_eval: bool = False  # apply data.max_len to dev/test too (one label per input); tagging never does

    def __init__(self, cfg):
        self.cfg = cfg
        self._encoded: dict[str, list[dict]] = {}
        self._last_batches: tuple = (None, None, [])  # (settings, encoded split, the batches made from them)
        self.train_subset: Subset | None = None  # data.train_fraction / train_examples: what train keeps

    # ---- to implement ------------------------------------------------------------------------
    def prepare(self, state: dict | None = None) -> None:
        """Build vocabularies from train (state None) or restore them from a saved `state()`."""
        raise NotImplementedError

    def state(self) -> dict:
        """JSON-serialisable vocabularies etc., saved in the run directory."""
        raise NotImplementedError

    def info(self) -> dict:
        """What the model builder needs: {"input": kind, sizes ...}."""
        raise NotImplementedError

    def read_split(self, split: str) -> list[dict]:
        """Raw examples of a split."""
        raise NotImplementedError

    def encode(self, example: dict, *, max_len: int | None) -> dict:
        """One raw example -> dict of tensors (and "length")."""
        raise NotImplementedError

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        """Encoded examples -> padded batch."""
        raise NotImplementedError

    def parse_inputs(self, lines: list[str]) -> list[dict]:
        """User input for `predict` -> raw examples (without labels)."""
        raise NotImplementedError

    def is_empty(self, example: dict) -> bool:
        """An empty input line: `predict` echoes an empty line instead of running the model."""
        return False

    def describe(self, example: dict, prediction: Any) -> str:
        """One prediction as text for the terminal."""
        raise NotImplementedError

    def record(self, example: dict, prediction: Any, scores: Any = None) -> dict:
        """One prediction as a JSON-ready dict (`predict --format jsonl`, the HTTP server).

        `scores`: what the head adds beyond `prediction` (class probabilities, a translation's
        log-probability), or None. The default wraps `describe`; tasks override it with fields.
        """
        return {"output": self.describe(example, prediction)}

    def gold_record(self, example: dict) -> dict:
        """What `predictions_<split>.jsonl` shows beside a prediction: the input and the gold answer."""
        return {}

    def position_labels(self, example: dict, item: dict) -> list[str]:
        """A short name per input vector (axis labels of attention maps): the words for text."""
        return list(example["words"])[: item["length"]]

    # ---- shared ------------------------------------------------------------------------------
    def eval_max_len(self) -> int | None:
        """Length cap of inputs outside training (dev/test, predict, attention maps)."""
        return self.cfg.data.max_len if self.truncate_eval else None

    def split_raw(self, name: str) -> list[dict]:
        """The raw examples of a split, cut to `data.train_limit` / `data.eval_limit`."""
        if name not in self.splits:
            raise UserError(f"unknown split '{name}'; this task has {', '.join(self.splits)}")
        raw = self.read_split(name)
        limit = self.cfg.data.train_limit if name == "train" else self.cfg.data.eval_limit
        raw = raw[:limit] if limit is not None else raw
        return self.cut_train(raw) if name == "train" else raw

    def cut_train(self, rows):
        """The training rows kept by data.train_fraction / data.train_examples (all of them when unset)."""
        self.train_subset = train_subset(len(rows), self.cfg)
        if self.train_subset is None:
            return rows
        kept = rows.select(self.train_subset.indices) if hasattr(rows, "select") else [
            rows[i] for i in self.train_subset.indices]
        self.check_subset(kept)
        return kept

    def check_subset(self, rows) -> None:
        """Classification tasks refuse a subset with a single class (tasks override it)."""

    def split(self, name: str) -> list[dict]:
        """Encoded examples of a split, encoded once: a list kept in memory, or (ArrowExamples) an Arrow
        table read on demand."""
        if name not in self._encoded:
            raw = self.split_raw(name)
            max_len = self.cfg.data.max_len if name == "train" else self.eval_max_len()
            self._encoded[name] = [self.encode(ex, max_len=max_len) for ex in raw]
        return self._encoded[name]

    def lengths(self, name: str) -> list[int]:
        data = self.split(name)
        if isinstance(data, ArrowExamples):  # a length column: no example is made to read it
            return data.lengths.tolist()
        return [item["length"] for item in data]

    def batches(self, name: str, *, shuffle: bool, epoch: int = 0) -> list[list[int]]:
        # The trainer asks for epoch 0 three times before its first step (run length, start record, loop);
        # on a large split each costs a pass over every example, so the last answer is kept.
        max_tokens = self.cfg.data.max_tokens if shuffle else self.cfg.data.eval_max_tokens
        key, data = (name, shuffle, epoch, max_tokens, self.cfg.seed), self.split(name)
        if self._last_batches[0] != key or self._last_batches[1] is not data:  # the same encoded split object
            batches = token_batches(self.lengths(name), max_tokens, shuffle=shuffle, seed=self.cfg.seed, epoch=epoch)
            self._last_batches = (key, data, batches)
        return self._last_batches[2]

    def padding(self, name: str, batches: list[list[int]]) -> float:
        return padding_fraction(self.lengths(name), batches)

    def batch(self, name: str, indices: list[int]) -> dict[str, torch.Tensor]:
        data = self.split(name)
        return self.collate(data.take(indices) if isinstance(data, ArrowExamples) else [data[i] for i in indices])
