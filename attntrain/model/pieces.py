"""Embed for the sub-word pieces of a pretrained tokenizer (input kind `pieces`): the BERT-family embedding.

# B batch, S pieces, E piece-vector width (model.embed.word_dim), D model width

piece vector + token-type vector + learned absolute position, LayerNorm, dropout, and a projection to the
model width when the vectors are narrower (ELECTRA-small: E = 128, D = 256). The positions live here, not
in the encoder (whose model.encoder.position is `none` for such runs), because these checkpoints add them
at width E, before the norm and the projection.
"""

from __future__ import annotations

import torch
from torch import nn

from attntrain.model.dropout import Dropout
from attntrain.model.positional import LearnedPosition


class PieceEmbed(nn.Module):
    """Piece ids (B,S) -> vectors (B,S,D) and the pieces' mask (B,S).

    Inputs are single segments, so every piece has token type 0 (its vector is added to all of them).
    A tagging batch marks words, not pieces, in `mask`: the pieces' own mask is then `piece_mask`.
    """

    def __init__(self, vocab_size: int, dim: int, width: int, *, positions: int, token_types: int, norm: bool,
                 norm_eps: float, dropout: float):
        super().__init__()
        self.table = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.table.weight, std=0.02)
        self.token_types = nn.Embedding(token_types, dim) if token_types else None
        if self.token_types is not None:
            nn.init.normal_(self.token_types.weight, std=0.02)
        self.position = LearnedPosition(dim, positions, 1) if positions else None
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if norm else None
        self.dropout = Dropout(dropout)
        self.project = nn.Linear(dim, width) if dim != width else None

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.table(batch["words"])  # (B,S) -> (B,S,E)
        if self.token_types is not None:
            x = x + self.token_types.weight[0]
        if self.position is not None:
            x = self.position(x)
        if self.norm is not None:
            x = self.norm(x)
        x = self.dropout(x)
        if self.project is not None:
            x = self.project(x)  # (B,S,E) -> (B,S,D)
        return x, batch["piece_mask"] if "piece_mask" in batch else batch["mask"]


def build_piece_embed(cfg, info: dict, width: int) -> PieceEmbed:
    """cfg: EmbedConfig; info["num_words"]: the tokenizer's vocabulary size."""
    return PieceEmbed(info["num_words"], cfg.word_dim, width, positions=cfg.positions, token_types=cfg.token_types,
                      norm=cfg.norm, norm_eps=cfg.norm_eps, dropout=cfg.dropout)


def word_features(features: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """The vector of each word's first piece: features (B,S,D), starts (B,T) piece index -> (B,T,D).

    Tagging heads then see one vector per word, so their loss, decoding and metrics stay per word and the
    other pieces of a word are ignored.
    """
    B, T = starts.shape
    index = starts.unsqueeze(-1).expand(B, T, features.shape[-1])  # (B,T) -> (B,T,D)
    return features.gather(1, index)
