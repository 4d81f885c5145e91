"""Nested, seeded training subsets (`data.train_fraction` / `data.train_examples`).

One permutation of the training examples per `data.subset_seed` (default: the run seed); a subset is its
first n examples, so with the same seed the 1% subset lies inside the 3% one, which lies inside the 10% one
(a data-efficiency curve then adds examples instead of drawing a new sample at each point). Only train is cut: dev and test
stay whole. `data.train_limit` (the first N examples) applies before, so it narrows what is sampled from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from attntrain.errors import UserError


@dataclass
class Subset:
    """Which training examples a run keeps: `indices` (ascending) of the `total` the split had."""

    key: str  # the setting that asked for it: data.train_fraction | data.train_examples
    value: float  # its value
    seed: int  # data.subset_seed, else the run seed
    total: int  # training examples before the cut
    indices: list[int]  # kept positions, ascending (the first n of the seeded permutation)

    def describe(self) -> str:
        return (f"{self.key} {self.value:g}: {len(self.indices):,} of {self.total:,} training examples "
                f"(subset seed {self.seed})")

    def fingerprint(self) -> list:
        """[kept, how]: saved in task.json's data fingerprint, so a resume with another subset is refused."""
        return [len(self.indices), f"{self.key} {self.value:g} of {self.total}, seed {self.seed}"]


def subset_size(total: int, data) -> Optional[tuple[str, float, int]]:
    """(key, value, examples kept) for the data settings, or None when the whole split trains."""
    if data.train_fraction is not None:
        kept = max(1, round(data.train_fraction * total))
        return "data.train_fraction", data.train_fraction, kept
    if data.train_examples is not None:
        if data.train_examples > total:
            raise UserError(f"data.train_examples: {data.train_examples:,} is more than the {total:,} training "
                            "examples there are; give at most that many, or drop the key to train on all")
        return "data.train_examples", data.train_examples, data.train_examples
    return None


def train_subset(total: int, cfg) -> Optional[Subset]:
    """The subset cfg.data asks for (None: keep every example); data.subset_seed defaults to the run seed."""
    size = subset_size(total, cfg.data)
    if size is None:
        return None
    key, value, kept = size
    seed = cfg.data.subset_seed if cfg.data.subset_seed is not None else cfg.seed
    order = np.random.default_rng(seed).permutation(total)  # one order per seed: nested subsets
    return Subset(key, value, seed, total, sorted(int(i) for i in order[:kept]))


def too_few_classes(subset: Subset, labels: set) -> None:
    """A classifier's subset must hold two classes at least: one clear error naming the key."""
    if len(labels) < 2:
        only = next(iter(labels), None)
        raise UserError(f"{subset.key}: the {len(subset.indices):,} training examples kept ({subset.describe()}) "
                        f"all have the label {only!r}; a classifier needs at least two classes. Keep more examples "
                        "or try another data.subset_seed")
