"""Seq2seq (translation): sentence pairs from any source (parallel text, a table) -> subword ids.

Source and target text is raw (original case, untokenised); a byte-level BPE learned on the training
split turns it into subwords and back (attntrain.data.inputs.subword). Runs of whitespace in the inputs are
collapsed to one space; references for BLEU are kept exactly as in the files.

A batch holds the source ids `words` (B,S) with `mask` (B,S), the decoder input `target_in` (B,T)
(<s> + target), the `labels` (B,T) (target + </s>, padding = IGNORE), the raw `references`, and the
example `indices` and `split` name, so hypotheses can be written back in file order.
"""

from __future__ import annotations

from itertools import chain

import numpy as np
import torch

from attntrain.data.sources.arrow import ArrowExamples, ArrowRows, cache_key, cached_map, dataset_identity
from attntrain.data.batching import IGNORE, length_mask, pad_stack
from attntrain.data.sources.rows import source_datasets
from attntrain.data.inputs.subword import BOS, EOS, PAD, Subwords
from attntrain.data.tasks.base import Task
from attntrain.data.tasks.overlap import check_overlap, say
from attntrain.errors import UserError


FILES = {"train": "train", "dev": "val", "test": "test_2016_flickr"}  # Multi30k: split -> file stem under raw/
ENCODING_VERSION = 1  # bump when what an encoded split holds changes: encodings cached by older code are then not read
SAMPLE_SEED = 0  # data.translation.vocab_sample draws the same pairs whatever the run's seed


def normalize_space(text: str) -> str:
    return " ".join(text.split())


def output_vocabulary(target: Subwords, target_ids) -> list[int]:
    """Ids the decoder may output: </s>, the 256 byte symbols, and every subword of the training targets.

    With a joint vocabulary about half of the subwords only ever occur on the source side; leaving
    them out of the softmax halves the cost of the output layer. The byte symbols keep every string
    spellable, so a target subword never seen in training can still be produced piece by piece.
    `target_ids`: the encoded training targets, an Arrow list column.
    """
    import pyarrow.compute as pc

    seen = pc.unique(pc.list_flatten(target_ids)).to_pylist()
    return sorted(set(seen) | set(target.byte_ids()) | {EOS})


