"""Dropout with a cheaper random mask on CPU.

`F.dropout` on CPU draws one float per element (bernoulli_), which measured 14-21% of a training
step here (PERF-NOTES). This draws 56 random bits per int64 and uses each byte as one uniform
8-bit number: ~3x cheaper for the same result in distribution. The drop rate is rounded to a
multiple of 1/256 (p=0.1 becomes 26/256 = 0.1016). On CUDA it is plain `F.dropout`.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

_BYTES = slice(0, 7) if sys.byteorder == "little" else slice(1, 8)  # the 7 low-order bytes of each int64


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """Bool mask, True with probability ~(1 - p), and the matching rescale factor."""
    threshold = round(p * 256)
    n = 1
    for s in shape:
        n *= s
    words = -(-n // 7)
    bits = torch.randint(0, 2**56, (words,), dtype=torch.int64, device=device)
    # Compared on the strided (words,7) view of the bytes: the comparison writes a fresh contiguous
    # mask, so no copy of the bytes is needed to drop each word's eighth byte.
    keep = bits.view(torch.uint8).view(words, 8)[:, _BYTES] >= threshold  # (words,7) bool
    return keep.view(-1)[:n].view(shape), 256.0 / (256 - threshold)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    keep, scale = keep_mask(x.shape, p, x.device)
    # One multiply by a float mask: forward + backward measured ~2.4x faster than masked_fill, then scale.
    # bool * scale makes the float mask in one pass (float32 is what a bool times a Python float gives).
    mask = keep * scale if x.dtype == torch.float32 else keep.to(x.dtype) * scale
    return x * mask


class Dropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
