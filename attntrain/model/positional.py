"""Positional encodings: self-attention alone is blind to order, these put it back.

# B batch, T time, D model width, H heads, E head width

Absolute encodings (sinusoidal, learned) are added to the input vectors. Rotary encodes position by
rotating queries and keys inside attention, so it reaches the scores as a relative offset.
`offset` is the position of the first vector: a decoder that feeds one new token per step (with a
key/value cache) passes the number of tokens already decoded.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoid_table(length: int, width: int) -> torch.Tensor:
    """(length, width) table of sin/cos at geometrically spaced frequencies (Vaswani et al. 2017)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: width // 2])
    return table


def sinusoid_table_2d(rows: int, cols: int, width: int) -> torch.Tensor:
    """(rows*cols, width) positions of a patch grid, row-major: first half encodes row, second column."""
    if width % 4:
        raise ValueError(f"a 2-D sinusoidal table needs a width divisible by 4, got {width}")
    half = width // 2
    row = sinusoid_table(rows, half)[:, None, :].expand(rows, cols, half)  # (R,C,D/2)
    col = sinusoid_table(cols, half)[None, :, :].expand(rows, cols, half)  # (R,C,D/2)
    return torch.cat((row, col), dim=-1).reshape(rows * cols, width)  # (R*C,D)


class NoPosition(nn.Module):
    """Leaves the vectors unchanged: the encoder sees a set, not a sequence."""

    rotary = False

    def __init__(self, width: int, max_len: int, num_heads: int):
        super().__init__()

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return x


class SinusoidalPosition(nn.Module):
    """Adds a fixed sin/cos table; covers any length (the table grows on demand)."""

    rotary = False

    def __init__(self, width: int, max_len: int, num_heads: int):
        super().__init__()
        self.width = width
        self.register_buffer("table", sinusoid_table(max_len, width), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        end = offset + x.shape[1]
        if end > self.table.shape[0]:
            self.table = sinusoid_table(end, self.width).to(self.table.device)
        return x + self.table[offset:end].to(x.dtype)  # (B,T,D) + (T,D)


class LearnedPosition(nn.Module):
    """Adds a trained vector per position; positions past max_len are an error, not a silent wrap."""

    rotary = False

    def __init__(self, width: int, max_len: int, num_heads: int):
        super().__init__()
        self.table = nn.Embedding(max_len, width)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        end = offset + x.shape[1]
        if end > self.table.num_embeddings:
            raise ValueError(f"sequence of {end} positions exceeds model.encoder.max_len={self.table.num_embeddings}")
        return x + self.table.weight[offset:end]


class RotaryPosition(nn.Module):
    """Rotary position embedding (Su et al. 2021): rotates pairs of query/key channels by position.

    Called on q or k of shape (B,H,T,E); the input vectors themselves are left unchanged.
    """

    rotary = True

    def __init__(self, width: int, max_len: int, num_heads: int):
        super().__init__()
        head_dim = width // num_heads
        if head_dim % 2:
            raise ValueError(f"rotary positions need an even head width, got {head_dim}")
        inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        if x.dim() == 3:  # input vectors: nothing to add
            return x
        T = x.shape[-2]
        index = torch.arange(offset, offset + T, device=x.device, dtype=torch.float32)
        angles = torch.outer(index, self.inv_freq)  # (T,E/2)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        even, odd = x[..., 0::2], x[..., 1::2]  # (B,H,T,E/2) each
        return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


POSITIONS: dict[str, type[nn.Module]] = {
    "sinusoidal": SinusoidalPosition,
    "learned": LearnedPosition,
    "rotary": RotaryPosition,
    "none": NoPosition,
}
