"""Held-out inputs that are training inputs too, and training inputs given two labels: counted when a run
starts, said in one line each, and kept in the run's start record.

The rows compared are the ones the run uses (after `train_limit`, `eval_limit` and a training subset). A dev
or test input equal to a training input (whitespace normalised, case kept) is scored as if unseen; on a
person's data that is most often a file copied into two splits or a split made after rows were duplicated, and
it inflates every held-out figure without a sign. The same input with two labels in train is label noise the
model cannot fit. Neither stops a run (a few repeats are normal: short phrases, retweets); both are said.
Text inputs only: audio and image inputs are files, whose equality would need their bytes read.
"""

from __future__ import annotations

import sys
from typing import Any, Iterator

from attntrain.data.inputs.kinds import field_value
from attntrain.data.sources.arrow import ArrowRows
from attntrain.data.sources.files import WHERE

LOUD = 0.05  # a share of held-out inputs seen in train from which the line says "warning", not "note"


def _key(value: Any) -> int | None:
    """The input as a 64-bit hash of its whitespace-normalised text: the training keys of a large set stay small."""
    if value is None:
        return None
    text = " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else " ".join(str(value).split())
    return hash(text)


def _values(rows, field: str) -> Iterator[Any]:
    if isinstance(rows, ArrowRows) and field in rows.column_names:
        for batch in rows.column_batches(field):
            yield from batch
        return
    for number, row in enumerate(rows, 1):
        yield field_value(row, field, row.get(WHERE, f"row {number}"))


def _name(name, value: Any) -> Any:
    try:
        return None if value is None else name(value)
    except Exception:  # a bad label is the target's error to report, with its file and line
        return value


def _where(rows, index: int, split: str) -> str:
    where = rows.where(index) if isinstance(rows, ArrowRows) else rows[index].get(WHERE)
    return where or f"{split} row {index + 1}"


def check_overlap(splits: dict, field: str, label: str | None, name=str) -> list[dict]:
    """One record per finding: {"check": "held_out_in_train" | "train_label_conflicts", ...} with counts and
    a first example; `label` is the target field of a whole-sequence label (None: labels are not compared),
    `name` makes a raw label its class name (sources differ: 1 and "1" are one label)."""
    train = splits.get("train")
    if train is None or not len(train):
        return []
    first: dict[int, int] = {}
    labels: dict[int, Any] = {}
    conflicts, conflict_at = 0, None
    train_labels = _values(train, label) if label else iter(())
    for index, value in enumerate(_values(train, field)):
        key = _key(value)
        tag = _name(name, next(train_labels, None)) if label else None
        if key is None:
            continue
        if key not in first:
            first[key], labels[key] = index, tag
        elif label and tag != labels[key]:
            conflicts += 1
            conflict_at = conflict_at or (first[key], index)
    findings = []
    for split in ("dev", "test"):
        rows = splits.get(split)
        if rows is None or not len(rows):
            continue
        seen = [(i, first[k]) for i, k in enumerate(map(_key, _values(rows, field))) if k is not None and k in first]
        if seen:
            held, trained = seen[0]
            findings.append({"check": "held_out_in_train", "split": split, "count": len(seen), "of": len(rows),
                             "example": f"{_where(rows, held, split)} = {_where(train, trained, 'train')}"})
    if conflicts:
        a, b = conflict_at
        findings.append({"check": "train_label_conflicts", "split": "train", "count": conflicts, "of": len(train),
                         "example": f"{_where(train, a, 'train')} and {_where(train, b, 'train')}"})
    return findings


def describe(finding: dict) -> str:
    """The line a finding is said with, starting `note:` or `warning:`."""
    count, total, split = finding["count"], finding["of"], finding["split"]
    share = count / max(1, total)
    if finding["check"] == "train_label_conflicts":
        return (f"note: {count:,} training inputs repeat an earlier one with another label (e.g. {finding['example']}): "
                "label noise the model cannot fit")
    level = "warning" if share >= LOUD else "note"
    return (f"{level}: {count:,} of {total:,} {split} inputs ({100 * share:.1f}%) are training inputs too (e.g. "
            f"{finding['example']}); the {split} figures count them as unseen")


def say(findings: list[dict]) -> list[dict]:
    """Each finding's line on stderr (stdout keeps results); returns the findings."""
    for finding in findings:
        print(describe(finding), file=sys.stderr, flush=True)
    return findings
