"""How attention scores and normalises (attntrain/model/attention.py uses them): a query and a key -> a
relevance alpha (dot, or additive in chunks of queries so its hidden stays within a memory budget), a row of
alphas -> weights over the keys (softmax, relu), dense or along graph edges.

# B batch, T query positions, S key positions, H heads, E head width
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from attntrain.model.trace import exporting


class DotScore(nn.Module):
    """alpha = q . k / sqrt(E)."""

    def __init__(self, head_dim: int, num_heads: int):
        super().__init__()
        self.scale = 1.0 / math.sqrt(head_dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        # q (B,H,T,E), k (B,H,S,E) -> (B,H,T,S)
        return torch.matmul(q, k.transpose(-1, -2)) * self.scale

    def pairs(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Scores of matched rows: q, k (N_edges,H,E) -> (N_edges,H)."""
        return (q * k).sum(-1) * self.scale


ADDITIVE_CHUNK_MB = 256.0  # default of model.encoder.attention.additive_chunk_mb


class AdditiveScore(nn.Module):
    """alpha = w . tanh(q + k) per head (Bahdanau scoring; W_q, W_k are the Q/K projections).

    The hidden tanh(q + k) is (B,H,T,S,E), E times the (B,H,T,S) of dot scoring. While it fits in
    `chunk_mb` megabytes it is made whole (autograd keeps it for backward); beyond that the queries
    are scored in chunks whose hidden fits the budget, and backward recomputes each chunk
    (`ChunkedAdditive`), so memory stays bounded at the cost of one more tanh pass.
    """

    def __init__(self, head_dim: int, num_heads: int, *, chunk_mb: float = ADDITIVE_CHUNK_MB):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_heads, head_dim) / math.sqrt(head_dim))
        self.chunk_mb = chunk_mb

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        # q (B,H,T,E), k (B,H,S,E) -> (B,H,T,S)
        B, H, T, E = q.shape
        rows = chunk_rows(B * H * k.shape[2] * E * q.element_size(), self.chunk_mb)
        # A trace (export) records Python control flow once: it keeps the whole hidden, valid for every length.
        if rows >= T or exporting():
            return additive_scores(q, k, self.weight)
        return ChunkedAdditive.apply(q, k, self.weight, rows)

    def pairs(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Scores of matched rows: q, k (N_edges,H,E) -> (N_edges,H)."""
        return torch.einsum("nhe,he->nh", torch.tanh(q + k), self.weight)


def chunk_rows(bytes_per_row: int, budget_mb: float) -> int:
    """How many query rows of bytes_per_row each fit in budget_mb megabytes (at least one)."""
    return max(1, int(budget_mb * 2**20) // bytes_per_row)


def additive_scores(q: torch.Tensor, k: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """w . tanh(q + k): q (B,H,t,E), k (B,H,S,E), weight (H,E) -> (B,H,t,S), all of the hidden at once."""
    # tanh in place on the fresh sum: one (B,H,t,S,E) tensor, not two (same values).
    hidden = (q.unsqueeze(-2) + k.unsqueeze(-3)).tanh_()  # (B,H,t,1,E)+(B,H,1,S,E) -> (B,H,t,S,E)
    B, H, t, S, E = hidden.shape
    # A matmul over the contiguous (B,H,t*S,E) view, not einsum: einsum's backward handed tanh a permuted
    # gradient (a slow strided pass); the forward and the q, k gradients are bitwise the same.
    # reshape: a view when the sum came out contiguous, as it does unless q or k is an odd strided view
    return (hidden.reshape(B, H, t * S, E) @ weight[:, :, None]).view(B, H, t, S)  # (H,E,1) per head


class ChunkedAdditive(torch.autograd.Function):
    """`additive_scores` over chunks of `rows` queries; saves only q, k, w and recomputes each chunk's
    hidden u = tanh(q + k) in backward, where, with g the incoming gradient of the chunk's scores,
        dw = sum_{b,t,s} g u,   d = g w (1 - u^2),   dq = sum_s d,   dk = sum_t d.
    Peak memory: one chunk's (B,H,rows,S,E) hidden and one temporary of its size."""

    @staticmethod
    def forward(ctx, q, k, weight, rows: int):
        ctx.save_for_backward(q, k, weight)
        ctx.rows = rows
        B, H, T, _ = q.shape
        scores = q.new_empty(B, H, T, k.shape[2])
        for start in range(0, T, rows):
            scores[:, :, start:start + rows] = additive_scores(q[:, :, start:start + rows], k, weight)
        return scores

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        q, k, weight = ctx.saved_tensors
        grad_q, grad_k, grad_weight = torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(weight)
        for start in range(0, q.shape[2], ctx.rows):
            chunk = slice(start, start + ctx.rows)
            hidden = (q[:, :, chunk].unsqueeze(-2) + k.unsqueeze(-3)).tanh_()  # (B,H,t,S,E)
            B, H, t, S, E = hidden.shape
            g = grad[:, :, chunk]  # (B,H,t,S)
            grad_weight += (g.reshape(B, H, 1, t * S) @ hidden.reshape(B, H, t * S, E)).sum(dim=0)[:, 0]  # (B,H,1,E) -> (H,E)
            d = hidden.mul_(hidden).neg_().add_(1).mul_(g.unsqueeze(-1)).mul_(weight[:, None, None, :])  # g w (1 - u^2)
            grad_q[:, :, chunk] = d.sum(dim=3)
            grad_k += d.sum(dim=2)
        return grad_q, grad_k, grad_weight, None


class Softmax:
    """Softmax over the allowed keys; masked keys get weight 0."""

    def dense(self, scores: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        # A row with no allowed key (never produced by our masks, but cheap to guard) becomes all zeros.
        return torch.nan_to_num(scores.softmax(dim=-1), nan=0.0)

    def edges(self, scores: torch.Tensor, target: torch.Tensor, num_nodes: int) -> torch.Tensor:
        """Softmax over each target node's incoming edges: scores (N_edges,H) -> weights (N_edges,H)."""
        index = target[:, None].expand_as(scores)
        peak = scores.new_full((num_nodes, scores.shape[1]), float("-inf"))
        peak = peak.scatter_reduce(0, index, scores, reduce="amax", include_self=True)
        exp = (scores - peak[target]).exp()
        total = scores.new_zeros(num_nodes, scores.shape[1]).index_add_(0, target, exp)
        return exp / total[target]


class ReluNorm:
    """ReLU instead of softmax, divided by the number of allowed keys so the scale does not grow with S.

    Weights are non-negative but do not sum to one; a row may be all zero.
    """

    def dense(self, scores: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        weights = F.relu(scores)
        if mask is None:
            return weights / scores.shape[-1]
        weights = weights.masked_fill(~mask, 0.0)
        count = mask.sum(dim=-1, keepdim=True).clamp(min=1).to(weights.dtype)
        return weights / count

    def edges(self, scores: torch.Tensor, target: torch.Tensor, num_nodes: int) -> torch.Tensor:
        degree = torch.bincount(target, minlength=num_nodes).clamp(min=1).to(scores.dtype)
        return F.relu(scores) / degree[target][:, None]


SCORES: dict[str, type[nn.Module]] = {"dot": DotScore, "additive": AdditiveScore}
NORMALIZERS: dict[str, object] = {"softmax": Softmax(), "relu": ReluNorm()}
