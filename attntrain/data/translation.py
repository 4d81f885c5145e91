"""Seq2seq (translation): sentence pairs from any source (parallel text, a table) -> subword ids.

Source and target text is raw (original case, untokenised); a byte-level BPE learned on the training
split turns it into subwords and back (attntrain.data.subword). Runs of whitespace in the inputs are
collapsed to one space; references for BLEU are kept exactly as in the files.

A batch holds the source ids `words` (B,S) with `mask` (B,S), the decoder input `target_in` (B,T)
(<s> + target), the `labels` (B,T) (target + </s>, padding = IGNORE), the raw `references`, and the
example `indices` and `split` name, so hypotheses can be written back in file order.
"""

from __future__ import annotations

import torch

from attntrain.data.batching import length_mask, pad_stack
from attntrain.data.inputs import field_value
from attntrain.data.sources import read_source
from attntrain.data.subword import BOS, EOS, PAD, Subwords
from attntrain.data.task import Task
from attntrain.errors import UserError
from attntrain.model.heads import IGNORE


FILES = {"train": "train", "dev": "val", "test": "test_2016_flickr"}  # Multi30k: split -> file stem under raw/


def normalize_space(text: str) -> str:
    return " ".join(text.split())


def output_vocabulary(target: Subwords, texts: list[str]) -> list[int]:
    """Ids the decoder may output: </s>, the 256 byte symbols, and every subword of the training targets.

    With a joint vocabulary about half of the subwords only ever occur on the source side; leaving
    them out of the softmax halves the cost of the output layer. The byte symbols keep every string
    spellable, so a target subword never seen in training can still be produced piece by piece.
    """
    seen = {i for ids in target.encode_batch(texts) for i in ids}
    return sorted(seen | set(target.byte_ids()) | {EOS})


class Seq2seqTask(Task):
    """Text in, text out: rows from any source (parallel files, a table with two text columns, ...)
    whose `data.input.field` is the source sentence and `data.target.field` the target sentence."""

    input = "subwords"
    predict_batch_size = 16  # sentences per search; small so that `predict` streams its output

    def __init__(self, cfg):
        super().__init__(cfg)
        self.settings = cfg.data.translation
        self.source: Subwords | None = None
        self.target: Subwords | None = None
        self.output_ids: list[int] = []  # target ids the decoder may output (see output_vocabulary)
        self._rows: dict[str, list[dict]] | None = None

    # ---- rows --------------------------------------------------------------------------------
    def read_split(self, split: str) -> list[dict]:
        if self._rows is None:
            self._rows = read_source(self.cfg.data)
        if split not in self._rows:
            raise UserError(f"data.source: no {split} split (has {', '.join(self._rows)}); seq2seq needs "
                            "one file (or file pair) per split")
        fields = (self.cfg.data.input.field, self.cfg.data.target.field)
        out = []
        for number, row in enumerate(self._rows[split], 1):
            values = [field_value(row, f, f"{split} row {number}") for f in fields]
            for field, value in zip(fields, values):
                if not isinstance(value, str):
                    raise UserError(f"{split} row {number}: field '{field}' must be text, got {type(value).__name__}")
            out.append({"source": values[0], "target": values[1]})
        return out

    # ---- vocabulary ----------------------------------------------------------------------------
    def prepare(self, state: dict | None = None) -> None:
        if state is not None:
            self.source = Subwords.from_json(state["source_tokenizer"])
            self.target = (self.source if state["joint_vocab"]
                           else Subwords.from_json(state["target_tokenizer"]))
            self.output_ids = list(state["output_ids"])
            return
        train = self.split_raw("train")
        sources = [normalize_space(ex["source"]) for ex in train]
        targets = [normalize_space(ex["target"]) for ex in train]
        size = self.settings.vocab_size
        if self.settings.joint_vocab:
            self.source = self.target = Subwords.train(sources + targets, size)
        else:
            self.source, self.target = Subwords.train(sources, size), Subwords.train(targets, size)
        self.output_ids = output_vocabulary(self.target, targets)

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
    def encode(self, example: dict, *, max_len: int | None) -> dict:
        # Sources are always capped (also at test/predict time): an over-long input is cut, not an error.
        limit = self.cfg.data.max_len
        source = self.source.encode(normalize_space(example["source"]))[: limit - 1] + [EOS]
        item = {"source": torch.tensor(source, dtype=torch.long), "length": len(source)}
        if "target" in example:
            target = self.target.encode(normalize_space(example["target"]))
            if max_len is not None:
                target = target[:max_len]
            item["target"] = torch.tensor(target, dtype=torch.long)
            item["reference"] = example["target"]
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
