"""Pretraining heads (model.head.kind pretrain): what was masked, predicted from the encoder's features.

The batch comes masked by attntrain.data.tasks.pretrain: `masked` (B,T) marks the chosen positions and
`labels` holds what was there. Only the chosen positions reach the output layer (a sixth of the
positions for text), which is most of the cost of a masked-word step otherwise. A fine-tune run
(model.init) takes the embed and encoder and drops this head.

# B batch, T positions, D model width, N chosen positions, E word vector width, V words, F features per target
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attntrain.errors import UserError


def chosen_features(features: torch.Tensor, batch: dict) -> torch.Tensor:
    """(B,T,D) -> (N,D) at the masked positions."""
    if "masked" not in batch:
        raise UserError("a pretraining run predicts nothing: fine-tune from it with model.init: RUN_DIR "
                        "(attntrain fit CONFIG --set model.init=RUN_DIR)")
    return features[batch["masked"]]


class MaskedWordMeter:
    """Masked-word accuracy (the share of chosen positions whose word is the top score) and mean loss."""

    def __init__(self):
        self.correct = self.total = self.batches = 0
        self.loss_sum = 0.0

    def update(self, logits: torch.Tensor, batch: dict, loss: torch.Tensor | None = None) -> None:
        targets = batch["labels"][batch["masked"]]  # (N,)
        self.correct += int((logits.argmax(-1) == targets).sum())
        self.total += int(targets.numel())
        if loss is not None:
            self.loss_sum += float(loss)
            self.batches += 1

    def compute(self) -> dict:
        out = {"accuracy": 100.0 * self.correct / max(self.total, 1), "masked": self.total}
        if self.batches:
            out["loss"] = self.loss_sum / self.batches
        return out


class MaskedWordHead(nn.Module):
    """Masked-word prediction (BERT): (B,T,D) -> (N,D) -> dense, GELU, LayerNorm -> (N,E) -> scores (N,V).

    The output layer is the embedding's word table (tied, as BERT), joined by `share_embedding` when the
    model is built; E is its width (model.embed.word_dim), V the words scored (pretrain.output_words:
    the most frequent ones; all by default).
    """

    def __init__(self, width: int, num_outputs: int):
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.LayerNorm(width))
        self.width, self.num_outputs = width, num_outputs
        self.down = None  # (D -> E), made with the tie
        self.bias = nn.Parameter(torch.zeros(num_outputs))
        self._words: list[nn.Module] = []  # the embed's word vectors, held outside the module tree (no second copy)

    def share_embedding(self, embed: nn.Module) -> None:
        words = getattr(embed, "words", None)
        table = getattr(words, "table", None) if words is not None else None
        linear = getattr(words, "linear", None) if words is not None else None
        if table is None and linear is None:
            raise UserError("model.head.kind pretrain: text pretraining needs a word embedding (model.embed.kind "
                            "learned or onehot)")
        self._words = [words]
        self.down = nn.Linear(self.width, table.weight.shape[1] if table is not None else linear.weight.shape[0])

    def output_weight(self) -> torch.Tensor:
        """(V',E): the first V' = num_outputs rows of the word table (or of the one-hot embedding's map, transposed)."""
        words = self._words[0]
        weight = words.table.weight if hasattr(words, "table") else words.linear.weight.t()
        return weight[: self.num_outputs]

    def prefix(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, mask

    def forward(self, features: torch.Tensor, batch: dict) -> torch.Tensor:
        hidden = self.down(self.transform(chosen_features(features, batch)))  # (N,D) -> (N,E)
        return F.linear(hidden, self.output_weight(), self.bias)  # (N,V)

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return F.cross_entropy(logits.float(), batch["labels"][batch["masked"]])

    def predict(self, logits: torch.Tensor, batch: dict):
        chosen_features(torch.empty(0), {})  # the error: a pretraining run predicts nothing

    def new_meter(self) -> MaskedWordMeter:
        return MaskedWordMeter()


class ReconstructionMeter:
    """Mean reconstruction loss over batches (audio frames, image patches)."""

    def __init__(self):
        self.loss_sum, self.batches, self.total = 0.0, 0, 0

    def update(self, prediction: torch.Tensor, batch: dict, loss: torch.Tensor | None = None) -> None:
        self.total += int(batch["masked"].sum())
        if loss is not None:
            self.loss_sum += float(loss)
            self.batches += 1

    def compute(self) -> dict:
        out = {"masked": self.total}
        if self.batches:
            out["loss"] = self.loss_sum / self.batches
        return out


class ReconstructionHead(nn.Module):
    """Masked-frame / masked-patch reconstruction: (B,T,D) -> (N,D) -> linear -> (N,F), the masked targets.

    audio: L1 on the normalised log-mel frames (F = features per frame); image: squared error on the
    normalised pixels of each masked patch (F = C*P*P), the loss on masked patches only (MAE).
    """

    def __init__(self, width: int, target_dim: int, *, loss: str):
        super().__init__()
        self.output = nn.Linear(width, target_dim)
        self.distance = {"l1": F.l1_loss, "mse": F.mse_loss}[loss]

    def prefix(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, mask

    def forward(self, features: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.output(chosen_features(features, batch))  # (N,F)

    def loss(self, prediction: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.distance(prediction.float(), batch["labels"][batch["masked"]].float())

    def predict(self, prediction: torch.Tensor, batch: dict):
        chosen_features(torch.empty(0), {})

    def new_meter(self) -> ReconstructionMeter:
        return ReconstructionMeter()


def build_pretrain_head(cfg, info: dict, width: int) -> nn.Module:
    """The objective of the input kind (info["input"]): masked words, frames or patches."""
    kind = info["input"]
    if kind == "text":
        return MaskedWordHead(width, info.get("num_outputs", info["num_words"]))
    if kind == "audio":
        return ReconstructionHead(width, info["num_features"], loss="l1")
    if kind == "image":
        return ReconstructionHead(width, (info.get("channels") or 1) * info["patch"] ** 2, loss="mse")
    raise UserError(f"model.head.kind pretrain: no pretraining objective for {kind} input (text, audio, image)")
