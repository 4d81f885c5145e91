"""Heads: per-position features -> outputs. A head owns its loss, its decoding and its metrics,
so the trainer never branches on the output mode.

Two output modes live here: a label per vector (tagging) and one label for the whole sequence
(sequence, with cls / mean / attention pooling). A head may add vectors in front of the input
(`prefix`, the learned [CLS] vector) before the encoder runs.

# B batch, T time, D model width, L number of labels
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attntrain.model.dropout import Dropout

IGNORE = -100  # label id of padding and unlabeled positions


class TaggingMeter:
    """Accumulates token accuracy (and accuracy on out-of-vocabulary tokens when the batch marks them)."""

    def __init__(self):
        self.correct = self.total = self.oov_correct = self.oov_total = 0
        self.loss_sum = 0.0
        self.batches = 0

    def update(self, logits: torch.Tensor, batch: dict, loss: torch.Tensor | None = None) -> None:
        labels = batch["labels"]
        real = labels != IGNORE
        hit = (logits.argmax(-1) == labels) & real
        self.correct += int(hit.sum())
        self.total += int(real.sum())
        if "oov" in batch:
            oov = batch["oov"] & real
            self.oov_correct += int((hit & oov).sum())
            self.oov_total += int(oov.sum())
        if loss is not None:
            self.loss_sum += float(loss)
            self.batches += 1

    def compute(self) -> dict[str, float]:
        out = {"accuracy": 100.0 * self.correct / max(self.total, 1), "tokens": self.total}
        if self.oov_total:
            out["oov_accuracy"] = 100.0 * self.oov_correct / self.oov_total
            out["oov_tokens"] = self.oov_total
        if self.batches:
            out["loss"] = self.loss_sum / self.batches
        return out


class TaggingHead(nn.Module):
    """A label per position: (B,T,D) -> logits (B,T,L); cross-entropy over real positions only."""

    def __init__(self, width: int, num_labels: int, *, dropout: float, label_smoothing: float):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.output = nn.Linear(width, num_labels)
        self.label_smoothing = label_smoothing

    def prefix(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, mask

    def forward(self, features: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.output(self.dropout(features))

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return F.cross_entropy(
            logits.flatten(0, 1).float(),  # (B,T,L) -> (B*T,L)
            batch["labels"].flatten(),
            ignore_index=IGNORE,
            label_smoothing=self.label_smoothing,
        )

    def predict(self, logits: torch.Tensor, batch: dict) -> list[list[int]]:
        """Label ids of the real positions of each sequence."""
        ids = logits.argmax(-1)
        lengths = batch["mask"].sum(-1).tolist()
        return [row[:n] for row, n in zip(ids.tolist(), lengths)]

    def new_meter(self) -> TaggingMeter:
        return TaggingMeter()


class SequenceMeter:
    """Accumulates a confusion matrix (rows: true label, columns: predicted) -> accuracy and macro-F1."""

    def __init__(self, num_labels: int):
        self.confusion = torch.zeros(num_labels, num_labels, dtype=torch.long)
        self.loss_sum = 0.0
        self.batches = 0

    def update(self, logits: torch.Tensor, batch: dict, loss: torch.Tensor | None = None) -> None:
        L = self.confusion.shape[0]
        pairs = batch["labels"].cpu() * L + logits.argmax(-1).cpu()  # (B,) true * L + predicted
        self.confusion += torch.bincount(pairs, minlength=L * L).view(L, L)
        if loss is not None:
            self.loss_sum += float(loss)
            self.batches += 1

    def compute(self) -> dict[str, float]:
        c = self.confusion.double()
        hits, true, predicted = c.diagonal(), c.sum(1), c.sum(0)
        f1 = 2 * hits / (true + predicted).clamp(min=1)  # per class; 0 for a class never seen or predicted
        present = true > 0
        out = {"accuracy": 100.0 * float(hits.sum() / c.sum().clamp(min=1)),
               "macro_f1": 100.0 * float(f1[present].mean()) if present.any() else 0.0,
               "examples": int(c.sum())}
        if self.batches:
            out["loss"] = self.loss_sum / self.batches
        return out


def pool_mean(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,T,D), (B,T) -> (B,D) mean over real positions."""
    weights = mask.to(features.dtype).unsqueeze(-1)  # (B,T,1)
    return (features * weights).sum(1) / weights.sum(1).clamp(min=1)


class SequenceHead(nn.Module):
    """One label per sequence: pool (B,T,D) -> (B,D) -> logits (B,L).

    cls: a learned vector is put in front of the input and its encoder output is the summary;
    mean: average of the real positions; attention: softmax-weighted average with learned scores.
    """

    def __init__(self, width: int, num_labels: int, *, pooling: str, dropout: float, label_smoothing: float):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}")
        self.pooling = pooling
        self.cls = nn.Parameter(torch.randn(1, 1, width) * width**-0.5) if pooling == "cls" else None
        self.score = nn.Linear(width, 1) if pooling == "attention" else None
        self.dropout = Dropout(dropout)
        self.output = nn.Linear(width, num_labels)
        self.label_smoothing = label_smoothing

    def prefix(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cls is None:
            return x, mask
        B = x.shape[0]
        x = torch.cat([self.cls.expand(B, -1, -1).to(x.dtype), x], dim=1)  # (B,1+T,D)
        return x, torch.cat([mask.new_ones(B, 1), mask], dim=1)

    def pool(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return features[:, 0]  # the [CLS] position
        if self.pooling == "mean":
            return pool_mean(features, mask)
        scores = self.score(features).squeeze(-1).float().masked_fill(~mask, float("-inf"))  # (B,T)
        weights = torch.softmax(scores, dim=-1).to(features.dtype)
        return torch.einsum("bt,btd->bd", weights, features)

    def forward(self, features: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.output(self.dropout(self.pool(features, batch["mask"])))  # (B,L)

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return F.cross_entropy(logits.float(), batch["labels"], label_smoothing=self.label_smoothing)

    def predict(self, logits: torch.Tensor, batch: dict) -> list[tuple[int, float]]:
        """(label id, probability) per sequence."""
        prob, ids = torch.softmax(logits.float(), dim=-1).max(-1)
        return list(zip(ids.tolist(), prob.tolist()))

    def new_meter(self) -> SequenceMeter:
        return SequenceMeter(self.output.out_features)


POOLINGS = ("cls", "mean", "attention")


def build_tagging_head(cfg, info: dict, width: int) -> TaggingHead:
    """cfg: HeadConfig."""
    return TaggingHead(width, info["num_labels"], dropout=cfg.dropout, label_smoothing=cfg.label_smoothing)


def build_sequence_head(cfg, info: dict, width: int) -> SequenceHead:
    return SequenceHead(width, info["num_labels"], pooling=cfg.pooling, dropout=cfg.dropout,
                        label_smoothing=cfg.label_smoothing)



def build_seq2seq_head(cfg, info: dict, width: int):
    """Encoder-decoder head (attntrain/model/seq2seq.py, imported here on use: it imports this file)."""
    from attntrain.model.seq2seq import build_seq2seq_head as build

    return build(cfg, info, width)


HEADS = {"tagging": build_tagging_head, "sequence": build_sequence_head, "seq2seq": build_seq2seq_head}

# Dev metrics each head's meter reports, i.e. the valid values of train.metric (checked before training).
METRICS = {"tagging": ("accuracy", "oov_accuracy", "loss"), "sequence": ("accuracy", "macro_f1", "loss"),
           "seq2seq": ("bleu", "bleu_lc", "chrf", "loss")}
