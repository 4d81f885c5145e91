"""The target table, `TARGETS`, keyed by the head kind: a label per input (sequence), a tag per input vector
(tagging), or none (self-supervised pretraining)."""

from __future__ import annotations

from attntrain.data.inputs.vocab import Vocab
from attntrain.data.targets.labels import LabelTarget
from attntrain.data.targets.tags import TagsTarget


class NoTarget:
    """No target (self-supervised pretraining): the input is its own target (attntrain.data.tasks.pretrain masks it)."""

    head = "pretrain"
    labels = Vocab([], unk=False)

    def __init__(self, data_cfg):
        self.field = None

    def value(self, row: dict, where: str) -> None:
        return None

    def prepare(self, train, state: dict | None) -> None:
        pass

    def check(self, rows, split: str) -> None:
        pass

    def report(self) -> None:
        pass

    def state(self) -> dict:
        return {}

    def info(self) -> dict:
        return {}

    def encode(self, row: dict, length: int) -> dict:
        return {}

    def collate(self, items: list[dict]) -> dict:
        return {}


TARGETS = {"sequence": LabelTarget, "tagging": TagsTarget, "pretrain": NoTarget}
