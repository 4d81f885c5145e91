"""Targets: a row's target field -> labels for a head (the table, `TARGETS`: attntrain/data/targets/kinds.py).

`label`: one class per input (the sequence head); `tags`: one tag per input vector (the tagging head,
attntrain/data/targets/tags.py), with span schemes (BIO / IOB2 / BIOES) detected from the tag counts. Every
reader's rows pass through the same cleaning and checks here (`scan`): spaces around a label or tag are stripped (said
once, with a count), an empty or missing label, a mix of integer and text labels, fewer than two classes
in train and a tag outside the detected span scheme are errors naming file:line; an I- tag that opens a
span (IOB1 style) is counted and reported, or converted with `data.target.repair: iob1`. The label set
comes from the training rows and is saved with the run; a dev/test label that train never saw is an
error naming the split and the label (the model could never predict it). Seq2seq targets (text) are
handled by attntrain.data.tasks.translation, which owns the subword vocabulary shared with the input.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from typing import Any, Iterator

import torch

from attntrain.data.sources.arrow import ArrowRows
from attntrain.data.inputs.kinds import field_value
from attntrain.data.inputs.vocab import Vocab
from attntrain.errors import UserError

WHERE = "_where"  # a row's file:line (as attntrain.data.sources.files)
INTEGER = re.compile(r"[+-]?\d+")


def note(message: str) -> None:
    """A remark on the data that changes nothing the user asked for, on stderr (stdout keeps results)."""
    print(f"note: {message}", file=sys.stderr, flush=True)


def row_where(rows, index: int, split: str, what: str = "row") -> str:
    """Row `index`'s file:line, or `<split> row <n>` when the rows do not know it."""
    where = rows.where(index) if isinstance(rows, ArrowRows) else rows[index].get(WHERE)
    return where or f"{split} {what} {index + 1}"


def field_values(rows, field: str, split: str) -> Iterator[Any]:
    """A split's `field`, one value per row in order; an Arrow view reads that column alone."""
    if isinstance(rows, ArrowRows) and field in rows.dataset.column_names:
        for batch in rows.column_batches(field):
            yield from batch
        return
    for index, row in enumerate(rows):
        yield field_value(row, field, f"{split} row {index + 1}")


class BadLabel(ValueError):
    """A label value that is no class name; the caller adds where it is."""


def label_name(value: Any, field: str, where: str) -> str:
    """A class label as a string without surrounding spaces; ints and bools are allowed, floats and lists not."""
    try:
        return plain_label(value, field)
    except BadLabel as e:
        raise UserError(f"{where}: {e}") from None


def plain_label(value: Any, field: str) -> str:
    if isinstance(value, (bool, int, str)):
        return str(value).strip()
    raise BadLabel(f"field '{field}' must be a class label (text or integer), got {type(value).__name__} {value!r}")


