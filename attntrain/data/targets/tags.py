"""Tags: one tag per input vector (the tagging head), with span schemes (IOB2 / BIOES) detected from the tag
counts, checked, and IOB1 spans reported or converted (data.target.repair: iob1); the shared cleaning is
attntrain/data/targets/labels.py's `Cleaned`."""

from __future__ import annotations

import re
from collections import Counter

import torch

from attntrain.data.batching import IGNORE, pad_stack
from attntrain.data.inputs.kinds import field_value
from attntrain.data.inputs.vocab import Vocab
from attntrain.data.targets.labels import WHERE, Cleaned, field_values, note, row_where, unknown_label
from attntrain.errors import UserError

SPAN_TAG = re.compile(r"[BIES]-.+")  # a span tag: prefix, dash, entity type
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
