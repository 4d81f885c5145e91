"""Embed: a batch of raw inputs -> a sequence of vectors (B,T,D) and which positions are real (B,T).

# B batch, T time (tokens), C characters per token, D model width, V vocabulary size

Text: one vector per token, from the word identity (learned embedding or one-hot) plus, optionally,
a character CNN over the token's spelling, which is what lets rare and unseen words be tagged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attntrain.model.dropout import Dropout

from attntrain.registry import lookup

PAD, UNK = 0, 1  # reserved ids in every vocabulary


class LearnedVectors(nn.Module):
    """A trained vector per vocabulary entry."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.table = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        nn.init.normal_(self.table.weight, std=dim**-0.5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids)


class OneHotVectors(nn.Module):
    """The literal one-hot vector of each token (length V), mapped by a linear layer.

    Mathematically the same as a learned embedding, but it materialises (B,T,V): it is here to show
    the seed's "one-hot" input, not for speed.
    """

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.linear = nn.Linear(vocab_size, dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.linear(F.one_hot(ids, self.vocab_size).to(self.linear.weight.dtype))  # (B,T,V) -> (B,T,dim)


TEXT_VECTORS = {"learned": LearnedVectors, "onehot": OneHotVectors}


class SubwordEmbed(nn.Module):
    """Subword ids (B,T) -> table vectors scaled by sqrt(D) (B,T,D) + dropout; no projection.

    The table has the model width so that a seq2seq head can share it (tie_embeddings: all); the
    sqrt(D) scale makes vectors of initial norm ~sqrt(D), the size of a sinusoidal position vector.
    """

    def __init__(self, vocab_size: int, width: int, *, dropout: float):
        super().__init__()
        self.table = nn.Embedding(vocab_size, width, padding_idx=PAD)
        nn.init.normal_(self.table.weight, std=width**-0.5)
        self.scale = width**0.5
        self.dropout = Dropout(dropout)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dropout(self.table(batch["words"]) * self.scale), batch["mask"]


def build_subword_embed(cfg, info: dict, width: int) -> SubwordEmbed:
    return SubwordEmbed(info["num_words"], width, dropout=cfg.dropout)


class CharCNN(nn.Module):
    """Max-pooled convolution over a token's characters: (B,T,C) ids -> (B,T,filters)."""

    def __init__(self, num_chars: int, dim: int, filters: int, kernel: int):
        super().__init__()
        self.embed = nn.Embedding(num_chars, dim, padding_idx=PAD)
        self.conv = nn.Conv1d(dim, filters, kernel, padding=kernel // 2)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        B, T, C = chars.shape
        x = self.embed(chars.view(B * T, C)).transpose(1, 2)  # (B*T,C) -> (B*T,dim,C)
        h = F.relu(self.conv(x))  # (B*T,filters,C)
        h = h.masked_fill((chars.view(B * T, 1, C) == PAD), 0.0)
        return h.amax(dim=-1).view(B, T, -1)  # (B*T,filters) -> (B,T,filters)


class TextEmbed(nn.Module):
    """Word vectors (+ character CNN features) -> projection to the model width."""

    def __init__(self, words: nn.Module, word_dim: int, chars: CharCNN | None, char_out: int, width: int,
                 *, word_dropout: float, dropout: float):
        super().__init__()
        self.words = words
        self.chars = chars
        self.project = nn.Linear(word_dim + char_out, width)
        self.word_dropout = word_dropout
        self.dropout = Dropout(dropout)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = batch["words"], batch["mask"]
        if self.training and self.word_dropout > 0:
            # Train the <unk> vector on real contexts so unseen words at test time are not out of distribution.
            drop = (torch.rand(ids.shape, device=ids.device) < self.word_dropout) & mask
            ids = ids.masked_fill(drop, UNK)
        parts = [self.words(ids)]
        if self.chars is not None:
            parts.append(self.chars(batch["chars"]))
        x = self.project(torch.cat(parts, dim=-1))  # (B,T,word_dim+filters) -> (B,T,D)
        return self.dropout(x), mask


def build_text_embed(cfg, info: dict, width: int) -> TextEmbed:
    """cfg: EmbedConfig; info: vocabulary sizes from the task."""
    words = lookup(TEXT_VECTORS, cfg.kind, "model.embed.kind")(info["num_words"], cfg.word_dim)
    chars = None
    if cfg.char_dim > 0:
        chars = CharCNN(info["num_chars"], cfg.char_dim, cfg.char_filters, cfg.char_kernel)
    char_out = cfg.char_filters if chars is not None else 0
    return TextEmbed(words, cfg.word_dim, chars, char_out, width, word_dropout=cfg.word_dropout, dropout=cfg.dropout)


class GraphEmbed(nn.Module):
    """Node features (1,N,F) -> input dropout -> linear projection to the model width (1,N,D)."""

    def __init__(self, num_features: int, width: int, *, dropout: float):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.project = nn.Linear(num_features, width)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.project(self.dropout(batch["features"])), batch["mask"]


def build_graph_embed(cfg, info: dict, width: int) -> GraphEmbed:
    return GraphEmbed(info["num_features"], width, dropout=cfg.dropout)


INPUTS = {"text": build_text_embed, "graph": build_graph_embed, "subwords": build_subword_embed}