class Seq2seqTask(Task):
    """Text in, text out: rows from any source (parallel files, a table with two text columns, ...)
    whose `data.input.field` is the source sentence and `data.target.field` the target sentence.

    Rows stay in memory-mapped Arrow (attntrain.data.sources.arrow); each split is encoded once into a cached
    Arrow file of subword ids, and the tensors of a batch are made when it is asked for.
    """

    input = "subwords"
    predict_batch_size = 16  # sentences per search; small so that `predict` streams its output

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.data.split.folds > 1:  # one file (pair) per split: nothing to fold, and silence would mislead
            raise UserError(f"data.split.folds: {cfg.data.split.folds} folds are not made for translation (seq2seq "
                            "reads one file or file pair per split); leave folds at 1")
        self.settings = cfg.data.translation
        self.source: Subwords | None = None
        self.target: Subwords | None = None
        self.output_ids: list[int] = []  # target ids the decoder may output (see output_vocabulary)
        self._tables: dict | None = None  # split -> datasets.Dataset of the source's rows
        self._views: dict[str, ArrowRows] = {}

    # ---- rows --------------------------------------------------------------------------------
    def gold_record(self, example: dict) -> dict:
        return {"input": example.get("source"), "gold": example.get("target")}

    def read_split(self, split: str) -> ArrowRows:
        """The split's rows as {"source", "target"} dicts, read from Arrow on demand."""
        if self._tables is None:
            self._tables = source_datasets(self.cfg.data)
        if split not in self._tables:
            raise UserError(f"data.source: no {split} split (has {', '.join(self._tables)}); seq2seq needs "
                            "one file (or file pair) per split")
        if split not in self._views:
            self._views[split] = ArrowRows(self._text_columns(self._tables[split], split))
        return self._views[split]

    def _text_columns(self, table, split: str):
        """The input and target fields, checked to be text in every row, renamed to source / target."""
        import pyarrow.compute as pc

        fields = (self.cfg.data.input.field, self.cfg.data.target.field)
        for field in fields:
            if field not in table.column_names:
                raise UserError(f"{split} row 1: no field '{field}' (fields: {', '.join(table.column_names)})")
            if not len(table):
                continue
            column = table.data.column(field)
            if str(column.type) not in ("string", "large_string"):
                value = table[0][field]
                raise UserError(f"{split} row 1: field '{field}' must be text, got {type(value).__name__}")
            if column.null_count:
                first = pc.index(pc.is_null(column), True).as_py()
                raise UserError(f"{split} row {first + 1}: field '{field}' must be text, got NoneType")
        if fields[0] == fields[1]:
            return table.select_columns([fields[0]]).rename_column(fields[0], "source").add_column(
                "target", table.data.column(fields[0]))
        return table.select_columns(list(fields)).rename_columns({fields[0]: "source", fields[1]: "target"})

    # ---- vocabulary ----------------------------------------------------------------------------
    def prepare(self, state: dict | None = None) -> None:
        if state is not None:
            self.source = Subwords.from_json(state["source_tokenizer"])
            self.target = (self.source if state["joint_vocab"]
                           else Subwords.from_json(state["target_tokenizer"]))
            self.output_ids = list(state["output_ids"])
            return
        self.source, self.target = self._learn(self.split_raw("train"))
        self.output_ids = output_vocabulary(self.target, self.split("train").dataset.data.column("target_ids"))
        # source sentences of dev / test that are training sources too
        self.data_checks = say(check_overlap({name: self.split_raw(name) for name in self.splits}, "source", None))

    def _learn(self, train: ArrowRows) -> tuple[Subwords, Subwords]:
        """Byte-level BPE from the training pairs (or a seeded sample of data.translation.vocab_sample of them),
        streamed from Arrow in batches; a vocabulary learned before from the same rows and settings is reused."""
        size, sample = self.settings.vocab_size, self.settings.vocab_sample
        if sample is not None and sample < len(train):
            pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(SAMPLE_SEED))[:sample]
            train = ArrowRows(train.dataset.select(pick.sort().values.tolist()))
        cached = self._cache_file("subwords", train, size, self.settings.joint_vocab, suffix="json")
        if cached is not None and cached.is_file():
            try:
                return self._restore(cached)
            except Exception:  # a damaged cache file is learned again, never trusted
                pass

        def texts(column: str):
            return ([normalize_space(text) for text in batch] for batch in train.column_batches(column))

        if self.settings.joint_vocab:
            source = target = Subwords.train(chain(texts("source"), texts("target")), size)
        else:
            source, target = Subwords.train(texts("source"), size), Subwords.train(texts("target"), size)
        if cached is not None:
            from attntrain.io import atomic_write_json

            atomic_write_json(cached, {"source": source.to_json(), "target": None if target is source
                                       else target.to_json()})
        return source, target

    @staticmethod
    def _restore(path) -> tuple[Subwords, Subwords]:
        import json

        saved = json.loads(path.read_text(encoding="utf-8"))
        source = Subwords.from_json(saved["source"])
        return source, source if saved["target"] is None else Subwords.from_json(saved["target"])

    @staticmethod
    def _cache_file(kind: str, rows: ArrowRows, *settings, suffix: str = "arrow"):
        """Where a result computed from `rows` and `settings` is cached, or None for rows held only in memory
        (their fingerprint is not tied to files, so a cache could not be found again)."""
        from attntrain.data.sources.root import cache_dir

        if not rows.dataset.cache_files:
            return None
        key = cache_key(kind, ENCODING_VERSION, dataset_identity(rows.dataset), *settings)
        return cache_dir() / kind / f"{key}.{suffix}"

    def state(self) -> dict:
        joint = self.source is self.target
        state = {"joint_vocab": joint, "source_tokenizer": self.source.to_json(), "output_ids": self.output_ids}
        if not joint:
            state["target_tokenizer"] = self.target.to_json()
        return state

    def info(self) -> dict:
        return {"input": "subwords", "num_words": len(self.source), "num_targets": len(self.target),
                "output_ids": self.output_ids, "joint_vocab": self.source is self.target,
                "detokenize": self.detokenize, "run_dir": str(self.cfg.run_dir())}

    # ---- examples and batches ------------------------------------------------------------------
    def split(self, name: str) -> ArrowExamples:
        """The split encoded once (cached on disk as Arrow, keyed by its rows and the tokenizers)."""
        if name not in self._encoded:
            import datasets

            rows = self.split_raw(name)
            max_len = self.cfg.data.max_len if name == "train" else self.eval_max_len()
            tokenizers = [self.source.tokenizer.to_str(), self.target.tokenizer.to_str()]
            path = self._cache_file("encoded", rows, tokenizers)
            fingerprint = cache_key("encoded", ENCODING_VERSION, dataset_identity(rows.dataset), tokenizers)
            features = {"target": datasets.Value("string"),
                        **{name: datasets.List(datasets.Value("int32")) for name in ("source_ids", "target_ids")},
                        **{name: datasets.Value("int32") for name in ("source_len", "target_len")}}
            encoded = cached_map(rows.dataset, self._encode_rows, features=features, key=fingerprint, path=path,
                                 batch_size=2000, remove_columns=["source"], arrow=True)
            self._encoded[name] = ArrowExamples(encoded, self._lengths(encoded, max_len),
                                                lambda row, _: self._item(row["source_ids"], row["target_ids"],
                                                                          row["target"], max_len))
        return self._encoded[name]

    def _encode_rows(self, batch):
        """A batch of rows (an Arrow table) -> full subword ids of both sides, as an Arrow table (caps are
        applied when an example is made)."""
        import pyarrow as pa

        columns = {"target": batch.column("target")}
        for side, tokenizer in (("source", self.source), ("target", self.target)):
            values, offsets = tokenizer.encode_normalized(batch.column(side))
            columns[f"{side}_ids"] = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))
            columns[f"{side}_len"] = pa.array(np.diff(offsets).astype(np.int32))
        return pa.table(columns)

    def _lengths(self, encoded, max_len: int | None) -> np.ndarray:
        """Padded slots per example (what `_item` calls "length"), from the length columns."""
        source = np.minimum(encoded.data.column("source_len").to_numpy(), self.cfg.data.max_len - 1) + 1
        target = encoded.data.column("target_len").to_numpy()
        if max_len is not None:
            target = np.minimum(target, max_len)
        return np.maximum(source, target + 1)

    def encode(self, example: dict, *, max_len: int | None) -> dict:
        source = self.source.encode(normalize_space(example["source"]))
        if "target" not in example:
            return self._item(source, None, None, max_len)
        return self._item(source, self.target.encode(normalize_space(example["target"])), example["target"], max_len)

    def _item(self, source: list[int], target: list[int] | None, reference: str | None, max_len: int | None) -> dict:
        # Sources are always capped (also at test/predict time): an over-long input is cut, not an error.
        source = source[: self.cfg.data.max_len - 1] + [EOS]
        item = {"source": torch.tensor(source, dtype=torch.long), "length": len(source)}
        if target is not None:
            if max_len is not None:
                target = target[:max_len]
            item["target"] = torch.tensor(target, dtype=torch.long)
            item["reference"] = reference
            item["length"] = max(len(source), len(target) + 1)  # padded slots the batch will hold
        return item

    def collate(self, items: list[dict]) -> dict:
        batch = {
            "words": pad_stack([it["source"] for it in items], value=PAD),
            "mask": length_mask([len(it["source"]) for it in items]),
        }
        if "target" in items[0]:
            bos, eos = torch.tensor([BOS]), torch.tensor([EOS])
            batch["target_in"] = pad_stack([torch.cat([bos, it["target"]]) for it in items], value=PAD)
            batch["labels"] = pad_stack([torch.cat([it["target"], eos]) for it in items], value=IGNORE)
            batch["references"] = [it["reference"] for it in items]
        return batch

    def batch(self, name: str, indices: list[int]) -> dict:
        batch = super().batch(name, indices)
        batch["indices"], batch["split"] = list(indices), name
        return batch

    # ---- predict -------------------------------------------------------------------------------
    def parse_inputs(self, lines: list[str]) -> list[dict]:
        return [{"source": line} for line in lines]

    def is_empty(self, example: dict) -> bool:
        return not example["source"].strip()

    def position_labels(self, example: dict, item: dict) -> list[str]:
        """The source subwords (axis labels of attention maps over the encoder)."""
        return self.source.tokens(item["source"].tolist())

    def detokenize(self, ids: list[int]) -> str:
        """Target ids -> text on one line (the model was trained on whitespace-normalised targets)."""
        return normalize_space(self.target.decode(ids))

    def describe(self, example: dict, prediction: list[int]) -> str:
        return self.detokenize(prediction)

    def record(self, example: dict, prediction: list[int], scores: float | None = None) -> dict:
        """{"translation"} and, when scored, {"score": mean log-probability per output token (</s> included)}."""
        out = {"translation": self.detokenize(prediction)}
        if scores is not None:
            out["score"] = scores
        return out
