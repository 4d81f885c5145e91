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

from attntrain.data.batching import IGNORE  # re-exported: model.heads.IGNORE
from attntrain.data.targets.spans import allowed_transitions
from attntrain.errors import UserError
from attntrain.model.crf import LinearChainCRF, penalty, viterbi
from attntrain.model.dropout import Dropout
from attntrain.model.pretrain_heads import build_pretrain_head  # the objectives of `attntrain pretrain`
from attntrain.model.seq2seq import build_seq2seq_head  # the encoder-decoder head



class TaggingMeter:
    """Token accuracy (and accuracy on out-of-vocabulary tokens when the batch marks them); with a span
    scheme (IOB2 / BIOES) also entity precision, recall and F1 overall and per type (seqeval, strict).
    Predictions come from the head's `decode` (argmax, constrained or CRF Viterbi)."""

    settings = ("tags",)  # the same on every process: not summed by distributed.sync_meter

    def __init__(self, decode=None, tags: list[str] | None = None, scheme: str = "none"):
        self.decode = decode or (lambda logits, mask: logits.argmax(-1))
        self.tags, self.scheme = tags, scheme
        self.correct = self.total = self.oov_correct = self.oov_total = 0
        self.loss_sum = 0.0
        self.batches = 0
        self.true_tags: list[list[str]] = []
        self.predicted_tags: list[list[str]] = []
        L = len(tags) if tags else 0
        self.confusion = torch.zeros(L, L, dtype=torch.long) if L else None

    def update(self, logits: torch.Tensor, batch: dict, loss: torch.Tensor | None = None) -> None:
        labels = batch["labels"]
        real = labels != IGNORE
        predicted = self.decode(logits, batch["mask"])
        hit = (predicted == labels) & real
        self.correct += int(hit.sum())
        self.total += int(real.sum())
        if "oov" in batch:
            oov = batch["oov"] & real
            self.oov_correct += int((hit & oov).sum())
            self.oov_total += int(oov.sum())
        if self.confusion is not None:
            L = self.confusion.shape[0]
            pairs = labels[real].cpu() * L + predicted[real].cpu()  # true * L + predicted
            self.confusion += torch.bincount(pairs, minlength=L * L).view(L, L)
        if self.scheme != "none":
            for row_true, row_pred, n in zip(labels.tolist(), predicted.tolist(), real.sum(1).tolist()):
                self.true_tags.append([self.tags[i] for i in row_true[:n]])
                self.predicted_tags.append([self.tags[i] for i in row_pred[:n]])
        if loss is not None:
            self.loss_sum += float(loss)
            self.batches += 1

    def compute(self) -> dict:
        out = {"accuracy": 100.0 * self.correct / max(self.total, 1), "tokens": self.total}
        if self.oov_total:
            out["oov_accuracy"] = 100.0 * self.oov_correct / self.oov_total
            out["oov_tokens"] = self.oov_total
        if self.scheme != "none":
            from attntrain.data.targets.spans import span_scores

            out.update(span_scores(self.true_tags, self.predicted_tags, self.scheme))
        if self.batches:
            out["loss"] = self.loss_sum / self.batches
        return out


