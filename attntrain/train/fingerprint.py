"""What a run was trained on, in a few bytes: saved in task.json, checked by `fit --resume`.

A resumed run that silently trains on other data mixes two datasets in one model and one set of figures.
The fingerprint of a split is its example count and a hash of the tensors of up to `SAMPLE` examples spread
evenly over it (the batches the model sees, so any change of rows, labels or encoding settings that reaches
those examples changes it). A change confined to examples outside the sample is not seen: the count and
the sample keep the check to about a second on the largest shipped split.

Since 2026-12-07 evening (`"hash": 2` beside the splits) lists and tuples in an example (raw words, nested ids) are
hashed too; before, only tensors and scalars were, so a change confined to a list-valued field passed. A run
saved before that is checked the old way, so its resume is not refused for the new hash alone.
"""

from __future__ import annotations

import hashlib

import torch

from attntrain.data.sources.arrow import ArrowExamples
from attntrain.errors import UserError

KEY = "data_fingerprint"  # its key in task.json, beside the task's own state
SAMPLE = 2048  # examples hashed per split
CHUNK = 64  # examples per batch while hashing
SUBSET = "train_subset"  # beside the splits: the training subset kept ([examples, key value of total, seed])
HASH = "hash"  # beside the splits: 2 = lists hashed too; absent = a run saved before (tensors and scalars only)


def _hash_value(digest, value, lists: bool) -> None:
    if torch.is_tensor(value):
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(value, (int, float, str, bool)):
        digest.update(repr(value).encode())
    elif lists and isinstance(value, (list, tuple)):
        digest.update(b"[%d" % len(value))
        for part in value:
            _hash_value(digest, part, lists)
        digest.update(b"]")


def split_fingerprint(task, split: str, lists: bool = True) -> list:
    """[examples, hash of the sampled encoded examples] of one split.

    The encoded examples, not batches: a batch may be drawn at random (pretraining masks), an example is not.
    """
    data = task.split(split)
    count = len(data)
    stride = max(1, count // SAMPLE)
    indices = list(range(0, count, stride))[:SAMPLE]
    digest = hashlib.sha256()
    for start in range(0, len(indices), CHUNK):
        chunk = indices[start:start + CHUNK]
        items = data.take(chunk) if isinstance(data, ArrowExamples) else [data[i] for i in chunk]
        for item in items:
            for key in sorted(item):
                value = item[key]
                digest.update(key.encode())
                _hash_value(digest, value, lists)
    return [count, digest.hexdigest()[:16]]


def data_fingerprint(task, lists: bool = True) -> dict:
    with torch.random.fork_rng(devices=[]):  # whatever encoding draws never moves the run's random stream
        prints: dict = {split: split_fingerprint(task, split, lists) for split in task.splits}
    if task.train_subset is not None:  # data.train_fraction / train_examples: [kept, which subset]
        prints[SUBSET] = task.train_subset.fingerprint()
    if lists:
        prints[HASH] = 2
    return prints


def task_state(state: dict) -> tuple[dict, dict | None]:
    """task.json -> (the task's own state, the saved data fingerprint or None for runs older than it)."""
    state = dict(state)
    return state, state.pop(KEY, None)


def check_same_data(saved: dict | None, task, run_path, *, allow_change: bool) -> None:
    """Refuse to resume on data that differs from what the run started with (unless allowed)."""
    if not saved or allow_change:
        return
    now = data_fingerprint(task, lists=saved.get(HASH) == 2)
    changed = [split for split in saved if split != HASH and split in now and list(saved[split]) != now[split]]
    if changed:
        split = changed[0]
        (was, _), (count, _) = saved[split], now[split]
        what = f"{was:,} -> {count:,} examples" if was != count else "same number of examples, other content"
        raise UserError(f"{run_path}: the {split} data changed since this run started ({what}); resuming would "
                        "train one model on two datasets. Restore the data, start a new run (--set name=...), or "
                        "resume anyway with `attntrain fit --resume RUN --allow-data-change`")
