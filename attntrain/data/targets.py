"""Targets: a row's target field -> labels for a head. One table, `TARGETS`, keyed by the head kind.

`label`: one class per input (the sequence head); `tags`: one tag per input vector (the tagging
head), with span schemes (BIO / IOB2 / BIOES) detected from the tag set. The label set comes from
the training rows and is saved with the run; a dev/test label that train never saw is an error
naming the split and the label (the model could never predict it). Seq2seq targets (text) are
handled by attntrain.data.seq2seq, which owns the subword vocabulary shared with the input.
"""

from __future__ import annotations

from typing import Any

import torch

from attntrain.data.batching import pad_stack
from attntrain.data.inputs import field_value
from attntrain.data.vocab import Vocab
from attntrain.errors import UserError
from attntrain.model.heads import IGNORE

SCHEMES = ("auto", "none", "iob2", "bioes")


def label_name(value: Any, field: str, where: str) -> str:
    """A class label as a string; ints and bools are allowed, floats and lists are not."""
    if isinstance(value, bool) or isinstance(value, int) or isinstance(value, str):
        return str(value)
    raise UserError(f"{where}: field '{field}' must be a class label (text or integer), "
                    f"got {type(value).__name__} {value!r}")


def sorted_labels(names: set[str]) -> list[str]:
    """Integers in numeric order, other names alphabetically: stable ids across runs."""
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


class LabelTarget:
    """One label per row (sequence head)."""

    head = "sequence"

    def __init__(self, data_cfg):
        self.field, self.names = data_cfg.target.field, data_cfg.target.names
        self.declared = data_cfg.target.labels or self.names
        self.labels = Vocab([], unk=False)

    def value(self, row: dict, where: str) -> str | None:
        value = field_value(row, self.field, where)
        if value is None:
            return None
        if self.names and (type(value) is int or isinstance(value, str) and value.isdigit()):  # label i -> names[i]
            value = int(value)
            if not 0 <= value < len(self.names):
                raise UserError(f"{where}: label {value} has no name in data.target.names (0..{len(self.names) - 1})")
            return self.names[value]
        return label_name(value, self.field, where)

    def prepare(self, train: list[dict], state: dict | None) -> None:
        if state is not None:
            self.labels = Vocab.from_json(state["labels"])
            return
        if self.declared:
            self.labels = Vocab(list(self.declared), unk=False)
            self.check(train, "train")
            return
        names = {self.value(r, "train") for r in train} - {None}
        self.labels = Vocab(sorted_labels(names), unk=False)

    def check(self, rows: list[dict], split: str) -> None:
        for number, row in enumerate(rows, 1):
            where = row.get("_where", f"{split} row {number}")
            name = self.value(row, where)
            if name is not None and name not in self.labels:
                raise UserError(unknown_label(where, "label", name, self.labels.items, self.declared))

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


def detect_scheme(tags: list[str]) -> str:
    """'bioes' when S-/E- tags occur, 'iob2' when B-/I- tags occur, else 'none' (plain tags, e.g. UPOS)."""
    prefixes = {t.split("-", 1)[0] for t in tags if "-" in t}
    if {"S", "E"} & prefixes and prefixes <= {"B", "I", "E", "S"}:
        return "bioes"
    if prefixes and prefixes <= {"B", "I"}:
        return "iob2"
    return "none"


def check_span_tag(tag: str, scheme: str, where: str) -> None:
    if scheme == "none" or tag == "O":
        return
    prefix, dash, kind = tag.partition("-")
    valid = {"iob2": "BI", "bioes": "BIES"}[scheme]
    if not dash or not kind or prefix not in valid:
        raise UserError(f"{where}: tag '{tag}' is not valid {scheme.upper()} (expected O or "
                        f"{'/'.join(valid)}-TYPE)")


class TagsTarget:
    """One tag per input vector (tagging head); span schemes give entity-level metrics and valid decoding."""

    head = "tagging"

    def __init__(self, data_cfg):
        self.field, self.scheme, self.declared = data_cfg.target.field, data_cfg.target.scheme, data_cfg.target.labels
        self.labels = Vocab([], unk=False)

    def value(self, row: dict, where: str) -> list[str] | None:
        tags = field_value(row, self.field, where)
        if tags is None:
            return None
        if not isinstance(tags, (list, tuple)) or not all(isinstance(t, (str, int)) for t in tags):
            raise UserError(f"{where}: field '{self.field}' must be a list of tags, got {type(tags).__name__}")
        return [str(t) for t in tags]

    def prepare(self, train: list[dict], state: dict | None) -> None:
        if state is not None:
            self.labels, self.scheme = Vocab.from_json(state["labels"]), state["scheme"]
            return
        names = list(self.declared) if self.declared else sorted({t for r in train for t in (self.value(r, "train") or [])})
        if self.scheme == "auto":
            self.scheme = detect_scheme(names)
        for row in train:
            for tag in self.value(row, "train") or []:
                check_span_tag(tag, self.scheme, row.get("_where", f"train: field '{self.field}'"))
        if self.scheme != "none" and "O" in names:  # O first: id 0 is the outside tag
            names = ["O"] + [n for n in names if n != "O"]
        self.labels = Vocab(names, unk=False)
        if self.declared:
            self.check(train, "train")

    def check(self, rows: list[dict], split: str) -> None:
        for number, row in enumerate(rows, 1):
            where = row.get("_where", f"{split} sentence {number}")
            for tag in self.value(row, where) or []:
                if tag not in self.labels:
                    check_span_tag(tag, self.scheme, where)
                    raise UserError(unknown_label(where, "tag", tag, self.labels.items, self.declared))

    def state(self) -> dict:
        return {"labels": self.labels.to_json(), "scheme": self.scheme}

    def info(self) -> dict:
        return {"num_labels": len(self.labels), "labels": self.labels.items, "scheme": self.scheme}

    def encode(self, row: dict, length: int) -> dict:
        tags = row.get(self.field)
        if tags is None:
            return {}
        return {"labels": torch.tensor(self.labels.ids(str(t) for t in tags[:length]), dtype=torch.long)}

    def collate(self, items: list[dict]) -> dict:
        return {"labels": pad_stack([it["labels"] for it in items], value=IGNORE)} if "labels" in items[0] else {}


class NoTarget:
    """No target (self-supervised pretraining): the input is its own target (attntrain.data.pretrain masks it)."""

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

    def state(self) -> dict:
        return {}

    def info(self) -> dict:
        return {}

    def encode(self, row: dict, length: int) -> dict:
        return {}

    def collate(self, items: list[dict]) -> dict:
        return {}


TARGETS = {"sequence": LabelTarget, "tagging": TagsTarget, "pretrain": NoTarget}
