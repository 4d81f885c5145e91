"""Baseline encoders with the Transformer's interface, so one config key swaps them in.

# B batch, T time, D model width, K kernel size

CNN: self-attention with a fixed, local receptive field (K positions per layer, widened by dilation).
RNN: a serial reader; distant positions meet only through the recurrent state.
Both read (B,T,D) + mask (B,T) and return (B,T,D); padding never reaches a real position.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attntrain.model.dropout import Dropout


def _no_graph(edges: Optional[torch.Tensor]) -> None:
    if edges is not None:
        raise ValueError("graph edges need model.encoder.kind: transformer or gat (CNN/RNN read a sequence)")


class ConvBlock(nn.Module):
    """x + dropout(GELU(conv(norm(x)))), with padded positions zeroed before the convolution."""

    def __init__(self, width: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.conv = nn.Conv1d(width, width, kernel_size, dilation=dilation, padding=dilation * (kernel_size // 2))
        self.activation = nn.GELU()
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm(x).masked_fill(~mask[..., None], 0.0)  # zeros = the same as the unpadded sequence's padding
        h = self.conv(h.transpose(1, 2)).transpose(1, 2)  # (B,T,D) -> (B,D,T) -> (B,T,D)
        return x + self.dropout(self.activation(h))


class CNNEncoder(nn.Module):
    """Stacked residual 1-D convolutions; layer i uses dilation `dilation ** i`."""

    def __init__(self, blocks: list[ConvBlock], width: int):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, attn_mask=None, edges=None) -> torch.Tensor:
        _no_graph(edges)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


class RNNEncoder(nn.Module):
    """LSTM or GRU over packed sequences (padding is never read); bidirectional halves keep width D."""

    def __init__(self, rnn: nn.Module, width: int, dropout: float):
        super().__init__()
        self.rnn = rnn
        self.dropout = Dropout(dropout)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, attn_mask=None, edges=None) -> torch.Tensor:
        _no_graph(edges)
        T = x.shape[1]
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B,T,D)
        return self.norm(self.dropout(out))


def build_cnn(cfg) -> CNNEncoder:
    """cfg: EncoderConfig."""
    blocks = [ConvBlock(cfg.width, cfg.kernel_size, cfg.dilation**i, cfg.dropout) for i in range(cfg.num_layers)]
    return CNNEncoder(blocks, cfg.width)


def build_rnn(cfg) -> RNNEncoder:
    """cfg: EncoderConfig. Hidden size per direction is width / 2 when bidirectional."""
    cell = {"lstm": nn.LSTM, "gru": nn.GRU}[cfg.rnn_cell]
    hidden = cfg.width // 2 if cfg.bidirectional else cfg.width
    rnn = cell(cfg.width, hidden, num_layers=cfg.num_layers, batch_first=True, bidirectional=cfg.bidirectional,
               dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
    return RNNEncoder(rnn, cfg.width, cfg.dropout)
