"""Graph attention network (GAT, Velickovic et al. 2018) as an encoder kind: `model.encoder.kind: gat`.

# B batch, N nodes (positions), D model width, H heads, E head width, L labels, N_edges edges

One attention step over projected node vectors h'_j = W h_j (the same h' is scored and summed):
    e_ij = LeakyReLU_0.2(a_dst . h'_i + a_src . h'_j)      i attends to its neighbour j
    alpha_ij = softmax of e_i. over i's incoming edges  ->  out_i = sum_j alpha_ij h'_j
The score splits into one number per node and per head for each side, so an edge costs a gather
and an add. Along `edges` the softmax runs per target node (`Softmax.edges`, memory O(edges)); with
`edges=None` the same math runs densely over all positions (padding and `attn_mask` respected),
which is the reference the edge path is tested against.

How the paper's network maps onto Head(Encoder(Embed(batch))), for num_layers = 2:

    paper:   dropout -> W1 -> attend (8 heads x 8, concat) -> ELU -> dropout -> W2 -> attend (1 head) -> softmax
    Embed:   dropout -> Linear(F, D)          W1 of all heads at once; its bias is the layer's bias,
                                              since softmax weights sum to one
    Encoder: attend (H heads x D/H, concat) -> ELU
             dropout -> attend (output_heads, each over all D, averaged)
    Head:    Linear(D, L)                     W2: a weighted sum commutes with a linear map, so
                                              W2 (sum_j alpha_ij x_j) = sum_j alpha_ij (W2 x_j)

So the first layer uses the Embed's projection as its W, the last layer uses the Head's, and only
middle layers (num_layers > 2: dropout -> Linear(D, D) -> attend -> ELU) project on their own. The
last layer scores a . x_j rather than a . W2 x_j: the same kind of linear score of x_j, with `a` free
in D dimensions instead of confined to W2's row space. Set `model.head.dropout: 0` to match the
paper (it has no dropout between the output attention and the softmax).

Reads num_layers, width, num_heads, output_heads, dropout (on each layer's input), attention.dropout
(on the coefficients alpha) and attention.normalize (softmax as in the paper, or relu). GAT has its
own score, no residual, feed-forward, norm or positions: the other encoder fields are not read.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from attntrain.errors import UserError
from attntrain.model.attention import NORMALIZERS, attention_mask
from attntrain.model.dropout import Dropout, dropout
from attntrain.registry import lookup


class GraphAttention(nn.Module):
    """GAT attention over projected vectors (no W of its own): h (B,N,H,E) -> (B,N,H,E).

    forward(h, mask (B,1,1|N,N) bool or None, edges (2,N_edges) [source, target] or None).
    """

    def __init__(self, num_heads: int, head_dim: int, *, normalize, dropout: float, slope: float = 0.2):
        super().__init__()
        bound = math.sqrt(6.0 / (head_dim + 1))  # Glorot for a (E -> 1) map, as the paper's code
        self.source = nn.Parameter(torch.empty(num_heads, head_dim).uniform_(-bound, bound))  # a_src
        self.target = nn.Parameter(torch.empty(num_heads, head_dim).uniform_(-bound, bound))  # a_dst
        self.normalize = normalize
        self.dropout = dropout
        self.slope = slope

    def forward(self, h: torch.Tensor, mask: Optional[torch.Tensor] = None,
                edges: Optional[torch.Tensor] = None) -> torch.Tensor:
        from_source = torch.einsum("bnhe,he->bnh", h, self.source)  # a_src . h'_j  (B,N,H)
        from_target = torch.einsum("bnhe,he->bnh", h, self.target)  # a_dst . h'_i  (B,N,H)
        if edges is None:
            return self.attend_dense(h, from_source, from_target, mask)
        if h.shape[0] != 1:
            raise ValueError(f"graph edges describe one graph (B = 1), got a batch of {h.shape[0]}")
        return self.attend_edges(h[0], from_source[0], from_target[0], edges)[None]

    def attend_edges(self, h: torch.Tensor, from_source: torch.Tensor, from_target: torch.Tensor,
                     edges: torch.Tensor) -> torch.Tensor:
        """h (N,H,E), scores (N,H), edges (2,N_edges) -> (N,H,E); memory O(N_edges H E)."""
        source, target = edges
        # index_select, not h[source]: the same gather, ~5x faster on CPU (and in backward)
        pair = from_target.index_select(0, target) + from_source.index_select(0, source)  # (N_edges,H)
        weights = self.normalize.edges(F.leaky_relu(pair, self.slope), target, h.shape[0])  # over incoming edges
        weights = dropout(weights, self.dropout, self.training)
        messages = weights[..., None] * h.index_select(0, source)  # (N_edges,H,1) * (N_edges,H,E)
        return torch.zeros_like(h).index_add_(0, target, messages)  # (N_edges,H,E) -> (N,H,E)

    def attend_dense(self, h: torch.Tensor, from_source: torch.Tensor, from_target: torch.Tensor,
                     mask: Optional[torch.Tensor]) -> torch.Tensor:
        """h (B,N,H,E), scores (B,N,H), mask (B,1,1|N,N) -> (B,N,H,E); memory O(B H N^2)."""
        pair = from_target.transpose(1, 2)[..., :, None] + from_source.transpose(1, 2)[..., None, :]  # (B,H,N,N)
        weights = self.normalize.dense(F.leaky_relu(pair, self.slope), mask)
        weights = dropout(weights, self.dropout, self.training)
        return torch.matmul(weights, h.transpose(1, 2)).transpose(1, 2)  # (B,H,N,N) @ (B,H,N,E) -> (B,N,H,E)


class GATLayer(nn.Module):
    """dropout -> projection W -> attention -> merge heads -> activation: (B,N,D) -> (B,N,D).

    `merge` "concat": H heads of width D/H side by side (hidden layers); "mean": every head attends
    over the whole D-wide vector and the heads are averaged (output layer).
    """

    def __init__(self, attention: GraphAttention, project: nn.Module, activation: nn.Module, *,
                 merge: str, dropout: float):
        super().__init__()
        if merge not in ("concat", "mean"):
            raise ValueError(f"unknown head merge {merge!r}")
        self.dropout = Dropout(dropout)
        self.project = project
        self.attention = attention
        self.activation = activation
        self.merge = merge
        self.num_heads = attention.source.shape[0]

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor], edges: Optional[torch.Tensor]) -> torch.Tensor:
        h = self.project(self.dropout(x))
        B, N, D = h.shape
        if self.merge == "concat":
            out = self.attention(h.view(B, N, self.num_heads, D // self.num_heads), mask, edges)  # (B,N,H,D/H)
            out = out.reshape(B, N, D)
        else:
            out = self.attention(h[:, :, None].expand(B, N, self.num_heads, D), mask, edges)  # (B,N,H,D)
            out = out.mean(2)
        return self.activation(out)


class GATEncoder(nn.Module):
    """A stack of GAT layers with the common encoder interface (no positions, no norm).

    forward(x (B,N,D), mask (B,N) bool, attn_mask (B,N,N) bool or None, edges (2,N_edges) or None) -> (B,N,D).
    """

    def __init__(self, layers: list[GATLayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                edges: Optional[torch.Tensor] = None) -> torch.Tensor:
        full_mask = None if edges is not None else attention_mask(mask, attn_mask)
        for layer in self.layers:
            x = layer(x, full_mask, edges)
        return x


def build_gat(cfg) -> GATEncoder:
    """cfg: EncoderConfig. Layer 1 attends over the Embed's projection; the last layer feeds the Head's."""
    if cfg.attention.window is not None:
        raise UserError("model.encoder.attention.window: not supported by kind gat (a graph's edges restrict it)")
    normalize = lookup(NORMALIZERS, cfg.attention.normalize, "model.encoder.attention.normalize")
    layers = []
    for index in range(cfg.num_layers):
        first, last = index == 0, index == cfg.num_layers - 1
        heads = cfg.output_heads if last else cfg.num_heads
        head_dim = cfg.width if last else cfg.width // cfg.num_heads
        project = nn.Identity()
        if not (first or last):
            project = nn.Linear(cfg.width, cfg.width)
            nn.init.xavier_uniform_(project.weight)
            nn.init.zeros_(project.bias)
        attention = GraphAttention(heads, head_dim, normalize=normalize, dropout=cfg.attention.dropout)
        layers.append(GATLayer(attention, project, nn.Identity() if last else nn.ELU(),
                               merge="mean" if last else "concat",
                               dropout=0.0 if first else cfg.dropout))  # layer 1's input dropout is the Embed's
    return GATEncoder(layers)
