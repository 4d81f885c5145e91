"""Batches by number of tokens with length bucketing, in an order fixed by (seed, epoch).

Because the order of epoch e is a pure function of (seed, e), a resumed run rebuilds it and skips the
batches already done: no sampler state needs saving.
"""

from __future__ import annotations

import torch

IGNORE = -100  # label id of padding and unlabeled positions (the losses' ignore_index)


def token_batches(lengths: list[int], max_tokens: int, *, shuffle: bool, seed: int = 0, epoch: int = 0) -> list[list[int]]:
    """Group example indices so that (batch size x longest length) <= max_tokens.

    Sorting by length keeps padding low; with `shuffle`, lengths get a little noise (so batch
    composition changes each epoch) and the batch order is permuted.
    """
    n = len(lengths)
    lens = torch.tensor(lengths, dtype=torch.float32)
    if shuffle:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.argsort(lens + 2.0 * torch.rand(n, generator=gen)).tolist()
    else:
        order = torch.argsort(lens, stable=True).tolist()
    batches, current, longest = [], [], 0
    for i in order:
        length = max(lengths[i], 1)
        if current and max(longest, length) * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, length)
    if current:
        batches.append(current)
    if shuffle:
        perm = torch.randperm(len(batches), generator=gen).tolist()
        batches = [batches[j] for j in perm]
    return batches


def padding_fraction(lengths: list[int], batches: list[list[int]]) -> float:
    """Share of the padded slots that hold padding (0 = no waste)."""
    slots = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    real = sum(lengths[i] for b in batches for i in b)
    return 1.0 - real / max(slots, 1)


def pad_stack(rows: list[torch.Tensor], value: int = 0) -> torch.Tensor:
    """Right-pad 1-D tensors to (B,T)."""
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=value)


def length_mask(lengths: list[int]) -> torch.Tensor:
    """(B,T) bool, True at the first lengths[b] positions of row b (T = the longest)."""
    return torch.arange(max(lengths, default=0))[None, :] < torch.tensor(lengths)[:, None]
