"""Seeded splits of rows that come without splits: a ratio (dev and test taken first) or k folds; the row
indices are saved with the run (task.json), so eval, predict and resume see the same split. Data that comes with
its own train split takes its folds from train alone (train_folds): fold k is dev, the given test stays test."""

from __future__ import annotations

import sys

import torch

from attntrain.errors import UserError


def share(n: int, part: float) -> int:
    """How many of n rows a split setting takes: a fraction (below 1) or a count of rows."""
    if part >= 1:
        if part >= n:
            raise UserError(f"data.split.dev: {int(part)} rows leave no training rows (the data has {n})")
        return int(part)
    return round(n * part)


def ratio_split(n: int, dev: float, test: float, seed: int) -> dict[str, list[int]]:
    """Row indices of a seeded split of range(n) into train / dev / test (test and dev taken first)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_test, n_dev = share(n, test), share(n, dev)
    parts = {"test": perm[:n_test], "dev": perm[n_test:n_test + n_dev], "train": perm[n_test + n_dev:]}
    return {k: sorted(v) for k, v in parts.items()}


def fold_split(n: int, folds: int, fold: int, dev: float, seed: int) -> dict[str, list[int]]:
    """k-fold: fold `fold` of a seeded permutation is test; `dev` of the rest is dev; the remainder trains."""
    if fold >= folds:
        raise UserError(f"data.split.fold: {fold} is not below data.split.folds={folds}")
    if n < folds:
        raise UserError(f"data.split.folds: {folds} folds need at least {folds} rows (the data has {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    test = perm[fold::folds]
    held = set(test)
    rest = [i for i in perm if i not in held]
    n_dev = share(len(rest), dev)
    return {"test": sorted(test), "dev": sorted(rest[:n_dev]), "train": sorted(rest[n_dev:])}


def train_folds(n: int, folds: int, fold: int, seed: int) -> dict[str, list[int]]:
    """k folds of a given train split: fold `fold` of a seeded permutation is dev, the rest trains (the data's own
    test split is left as it is, and its own dev set aside, so k runs never select on one dev set)."""
    if fold >= folds:
        raise UserError(f"data.split.fold: {fold} is not below data.split.folds={folds}")
    if n < folds:
        raise UserError(f"data.split.folds: {folds} folds need at least {folds} training rows (train has {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    dev = set(perm[fold::folds])
    return {"train": [i for i in range(n) if i not in dev], "dev": sorted(dev)}


def given_train_folds(n: int, settings, given_dev: bool) -> dict[str, list[int]]:
    """train_folds of data.split (`settings`) for a given train split of n rows, said in one line on stderr."""
    fold = settings.fold or 0
    print(f"data.split.folds={settings.folds}: fold {fold} of the given train split is dev"
          + (", the given dev split is set aside" if given_dev else "") + "; the given test split stays test",
          file=sys.stderr, flush=True)
    return train_folds(n, settings.folds, fold, settings.seed)
