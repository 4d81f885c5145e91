"""The one task of the data floor: source x input kind x target, composed from three small tables.

    source (attntrain.data.sources.readers.READERS)  -> rows with named fields, per split
    input kind (attntrain.data.inputs.kinds.INPUT_KINDS) -> the input field as tensors
    target (attntrain.data.targets.kinds.TARGETS, by head kind) -> the target field as labels

A shipped dataset is a preset of these (attntrain.data.tasks.presets), so it takes the same path as a
user's CSV. Splits come from the source (one file per split), a split column, or a seeded ratio
whose row indices are saved with the run (task.json, attntrain.data.tasks.splits), so eval, predict and resume
see the same split.

Rows stay in memory-mapped Arrow (attntrain.data.sources.rows.source_rows): a split is a view (ArrowRows) whose
dicts carry `_where` (file:line, for errors); the split column, ratio and k-fold splits select rows by index.
Text inputs (labels or tags) are encoded once per split into a cached Arrow file (attntrain.data.tasks.encoded)
whose name hashes the rows' dataset fingerprint, the vocabularies and the settings; a batch's tensors are
made when it is asked for. Audio and image splits are decoded once into a cached Arrow file too (the frames,
or the 8-bit pixels, before normalisation, and the labels); the train split's file also gives the input
statistics. Only a train split with `data.source.add_train` rows is a Python list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from attntrain.data.sources.arrow import ArrowRows
from attntrain.data.tasks.subset import too_few_classes
from attntrain.data.inputs.kinds import INPUT_KINDS, field_value, tokenize
from attntrain.data.inputs.pieces import piece_input
from attntrain.data.sources.files import SPLIT_ALIASES, WHERE
from attntrain.data.sources.rows import source_rows
from attntrain.data.targets.spans import entities, format_spans
from attntrain.data.targets.kinds import TARGETS
from attntrain.data.inputs.text import truncate
from attntrain.data.tasks.added import AddedSource, join_added, read_added
from attntrain.data.tasks.overlap import check_overlap, say
from attntrain.data.tasks.base import Task
from attntrain.data.tasks.encoded import MEDIA_INPUTS, CachedSplits
from attntrain.data.tasks.splits import fold_split, given_train_folds, ratio_split
from attntrain.errors import UserError
from attntrain.registry import lookup

SHOWN = "_shown"  # how predict prints an input that is not its own text (a test-set example chosen by index)


Rows = ArrowRows | list[dict]  # a split's rows: a view of Arrow, or a list (train joined with add_train rows)


def pick(rows: Rows, indices: list[int]) -> Rows:
    """The rows at `indices`, in that order."""
    return rows.select(indices) if isinstance(rows, ArrowRows) else [rows[i] for i in indices]


class DataTask(CachedSplits, Task):
    """Any source, any input kind, a label or tag target; chosen in `data:` (see attntrain.config.DataConfig)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        data = cfg.data
        # model.init hf:...: the checkpoint's tokenizer cuts the words into its pieces
        self.input_kind = (piece_input(cfg)
                           or lookup(INPUT_KINDS, data.input.kind, "data.input.kind")(data, cfg.model.embed))
        self.input = self.input_kind.kind
        self.target = lookup(TARGETS, cfg.model.head.kind, "model.head.kind (as a data target)")(data)
        self.truncate_eval = self.target.head == "sequence"  # tagging scores every token of every sentence
        self._rows: dict[str, Rows] | None = None
        self._split_index: dict[str, list[int]] | None = None
        self._splits: tuple = (None, None)  # (the split index they were made with, split -> rows)
        self._added: list[AddedSource] | None = None  # data.source.add_train's rows, read once
        self.added_train: dict | None = None  # what they gave: rows, dropped_dev_test, per-source counts
        self._decoded: dict[str, Any] = {}  # split -> its decoded audio / image Arrow table (see _decode_media)
        self._checked: set[str] = set()  # dev / test splits whose labels have been checked against train's
        self.predict_batch_size = 16 if self.input in MEDIA_INPUTS else 32
        self.data_checks: list[dict] = []  # held-out inputs seen in train, label conflicts (overlap.py)

    @property
    def input_field(self) -> str:
        return self.cfg.data.input.field

    @property
    def labels(self):
        """The target's label (or tag) vocabulary."""
        return self.target.labels

    @property
    def classes(self) -> list[str]:
        return self.target.labels.items

    # ---- rows ----------------------------------------------------------------------------------
    def _read(self) -> dict[str, Rows]:
        if self._rows is None:
            self._rows = source_rows(self.cfg.data)
        return self._rows

    def _join_added(self, splits: dict[str, Rows]) -> dict[str, Rows]:
        """data.source.add_train's rows (e.g. SST-2's phrases; attntrain/data/tasks/added.py) joined to the split
        train, less any whose input is a dev or test input; the sources are read once."""
        if not self.cfg.data.source.add_train or "train" not in splits:
            return splits
        if self._added is None:
            target = None if self.target.head == "pretrain" else self.cfg.data.target.field
            self._added = read_added(self.cfg.data, target_field=target)
        train, self.added_train = join_added(splits, self._added, self._tokens)
        return {**splits, "train": train}

    def _tokens(self, row: dict) -> list:
        value = self._input_value(row, row.get(WHERE, "row"))
        return self.input_kind.tokens(value) if self.input == "text" else [value]

    def _split_rows(self) -> dict[str, Rows]:
        """split -> rows, after the split column or the seeded ratio split when the source has no splits
        (made once per split index: a saved index given to `prepare` makes them again)."""
        if self._splits[1] is None or self._splits[0] is not self._split_index:
            splits = self._make_splits()
            self._splits = (self._split_index, self._join_added(splits))
        return self._splits[1]

    def _saved_index_fits(self, count: int) -> None:
        """A split index saved with a run must index the rows read now (a run from before add_train rows joined
        after the split counted them too): out of range is one error, never a split of other rows."""
        largest = max((i for indices in (self._split_index or {}).values() for i in indices), default=-1)
        if largest >= count:
            raise UserError(f"the run's saved split indexes row {largest:,}, but the data now has {count:,} rows to "
                            "split (data changed, or a run made before data.source.add_train rows joined train after "
                            "the split); start a new run on this data")

    def _make_splits(self) -> dict[str, Rows]:
        rows, settings = self._read(), self.cfg.data.split
        if "all" not in rows:
            folds = settings.folds > 1 and "train" in rows  # k folds of the given train: before, silently ignored
            if folds or ("dev" not in rows and settings.dev > 0):  # hold out dev from train
                self._saved_index_fits(len(rows["train"]))
                index = self._split_index or (
                    given_train_folds(len(rows["train"]), settings, "dev" in rows) if folds
                    else ratio_split(len(rows["train"]), settings.dev, 0.0, settings.seed))
                self._split_index = index
                train = rows["train"]
                return {**rows, "train": pick(train, index["train"]), "dev": pick(train, index["dev"])}
            return rows
        everything = rows["all"]
        self._saved_index_fits(len(everything))
        if settings.column:
            return {name: pick(everything, index) for name, index in self._column_split(everything).items()}
        if self._split_index is None and settings.folds > 1:
            self._split_index = fold_split(len(everything), settings.folds, settings.fold or 0, settings.dev,
                                           settings.seed)
        if self._split_index is None:
            self._split_index = ratio_split(len(everything), settings.dev, settings.test, settings.seed)
        return {name: pick(everything, idx) for name, idx in self._split_index.items() if idx}

    def _column_split(self, rows: Rows) -> dict[str, list[int]]:
        """split -> row indices, by data.split.column (read one column at a time, not row dicts)."""
        settings = self.cfg.data.split
        column = settings.column
        out: dict[str, list[int]] = {}
        if not len(rows):
            return out
        if isinstance(rows, list) or column not in rows.column_names:  # a list, or the error naming the fields
            values = (field_value(row, column, row.get(WHERE, f"row {number}")) for number, row in enumerate(rows, 1))
        else:
            values = (value for batch in rows.column_batches(column) for value in batch)
        named = {str(v): split for split, listed in (settings.values or {}).items() for v in listed}
        for index, value in enumerate(values):
            value = str(value)
            if settings.values:  # listed values are dev / test, any other value trains
                out.setdefault(named.get(value, "train"), []).append(index)
                continue
            value = value.lower()
            if value not in SPLIT_ALIASES:
                where = rows.where(index) if isinstance(rows, ArrowRows) else rows[index].get(WHERE)
                where = where or f"row {index + 1}"
                raise UserError(f"{where}: split column '{column}' holds '{value}'; "
                                f"expected one of {', '.join(SPLIT_ALIASES)}")
            out.setdefault(SPLIT_ALIASES[value], []).append(index)
        return out

    @property
    def splits(self) -> tuple[str, ...]:  # type: ignore[override]
        try:
            return tuple(s for s in ("train", "dev", "test") if s in self._split_rows())
        except UserError:
            return ("train", "dev", "test")

    def read_split(self, split: str) -> Rows:
        rows = self._split_rows().get(split)
        if not rows:
            raise UserError(f"data: the {split} split is empty ({self._describe_source()})")
        return rows

    def _describe_source(self) -> str:
        source = self.cfg.data.source
        return f"format {source.format}, " + (f"files {source.files}" if source.files else f"path {source.path}")

    # ---- vocabularies and statistics -----------------------------------------------------------
    def prepare(self, state: dict | None = None) -> None:
        """state: a saved `state()`, or None (built from train); a state whose target is None (model.init: a
        pretrained run's input vocabulary or statistics) keeps that input and builds the labels from train."""
        if state is not None and "input" not in state:
            state = self._legacy_state(state)
        if state is not None and state.get("split_index") is not None:
            self._split_index = state["split_index"]
        train = None if state is not None and state.get("target") is not None else self.split_raw("train")
        self._decoded, self._checked = {}, set()
        if self.input in MEDIA_INPUTS:  # labels first: the decoded train split holds them, and gives the input statistics
            self.target.prepare(train, state and state["target"])
            if state is None:
                self._check_held_out()
            self.input_kind.prepare(train, state and state["input"], decoded=self._decoded_train)
            return
        self.input_kind.prepare(train, state and state["input"])
        self.target.prepare(train, state and state["target"])
        if state is None:
            self._check_held_out()
        if train is not None and self.target.head != "pretrain":  # a fresh run: said once, kept in its start record
            self._check_overlap()

    def _check_overlap(self) -> None:
        label = self.cfg.data.target.field if self.target.head == "sequence" else None
        rows = {name: self.split_raw(name) for name in self.splits}  # the rows the run uses (limits, subset)
        self.data_checks = say(check_overlap(rows, self.input_field, label, getattr(self.target, "name", str)))

    def _check_held_out(self) -> None:
        """Every dev / test label known to train, checked now rather than at the first evaluation (or after the
        whole run); what cleaning changed is said once."""
        for name in self.splits:
            if name != "train":
                self.target.check(self.split_raw(name), name)
                self._checked.add(name)
        self.target.report()

    def state(self) -> dict:
        return {"input": self.input_kind.state(), "target": self.target.state(), "split_index": self._split_index}

    def _legacy_state(self, state: dict) -> dict:
        """task.json of a run made before sst2 / imdb / fsdd / mnist were presets -> today's layout.

        Those runs saved {words, chars, seen} (text), {classes, mean, std} (fsdd) or {classes} (mnist);
        their splits were the ones the presets compute, so no split index is needed.
        """
        from attntrain.data.inputs.vocab import Vocab

        labels = state.get("classes") or self.cfg.data.target.labels or self.cfg.data.target.names
        if self.input == "text":
            given = {key: state[key] for key in ("words", "chars", "seen")}
        elif self.input == "audio":
            given = {"mean": state["mean"], "std": state["std"]}
        else:
            image = self.cfg.data.image
            given = {"channels": 1, "mean": image.mean, "std": image.std}
        return {"input": given, "target": {"labels": Vocab(list(labels), unk=False).to_json()}, "split_index": None}

    def info(self) -> dict:
        return {**self.input_kind.info(), **self.target.info()}

    def split_raw(self, name: str) -> Rows:
        rows = super().split_raw(name)
        if self.target.head == "tagging":
            self._check_tagged(rows, name)
        return rows

    def check_subset(self, rows: Rows) -> None:
        """A training subset for a classifier must keep two classes at least."""
        if self.target.head != "sequence":
            return
        field = self.cfg.data.target.field
        if isinstance(rows, ArrowRows) and field in rows.dataset.column_names:
            labels = set(rows.dataset.unique(field))  # one pass over a column, no row dicts
        else:
            labels = {str(row.get(field)) for row in rows}
        too_few_classes(self.train_subset, labels)

    def split(self, name: str) -> list[dict]:
        if name not in self._encoded and name != "train" and name not in self._checked:
            self.target.check(self.split_raw(name), name)  # labels train never has: an error before encoding
            self._checked.add(name)
            self.target.report()
        if name not in self._encoded and self.input in ("text", *MEDIA_INPUTS):  # encoded into cached Arrow files
            max_len = self.cfg.data.max_len if name == "train" else self.eval_max_len()
            self._encoded[name] = (self._encode_text(self.split_raw(name), max_len) if self.input == "text"
                                   else self._media_examples(self._decode_media(name), max_len))
        return super().split(name)


    def _check_tagged(self, rows: Rows, split: str) -> None:
        """Every sentence has tokens, and as many tags as tokens; errors name file:line when known."""
        for number, row in enumerate(rows, 1):
            where = row.get(WHERE, f"{split} sentence {number}")
            tokens = self.input_kind.tokens(self._input_value(row, where), where)
            tags = self.target.value(row, where)
            if not tokens:
                raise UserError(f"{where}: empty sentence (no tokens in field '{self.cfg.data.input.field}')")
            if tags is not None and len(tags) != len(tokens):
                raise UserError(f"{where}: {len(tokens)} tokens but {len(tags)} tags "
                                f"(fields '{self.cfg.data.input.field}' and '{self.cfg.data.target.field}')")

    # ---- examples ------------------------------------------------------------------------------
    def _input_value(self, row: dict, where: str) -> Any:
        return field_value(row, self.cfg.data.input.field, where)

    def encode(self, example: dict, *, max_len: int | None) -> dict:
        value = self._input_value(example, "example")
        if self.input == "text":
            tokens = self.input_kind.tokens(value, example.get(WHERE, "input"))
            tokens = (truncate(tokens, max_len, self.cfg.data.truncate) if self.target.head == "sequence"
                      else tokens[:max_len] if max_len else tokens)
            item = self.input_kind.encode(tokens)
        else:
            item = self._media_item(self.input_kind.decode(value), max_len)
        return {**item, **self.target.encode(example, item["length"])}

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        return {**self.input_kind.collate(items), **self.target.collate(items)}

    # ---- predict -------------------------------------------------------------------------------
    def parse_inputs(self, lines: list[str], *, pretokenized: bool = False) -> list[dict]:
        field = self.cfg.data.input.field
        if self.input != "text":
            return [self._media_input(line.strip()) for line in lines]
        if pretokenized:
            return [{field: tokenize(line, "whitespace")} for line in lines]
        learned = getattr(self.input_kind, "learned", None)  # the train split's token boundaries, saved with the run
        if learned is not None:
            return [{field: learned.split(line)} for line in lines]
        return [{field: tokenize(line, self.cfg.data.input.tokenizer)} for line in lines]

    def _media_input(self, text: str) -> dict:
        """A file path, or a number that is no file: that example of the test split (`predict 7`)."""
        field = self.cfg.data.input.field
        if not text.isdigit() or Path(text).exists():
            return {field: text or None}
        test = self.split_raw("test")
        if int(text) >= len(test):
            raise UserError(f"predict: test index {text} out of range 0..{len(test) - 1}")
        row = test[int(text)]
        return {field: self._input_value(row, "test"), SHOWN: f"test[{text}] (true {self.target.value(row, 'test')})"}

    def parse_tokens(self, tokens: list[str]) -> dict:
        """Already split input (predict --pretokenized, the server's {"tokens": [...]})."""
        return {self.cfg.data.input.field: list(tokens)}

    def is_empty(self, example: dict) -> bool:
        value = example[self.cfg.data.input.field]
        return value is None or isinstance(value, (str, list, tuple)) and not value

    def position_labels(self, example: dict, item: dict) -> list[str]:
        value = example[self.cfg.data.input.field]
        if self.input == "text" and hasattr(self.input_kind, "piece_labels"):  # one vector per piece
            return self.input_kind.piece_labels(truncate(list(value), self.eval_max_len(), self.cfg.data.truncate))
        if self.input == "text":
            return truncate(list(value), self.eval_max_len(), self.cfg.data.truncate)[: item["length"]]
        if self.input == "audio":
            hop = self.cfg.data.audio.hop_ms / 1000
            return [f"{i * hop:.2f}s" for i in range(item["length"])]
        rows, cols = self.info()["grid"]
        return [f"r{r}c{c}" for r in range(rows) for c in range(cols)]

    def describe(self, example: dict, prediction: Any) -> str:
        value = example.get(SHOWN, example[self.cfg.data.input.field])
        if self.target.head == "sequence":
            label, prob = prediction
            name = f"{self.target.labels.items[label]}\t{prob:.3f}"
            return name if self.input == "text" else f"{value}\t{name}"
        tags = [self.target.labels.items[p] for p in prediction]
        if self.target.scheme != "none":
            return format_spans(value, tags, self.target.scheme)
        return " ".join(f"{w}/{t}" for w, t in zip(value, tags))

    def gold_record(self, example: dict) -> dict:
        """The input as the user knows it (text, tokens, or a media file's path) and the gold label or tags."""
        value = example.get(self.input_field) if isinstance(self.input_field, str) else None
        if isinstance(value, dict):  # a Hugging Face Audio / Image value
            value = value.get("path")
        shown = isinstance(value, str) or isinstance(value, list) and all(isinstance(v, str) for v in value)
        return {"input": value if shown else None, "gold": self.target.value(example, "gold")}

    def record(self, example: dict, prediction: Any, scores: Any = None) -> dict:
        """A prediction as a JSON-ready dict (predict --format jsonl, the server); scores: class probabilities."""
        value = example[self.cfg.data.input.field]
        if self.target.head == "sequence":  # the caller (predict, the server) pairs the record with its input
            label, prob = prediction
            out = {"label": self.target.labels.items[label], "probability": prob}
            if scores is not None:
                out["probabilities"] = dict(zip(self.target.labels.items, scores))
            return out
        tags = [self.target.labels.items[p] for p in prediction]
        out = {"tokens": list(value), "tags": tags}
        if self.target.scheme != "none":
            out["entities"] = [{"type": kind, "start": start, "end": end, "text": " ".join(value[start:end])}
                               for kind, start, end in entities(tags, self.target.scheme)]
        return out