class TaggingHead(nn.Module):
    """A label per position: (B,T,D) -> scores (B,T,L).

    Loss: cross-entropy over real positions, or with `crf` the negative log-likelihood of a linear-chain
    CRF (per real token). Decoding: `argmax` per position, `constrained` (the most probable sequence whose
    tags form valid spans: Viterbi over log-probabilities) or the CRF's Viterbi path.
    """

    def __init__(self, width: int, num_labels: int, *, dropout: float, label_smoothing: float,
                 tags: list[str] | None = None, scheme: str = "none", decode: str = "argmax", crf: bool = False,
                 outside_bias: float = 0.0):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.output = nn.Linear(width, num_labels)
        self.label_smoothing = label_smoothing
        self.tags, self.scheme, self.decoding = tags, scheme, decode
        self.set_outside_bias(outside_bias)
        start, allowed, end = allowed_transitions(tags or [str(i) for i in range(num_labels)], scheme)
        self.crf = LinearChainCRF(num_labels, start, allowed, end) if crf else None
        for name, table in (("start_penalty", start), ("transition_penalty", allowed), ("end_penalty", end)):
            self.register_buffer(name, penalty(table), persistent=False)

    def spans(self) -> bool:
        """Span tags (B-/I- with an O tag): the ones an O bias applies to."""
        return self.scheme != "none" and bool(self.tags) and "O" in self.tags

    def set_outside_bias(self, bias: float) -> None:
        """Added to the O tag's score when decoding span tags (< 0: more, longer spans); training is unchanged."""
        self.outside_bias = float(bias)
        self.outside = self.tags.index("O") if bias and self.spans() else None

    def prefix(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, mask

    def forward(self, features: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.output(self.dropout(features))

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        if self.crf is not None:
            mask = batch["mask"]
            return self.crf.nll(logits, batch["labels"], mask) / mask.sum().clamp(min=1)
        return F.cross_entropy(
            logits.flatten(0, 1).float(),  # (B,T,L) -> (B*T,L)
            batch["labels"].flatten(),
            ignore_index=IGNORE,
            label_smoothing=self.label_smoothing,
        )

    def decode(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Tag ids (B,T) of the chosen decoding."""
        scores = logits.float() if self.crf is not None else torch.log_softmax(logits.float(), -1)
        if self.outside is not None:
            scores = scores.clone()
            scores[..., self.outside] += self.outside_bias
        if self.crf is not None:
            return self.crf.decode(scores, mask)
        if self.decoding == "constrained" and self.scheme != "none":
            return viterbi(scores, mask, self.transition_penalty, self.start_penalty, self.end_penalty)
        return scores.argmax(-1)

    def predict(self, logits: torch.Tensor, batch: dict) -> list[list[int]]:
        """Label ids of the real positions of each sequence."""
        ids = self.decode(logits, batch["mask"])
        lengths = batch["mask"].sum(-1).tolist()
        return [row[:n] for row, n in zip(ids.tolist(), lengths)]

    def new_meter(self) -> TaggingMeter:
        return TaggingMeter(self.decode, self.tags, self.scheme)


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

    def probabilities(self, logits: torch.Tensor) -> list[list[float]]:
        """(B,L) logits -> the full softmax of each sequence (machine-readable predictions)."""
        return torch.softmax(logits.float(), dim=-1).tolist()

    def new_meter(self) -> SequenceMeter:
        return SequenceMeter(self.output.out_features)


POOLINGS = ("cls", "mean", "attention")


def build_tagging_head(cfg, info: dict, width: int) -> TaggingHead:
    """cfg: HeadConfig."""
    scheme = info.get("scheme", "none")
    decode = ("constrained" if scheme != "none" else "argmax") if cfg.decode == "auto" else cfg.decode
    if cfg.outside_bias != 0.0 and (scheme == "none" or "O" not in (info.get("labels") or [])):
        raise UserError(f"model.head.outside_bias: {cfg.outside_bias} biases the O tag of span tags (B-/I-/O), but "
                        f"these tags have no span scheme or no O tag (scheme {scheme}); remove it")
    return TaggingHead(width, info["num_labels"], dropout=cfg.dropout, label_smoothing=cfg.label_smoothing,
                       tags=info.get("labels"), scheme=scheme, decode=decode, crf=cfg.crf,
                       outside_bias=cfg.outside_bias if cfg.outside_bias != "dev" else 0.0)  # "dev": set after training


def build_sequence_head(cfg, info: dict, width: int) -> SequenceHead:
    return SequenceHead(width, info["num_labels"], pooling=cfg.pooling, dropout=cfg.dropout,
                        label_smoothing=cfg.label_smoothing)



HEADS = {"tagging": build_tagging_head, "sequence": build_sequence_head, "seq2seq": build_seq2seq_head,
         "pretrain": build_pretrain_head}
