"""Whole-sequence labels: the shared part of every task whose input gets one label (a class).

A subclass reads examples {"input"..., "label": class name} and turns one input into tensors; this
base keeps the class list, adds the label tensor to batches and prints predictions with their
probability.
"""

from __future__ import annotations

import torch

from attntrain.data.task import Task
from attntrain.data.vocab import Vocab
from attntrain.errors import UserError


class ClassifyTask(Task):
    truncate_eval = True
    labels_to_predict: tuple[str, ...] = ("default",)  # values `data.label` may take

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.data.label not in self.labels_to_predict:
            raise UserError(f"data.label: '{cfg.data.label}' is not a label of task '{cfg.data.task}'; "
                            f"choose one of: {', '.join(self.labels_to_predict)}")
        self.labels = Vocab([], unk=False)

    @property
    def classes(self) -> list[str]:
        return self.labels.items

    def set_classes(self, classes: list[str]) -> None:
        self.labels = Vocab(classes, unk=False)

    def label_id(self, name: str) -> int:
        return self.labels.id(name)

    def info(self) -> dict:
        return {"num_labels": len(self.classes), "labels": self.classes}

    def with_label(self, item: dict, example: dict) -> dict:
        if example.get("label") is not None:
            item["labels"] = torch.tensor(self.label_id(example["label"]))
        return item

    def collate_labels(self, batch: dict, items: list[dict]) -> dict:
        if "labels" in items[0]:
            batch["labels"] = torch.stack([it["labels"] for it in items])  # (B,)
        return batch

    def describe(self, example: dict, prediction: tuple[int, float]) -> str:
        label, prob = prediction
        return f"{self.classes[label]}\t{prob:.3f}"

    def record(self, example: dict, prediction: tuple[int, float], scores: list[float] | None = None) -> dict:
        """{"label", "probability"} and, given the full softmax, {"probabilities": {class: p}}."""
        label, prob = prediction
        out = {"label": self.classes[label], "probability": prob}
        if scores is not None:
            out["probabilities"] = dict(zip(self.classes, scores))
        return out


def holdout(n: int, dev_size: int, *, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split range(n) into (train, dev) index lists with a fixed permutation (independent of the run seed)."""
    if dev_size >= n:
        raise UserError(f"data.dev_size: {dev_size} leaves no training examples (the split has {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[dev_size:]), sorted(perm[:dev_size])
