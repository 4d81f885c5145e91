"""Heads: per-position features -> outputs. A head owns its loss, its decoding and its metrics,
so the trainer never branches on the output mode.

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


def build_tagging_head(cfg, info: dict, width: int) -> TaggingHead:
    """cfg: HeadConfig."""
    return TaggingHead(width, info["num_labels"], dropout=cfg.dropout, label_smoothing=cfg.label_smoothing)


def build_seq2seq_head(cfg, info: dict, width: int):
    """Encoder-decoder head (attntrain/model/seq2seq.py, imported here on use: it imports this file)."""
    from attntrain.model.seq2seq import build_seq2seq_head as build

    return build(cfg, info, width)


HEADS = {"tagging": build_tagging_head, "seq2seq": build_seq2seq_head}