def sorted_labels(names: set[str]) -> list[str]:
    """Integers in numeric order, other names alphabetically: stable ids across runs."""
    if all(INTEGER.fullmatch(n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


def label_kind(value: Any) -> str:
    """'integer' for 3 or '3', else 'text' (True is text: a label field holds one of the two)."""
    integer = type(value) is int or isinstance(value, str) and INTEGER.fullmatch(value.strip())
    return "integer" if integer else "text"


class Cleaned:
    """What cleaning changed in a target field (spaces stripped, IOB1 tags), said once by `report`."""

    field: str

    def __init__(self):
        self.stripped: Counter = Counter()  # split -> values with spaces around them
        self.first_stripped: tuple[str, str] | None = None  # (where, value)

    def strip(self, value: str, split: str, where) -> str:
        clean = value.strip()
        if clean != value:
            self.stripped[split] += 1
            if self.first_stripped is None:
                self.first_stripped = (where(), value)
        return clean

    def report(self) -> None:
        """One note for what was cleaned since the last report."""
        if self.stripped:
            where, value = self.first_stripped
            splits = ", ".join(f"{split} {count}" for split, count in self.stripped.items())
            note(f"stripped the spaces around {sum(self.stripped.values())} value(s) of field '{self.field}' "
                 f"({splits}; the first: {value!r} at {where})")
        self.stripped, self.first_stripped = Counter(), None


class LabelTarget(Cleaned):
    """One label per row (sequence head)."""

    head = "sequence"

    def __init__(self, data_cfg):
        super().__init__()
        self.field, self.names = data_cfg.target.field, data_cfg.target.names
        self.declared = data_cfg.target.labels or self.names
        self.labels = Vocab([], unk=False)

    def value(self, row: dict, where: str) -> str | None:
        value = field_value(row, self.field, where)
        if value is None:
            return None
        try:
            return self.name(value)
        except BadLabel as e:
            raise UserError(f"{row.get(WHERE, where)}: {e}") from None

    def name(self, value: Any) -> str:
        """A raw label as its class name: stripped text, or names[i] for an integer i with data.target.names."""
        if isinstance(value, str):
            value = value.strip()
        if self.names and (type(value) is int or isinstance(value, str) and value.isdigit()):  # label i -> names[i]
            value = int(value)
            if not 0 <= value < len(self.names):
                raise BadLabel(f"label {value} has no name in data.target.names (0..{len(self.names) - 1})")
            return self.names[value]
        return plain_label(value, self.field)

    def scan(self, rows, split: str) -> tuple[Counter, dict[str, int]]:
        """A split's labels cleaned: (label -> rows, label -> its first row). An empty or missing label, a
        value that is no label and a mix of integer and text labels are errors naming file:line."""
        counts, first, kinds = Counter(), {}, {}
        for index, raw in enumerate(field_values(rows, self.field, split)):
            where = lambda: row_where(rows, index, split)  # noqa: E731 - only made for a message
            if raw is None or isinstance(raw, str) and not raw.strip():
                shown = "null" if raw is None else "empty" if raw == "" else f"only spaces ({raw!r})"
                raise UserError(f"{where()}: no label: field '{self.field}' is {shown}; every {split} row needs one")
            if isinstance(raw, str):
                raw = self.strip(raw, split, where)
            kinds.setdefault(label_kind(raw), [0, index, raw])[0] += 1
            try:
                name = self.name(raw)
            except BadLabel as e:
                raise UserError(f"{where()}: {e}") from None
            counts[name] += 1
            first.setdefault(name, index)
        if len(kinds) > 1:
            (few, (_, index, raw)), (many, (count, start, _)) = sorted(kinds.items(), key=lambda kv: kv[1][0])
            raise UserError(f"{row_where(rows, index, split)}: label {raw!r} is {few} among {many} labels "
                            f"({count} of the {split} labels of field '{self.field}' are {many}s, the first at "
                            f"{row_where(rows, start, split)}); give every label one type")
        return counts, first

    def prepare(self, train: list[dict], state: dict | None) -> None:
        if state is not None:
            self.labels = Vocab.from_json(state["labels"])
            return
        counts, first = self.scan(train, "train")
        self.labels = Vocab(list(self.declared) if self.declared else sorted_labels(set(counts)), unk=False)
        self.refuse_unknown(train, "train", first)
        if len(counts) < 2:
            label = next(iter(counts))
            raise UserError(f"{row_where(train, 0, 'train')}: every one of the {counts[label]} train rows has "
                            f"label '{label}' (field '{self.field}'); a classifier needs at least two classes")

    def check(self, rows: list[dict], split: str) -> None:
        """A dev / test split's labels: cleaned and checked as train's, and each one known."""
        self.refuse_unknown(rows, split, self.scan(rows, split)[1])

    def refuse_unknown(self, rows, split: str, first: dict[str, int]) -> None:
        unknown = sorted((index, name) for name, index in first.items() if name not in self.labels)
        if unknown:
            index, name = unknown[0]
            raise UserError(unknown_label(row_where(rows, index, split), "label", name, self.labels.items,
                                          self.declared))

    def state(self) -> dict:
        return {"labels": self.labels.to_json()}

    def info(self) -> dict:
        return {"num_labels": len(self.labels), "labels": self.labels.items}

    def encode(self, row: dict, length: int) -> dict:
        name = self.value(row, "example") if self.field in row else None
        return {} if name is None else {"labels": torch.tensor(self.labels.id(name))}

    def collate(self, items: list[dict]) -> dict:
        return {"labels": torch.stack([it["labels"] for it in items])} if "labels" in items[0] else {}  # (B,)


def unknown_label(where: str, what: str, name: str, known: list[str], declared) -> str:
    """The message for a label outside the label set (declared in data.target.labels, or seen in train)."""
    if declared:
        return f"{where}: {what} '{name}' is not in data.target.labels ({', '.join(known[:30])})"
    return f"{where}: {what} '{name}' never occurs in train (train {what}s: {', '.join(known[:30])})"
