"""String <-> id tables built from the training split and saved in the run directory."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

PAD_TOKEN, UNK_TOKEN = "<pad>", "<unk>"


class Vocab:
    """An ordered list of strings; ids are positions. With `unk`, unknown strings map to id 1."""

    def __init__(self, items: list[str], *, unk: bool = True):
        self.items = list(items)
        self.index = {s: i for i, s in enumerate(self.items)}
        self.unk = unk

    @classmethod
    def build(cls, counts: Counter, *, min_freq: int = 1, specials: bool = True) -> "Vocab":
        """Most frequent first (ties alphabetical) so ids are stable across runs."""
        kept = sorted((s for s, c in counts.items() if c >= min_freq), key=lambda s: (-counts[s], s))
        items = [PAD_TOKEN, UNK_TOKEN] + kept if specials else kept
        return cls(items, unk=specials)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item: str) -> bool:
        return item in self.index

    def id(self, item: str) -> int:
        if self.unk:
            return self.index.get(item, 1)
        return self.index[item]

    def ids(self, items: Iterable[str]) -> list[int]:
        return [self.id(s) for s in items]

    def to_json(self) -> dict:
        return {"items": self.items, "unk": self.unk}

    @classmethod
    def from_json(cls, data: dict) -> "Vocab":
        return cls(data["items"], unk=data["unk"])
