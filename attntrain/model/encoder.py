"""Encoders: input vectors (B,T,D) + which positions are real -> one feature vector per position.

# B batch, T time, D model width, H heads

Every encoder has the same interface, so every head works with every encoder:
    forward(x (B,T,D), mask (B,T) bool, attn_mask (B,T,T) bool or None, edges (2,N_edges) or None) -> (B,T,D)
`attn_mask` is an extra dense restriction on top of padding; `edges` restricts attention of a single
graph (B = 1) to its edges, computed sparsely (memory linear in the number of edges).
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from attntrain.model.dropout import Dropout

from attntrain.model.attention import LocalMask, MultiHeadAttention, attention_mask, build_attention
from attntrain.model.baselines import build_cnn, build_rnn
from attntrain.model.gat import build_gat
from attntrain.model.positional import POSITIONS
from attntrain.model.trace import exporting
from attntrain.registry import lookup


# In training the feed-forward layers skip padded positions when at least this fraction of a batch is
# padding. They are ~60% of a block's matmul work, so a batch with 25% padding saves ~15% of a training
# step; gathering and scattering the rows costs ~2%, which rarer padding would not repay. Evaluation,
# prediction and export compute every position, so their outputs at padding stay what they were.
SKIP_PADDING_FROM = 0.1


def real_rows(mask: torch.Tensor) -> Optional[torch.Tensor]:
    """Flat indices (N,) of the real positions of mask (B,T), or None when padding is under SKIP_PADDING_FROM
    or a trace (export) is running: a trace would fix one batch's padding into the graph."""
    if exporting():
        return None
    if int(mask.sum()) > (1 - SKIP_PADDING_FROM) * mask.numel():
        return None
    return mask.reshape(-1).nonzero().squeeze(1)  # (B,T) -> (N,)


class FeedForward(nn.Module):
    """Position-wise Linear -> activation (GELU unless given) -> Linear: (B,T,D) -> (B,T,D).

    No dropout on the hidden layer (as in BERT): it is the largest activation of the block, its mask
    cost ~12% of a training step on CPU, and the block's residual dropout already regularises.
    Given `rows` (`real_rows`), only those positions are computed; the others come out as zeros.
    """

    def __init__(self, width: int, hidden: int, activation: Optional[nn.Module] = None):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), activation or nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        if rows is None:
            return self.net(x)
        B, T, D = x.shape
        packed = self.net(x.reshape(B * T, D).index_select(0, rows))  # (B*T,D) -> (N,D), real positions only
        return packed.new_zeros(B * T, D).index_copy(0, rows, packed).view(B, T, D)


class Block(nn.Module):
    """Pre-norm Transformer block: x + attention(norm(x)), then x + feed_forward(norm(x))."""

    def __init__(self, attention: MultiHeadAttention, feed_forward: Optional[FeedForward], width: int,
                 dropout: float, residual: bool = True, *, norm_eps: float = 1e-5):
        super().__init__()
        self.residual = residual
        self.attention_norm = nn.LayerNorm(width, eps=norm_eps)
        self.attention = attention
        self.ffn_norm = nn.LayerNorm(width, eps=norm_eps) if feed_forward is not None else None
        self.feed_forward = feed_forward
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor], edges: Optional[torch.Tensor] = None,
                rows: Optional[torch.Tensor] = None):
        """rows: flat indices of the real positions, for the feed-forward layers to skip padding (or None)."""
        mixed = self.dropout(self.attention(self.attention_norm(x), mask, edges=edges))
        # Without the residual a vector is only what it gathered: on graphs this forces the
        # neighbourhood smoothing that GAT/GCN rely on instead of memorising a node's own features.
        x = x + mixed if self.residual else mixed
        if self.feed_forward is None:
            return x
        # Dropout after the padding is back: its masks are drawn for (B,T,D) whether or not rows were skipped.
        return x + self.dropout(self.feed_forward(self.ffn_norm(x), rows))

    def attention_input(self, x: torch.Tensor) -> torch.Tensor:
        """What this block's attention reads from its input x (B,T,D): the normalised x."""
        return self.attention_norm(x)


class PostNormBlock(Block):
    """Post-norm Transformer block (BERT family): norm(x + attention(x)), then norm(x + feed_forward(x)).

    Same parts and parameter names as `Block`; only the order differs, so a checkpoint maps onto either.
    """

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor], edges: Optional[torch.Tensor] = None,
                rows: Optional[torch.Tensor] = None):
        mixed = self.dropout(self.attention(x, mask, edges=edges))
        x = self.attention_norm(x + mixed if self.residual else mixed)
        if self.feed_forward is None:
            return x
        return self.ffn_norm(x + self.dropout(self.feed_forward(x, rows)))

    def attention_input(self, x: torch.Tensor) -> torch.Tensor:
        return x


BLOCKS = {"pre": Block, "post": PostNormBlock}  # model.encoder.norm
ACTIVATIONS = {"gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "relu": nn.ReLU}


class TransformerEncoder(nn.Module):
    """Positional encoding + N self-attention blocks + final norm (pre-norm blocks; post-norm blocks end normed)."""

    def __init__(self, position: nn.Module, blocks: list[Block], width: int, window: Optional[int] = None, *,
                 norm: Optional[nn.Module] = None):
        super().__init__()
        self.position = position
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(width) if norm is None else norm
        self.window = window
        self.blockwise = True  # False: the dense band mask, the reference the blockwise path is tested against
        self.skip_padding = True  # False: in training too, feed-forward layers compute padding (the reference)

    def attention_mask(self, mask: torch.Tensor,
                       attn_mask: Optional[torch.Tensor]) -> Union[torch.Tensor, LocalMask, None]:
        """Padding, window and extra masks as one bool (B,1,T|1,T) mask, or None if all true; a window
        over a long input stays a LocalMask, which dot + softmax attention computes blockwise."""
        return attention_mask(mask, attn_mask, self.window, blockwise=self.blockwise)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                edges: Optional[torch.Tensor] = None) -> torch.Tensor:
        full_mask = None if edges is not None else self.attention_mask(mask, attn_mask)
        rows = real_rows(mask) if self.skip_padding and self.training and edges is None else None
        x = self.position(x)
        for block in self.blocks:
            x = block(x, full_mask, edges, rows)
        return self.norm(x)


def build_transformer(cfg) -> TransformerEncoder:
    """cfg: EncoderConfig."""
    position = lookup(POSITIONS, cfg.position, "model.encoder.position")(cfg.width, cfg.max_len, cfg.num_heads)
    rotary = position if position.rotary else None
    block = lookup(BLOCKS, cfg.norm, "model.encoder.norm")
    activation = lookup(ACTIVATIONS, cfg.activation, "model.encoder.activation")
    blocks = [
        block(
            build_attention(cfg.width, cfg.num_heads, score=cfg.attention.score, normalize=cfg.attention.normalize,
                            dropout=cfg.attention.dropout, rotary=rotary,
                            additive_chunk_mb=cfg.attention.additive_chunk_mb),
            FeedForward(cfg.width, cfg.ffn_dim, activation()) if cfg.ffn_dim else None,
            cfg.width,
            cfg.dropout,
            cfg.residual,
            norm_eps=cfg.norm_eps,
        )
        for _ in range(cfg.num_layers)
    ]
    # A post-norm block's output is already normalised: a final norm would add an untrained layer.
    norm = nn.Identity() if cfg.norm == "post" else nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
    return TransformerEncoder(position, blocks, cfg.width, window=cfg.attention.window, norm=norm)


ENCODERS = {"transformer": build_transformer, "cnn": build_cnn, "rnn": build_rnn, "gat": build_gat}
