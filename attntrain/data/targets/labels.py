"""Targets: a row's target field -> labels for a head. One table, `TARGETS`, keyed by the head kind.

`label`: one class per input (the sequence head); `tags`: one tag per input vector (the tagging
head), with span schemes (BIO / IOB2 / BIOES) detected from the tag counts. Every reader's rows pass
through the same cleaning and checks here (`scan`): spaces around a label or tag are stripped (said
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
from attntrain.data.batching import IGNORE, pad_stack
from attntrain.data.inputs.kinds import field_value
from attntrain.data.inputs.vocab import Vocab
from attntrain.errors import UserError

WHERE = "_where"  # a row's file:line (as attntrain.data.sources.files)
INTEGER = re.compile(r"[+-]?\d+")
SPAN_TAG = re.compile(r"[BIES]-.+")  # a span tag: prefix, dash, entity type


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


SCHEMES = ("auto", "none", "iob2", "bioes")


def detect_scheme(tags) -> str:
    """'bioes' / 'iob2' when span tags (B-/I-/E-/S-TYPE) are most of the tags that are not O, else 'none' (plain
    tags, e.g. UPOS). `tags`: tag -> count (or a list). A few other tags among spans do not switch the scheme
    off: they are reported as invalid (`check_span_tag`)."""
    counts = tags if isinstance(tags, Counter) else Counter(tags)
    spans = {tag: count for tag, count in counts.items() if SPAN_TAG.fullmatch(tag)}
    others = sum(count for tag, count in counts.items() if tag != "O" and tag not in spans)
    prefixes = {tag[0] for tag in spans}
    if not prefixes & {"B", "I"} or sum(spans.values()) <= others:
        return "none"
    return "bioes" if prefixes & {"E", "S"} else "iob2"


def span_problem(tag: str, scheme: str) -> str | None:
    """Why a tag is not valid in `scheme` (None when it is)."""
    if scheme == "none" or tag == "O":
        return None
    prefix, dash, kind = tag.partition("-")
    valid = {"iob2": "BI", "bioes": "BIES"}[scheme]
    if not dash or not kind or prefix not in valid:
        return f"tag '{tag}' is not valid {scheme.upper()} (expected O or {'/'.join(valid)}-TYPE)"
    return None


def check_span_tag(tag: str, scheme: str, where: str) -> None:
    problem = span_problem(tag, scheme)
    if problem:
        raise UserError(f"{where}: {problem}")


def opening_inside(tags: list[str]) -> list[int]:
    """Positions of I-X / E-X tags that do not continue a B-X / I-X before them (IOB1 style: I- opens a span)."""
    out, previous = [], "O"
    for position, tag in enumerate(tags):
        if tag[:2] in ("I-", "E-") and not (previous[:2] in ("B-", "I-") and previous[2:] == tag[2:]):
            out.append(position)
        previous = tag
    return out


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """IOB1 (I-X opens a span unless it follows X; B-X only between two spans of X) -> IOB2 (B-X opens every span)."""
    tags = list(tags)
    for position in opening_inside(tags):
        if tags[position][:2] == "I-":
            tags[position] = "B-" + tags[position][2:]
    return tags


class TagsTarget(Cleaned):
    """One tag per input vector (tagging head); span schemes give entity-level metrics and valid decoding."""

    head = "tagging"

    def __init__(self, data_cfg):
        super().__init__()
        target = data_cfg.target
        self.field, self.scheme, self.declared, self.repair = target.field, target.scheme, target.labels, target.repair
        source = data_cfg.source
        self.line_per_token = source is not None and source.format == "conll"  # token i on its sentence's line + i
        self.opened: Counter = Counter()  # split -> I- tags that open a span (converted when repair is iob1)
        self.first_opened: tuple[str, str] | None = None  # (where, tag)
        self.labels = Vocab([], unk=False)

    def value(self, row: dict, where: str) -> list[str] | None:
        tags = field_value(row, self.field, where)
        if tags is None:
            return None
        if not isinstance(tags, (list, tuple)) or not all(isinstance(t, (str, int)) for t in tags):
            raise UserError(f"{row.get(WHERE, where)}: field '{self.field}' must be a list of tags, "
                            f"got {type(tags).__name__}")
        tags = [str(t).strip() for t in tags]
        return iob1_to_iob2(tags) if self.repair == "iob1" else tags

    def token_where(self, where: str, position: int) -> str:
        """Where token `position` (from 0) of a sentence starting at `where` is: its own line in a CoNLL file."""
        path, _, line = where.rpartition(":")
        if self.line_per_token and line.isdigit():
            return f"{path}:{int(line) + position}"
        return f"{where} (token {position + 1})"

    def scan(self, rows, split: str) -> tuple[Counter, dict[str, tuple[int, int]]]:
        """A split's tags cleaned: (tag -> count, tag -> its first (sentence, position)). A missing tag list or
        an empty tag is an error naming file:line; I- tags that open a span are counted (see `report`)."""
        counts, first = Counter(), {}
        for index, tags in enumerate(field_values(rows, self.field, split)):
            where = lambda: row_where(rows, index, split, "sentence")  # noqa: E731 - only made for a message
            if not isinstance(tags, (list, tuple)):
                shown = "null" if tags is None else type(tags).__name__
                raise UserError(f"{where()}: field '{self.field}' must be a list of tags, got {shown}")
            clean = []
            for position, tag in enumerate(tags):
                if tag is None or isinstance(tag, str) and not tag.strip():
                    raise UserError(f"{self.token_where(where(), position)}: empty tag (field '{self.field}'); "
                                    "every token needs one")
                if not isinstance(tag, (str, int)):
                    raise UserError(f"{self.token_where(where(), position)}: tag {tag!r} is no tag (field "
                                    f"'{self.field}' holds text)")
                clean.append(self.strip(tag, split, where) if isinstance(tag, str) else str(tag))
            opened = opening_inside(clean)
            if opened:
                self.opened[split] += len(opened)
                if self.first_opened is None:
                    self.first_opened = (self.token_where(where(), opened[0]), clean[opened[0]])
            if self.repair == "iob1":
                clean = iob1_to_iob2(clean)
            counts.update(clean)
            for position, tag in enumerate(clean):
                first.setdefault(tag, (index, position))
        return counts, first

    def prepare(self, train: list[dict], state: dict | None) -> None:
        if state is not None:
            self.labels, self.scheme = Vocab.from_json(state["labels"]), state["scheme"]
            return
        counts, first = self.scan(train, "train")
        if self.scheme == "auto":
            self.scheme = detect_scheme(counts)
        for tag in sorted(counts, key=lambda t: first[t]):
            problem = span_problem(tag, self.scheme)
            if problem:
                index, position = first[tag]
                share = sum(c for t, c in counts.items() if t == "O" or SPAN_TAG.fullmatch(t))
                raise UserError(f"{self.token_where(row_where(train, index, 'train', 'sentence'), position)}: "
                                f"{problem}; {share} of the {sum(counts.values())} train tags are {self.scheme.upper()} "
                                "(data.target.scheme: none reads every tag as a plain label)")
        self.refuse_iob1(counts)
        names = list(self.declared) if self.declared else sorted(counts)
        if self.scheme != "none" and "O" in names:  # O first: id 0 is the outside tag
            names = ["O"] + [n for n in names if n != "O"]
        self.labels = Vocab(names, unk=False)
        self.refuse_unknown(train, "train", first)
        if len(counts) < 2:
            raise UserError(f"{row_where(train, 0, 'train', 'sentence')}: every tag of the train split is "
                            f"'{next(iter(counts))}' (field '{self.field}'); a tagger needs at least two tags")

    def refuse_iob1(self, counts: Counter) -> None:
        """A tag set whose spans are mostly opened by I- is IOB1: an error unless data.target.repair converts it."""
        opened = self.opened["train"]
        begun = sum(count for tag, count in counts.items() if tag[:2] in ("B-", "S-"))
        if self.scheme != "none" and self.repair != "iob1" and opened > begun:
            where, tag = self.first_opened
            raise UserError(f"{where}: '{tag}' opens a span, as {opened} train tags do with I- (after O or another "
                            f"type) and only {begun} with B-: this looks like IOB1; set data.target.repair: iob1 to "
                            "convert it to IOB2")

    def check(self, rows: list[dict], split: str) -> None:
        """A dev / test split's tags: cleaned and checked as train's, and each one known."""
        self.refuse_unknown(rows, split, self.scan(rows, split)[1])

    def refuse_unknown(self, rows, split: str, first: dict[str, tuple[int, int]]) -> None:
        unknown = sorted((place, tag) for tag, place in first.items() if tag not in self.labels)
        if unknown:
            (index, position), tag = unknown[0]
            where = self.token_where(row_where(rows, index, split, "sentence"), position)
            check_span_tag(tag, self.scheme, where)
            raise UserError(unknown_label(where, "tag", tag, self.labels.items, self.declared))

    def report(self) -> None:
        super().report()
        if self.opened and self.scheme != "none":
            where, tag = self.first_opened
            splits = ", ".join(f"{split} {count}" for split, count in self.opened.items())
            if self.repair == "iob1":
                note(f"converted {sum(self.opened.values())} IOB1 tags of field '{self.field}' that open a span "
                     f"with I- to B- ({splits}; the first: '{tag}' at {where}), as data.target.repair: iob1 asks")
            else:
                note(f"{sum(self.opened.values())} tags of field '{self.field}' open a span with I- after O or "
                     f"another type ({splits}; the first: '{tag}' at {where}); strict entity scores do not "
                     "count such spans (data.target.repair: iob1 reads them as B-)")
        self.opened, self.first_opened = Counter(), None

    def state(self) -> dict:
        return {"labels": self.labels.to_json(), "scheme": self.scheme}

    def info(self) -> dict:
        return {"num_labels": len(self.labels), "labels": self.labels.items, "scheme": self.scheme}

    def encode(self, row: dict, length: int) -> dict:
        tags = self.value(row, "example") if self.field in row else None
        if tags is None:
            return {}
        return {"labels": torch.tensor(self.labels.ids(tags[:length]), dtype=torch.long)}

    def collate(self, items: list[dict]) -> dict:
        return {"labels": pad_stack([it["labels"] for it in items], value=IGNORE)} if "labels" in items[0] else {}


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

    def state(self) -> dict:
        return {}

    def info(self) -> dict:
        return {}

    def encode(self, row: dict, length: int) -> dict:
        return {}

    def collate(self, items: list[dict]) -> dict:
        return {}


TARGETS = {"sequence": LabelTarget, "tagging": TagsTarget, "pretrain": NoTarget}
