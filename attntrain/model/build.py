"""Config -> modules. Blocks receive their parts; only this file chooses them.

# B batch, T time, D model width
"""

from __future__ import annotations

import torch
from torch import nn

from attntrain.model.embed import INPUTS
from attntrain.model.encoder import ENCODERS
from attntrain.model.heads import HEADS
from attntrain.model.pieces import word_features
from attntrain.registry import lookup


class Model(nn.Module):
    """Head(Encoder(Embed(batch))). forward(batch) -> {"logits", "loss" (when labels are present)}."""

    def __init__(self, embed: nn.Module, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.embed = embed
        self.encoder = encoder
        self.head = head

    def features(self, batch: dict) -> torch.Tensor:
        x, mask = self.head.prefix(*self.embed(batch))  # (B,T,D), (B,T); a [CLS] vector may come first
        x = self.encoder(x, mask, batch.get("attn_mask"), batch.get("edges"))  # (B,T,D)
        if "word_starts" in batch:  # sub-word pieces, tags per word: each word's first piece speaks for it
            x = word_features(x, batch["word_starts"])  # (B,S,D) -> (B,T,D)
        return x

    def forward(self, batch: dict) -> dict:
        logits = self.head(self.features(batch), batch)
        out = {"logits": logits}
        if "labels" in batch:
            out["loss"] = self.head.loss(logits, batch)
        return out


def build_model(cfg, info: dict) -> Model:
    """cfg: the whole Config; info: what the task knows about its data (input kind, vocabulary sizes)."""
    width = cfg.model.encoder.width
    embed = lookup(INPUTS, info["input"], "input kind")(cfg.model.embed, info, width)
    encoder = lookup(ENCODERS, cfg.model.encoder.kind, "model.encoder.kind")(cfg.model.encoder)
    # Heads also see the encoder settings: a seq2seq decoder shares its width, heads, attention and positions.
    head = lookup(HEADS, cfg.model.head.kind, "model.head.kind")(cfg.model.head, {**info, "encoder": cfg.model.encoder},
                                                                 width)
    share = getattr(head, "share_embedding", None)
    if share is not None:  # seq2seq with tie_embeddings: all uses one table for source and target
        share(embed)
    return Model(embed, encoder, head)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
