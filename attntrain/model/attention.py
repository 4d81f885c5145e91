"""Multi-head self-attention with configurable scoring and normalisation.

# B batch, T query positions, S key positions, D model width, H heads, E head width (D / H)

Scoring turns a query and a key into a relevance alpha; normalisation turns a row of alphas into
weights over the keys (both in attntrain/model/scores.py). dot + softmax runs through `F.scaled_dot_product_attention` (fast kernel);
every other combination, and `reference=True`, runs the explicit path `normalize(score(Q, K)) V`.

Local attention (a window) on long inputs is kept as a `LocalMask` and computed block by block
(`local_attention`), so no (T,T) tensor is made; the dense band mask stays as its reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from attntrain.model.scores import ADDITIVE_CHUNK_MB, NORMALIZERS, SCORES, DotScore, Softmax


def window_mask(T: int, window: int, device=None) -> torch.Tensor:
    """(T,T) bool: position i may attend to j when |i - j| <= window (local attention)."""
    index = torch.arange(T, device=device)
    return (index[None, :] - index[:, None]).abs() <= window


RUN_KEYS = 1024  # tile keys per run of blockwise local attention (see `Tiles.chunks`)


# Query block size b of blockwise local attention. A tile holds b + 2w keys where each query needs 2w + 1,
# so a small b wastes least; 64 queries still keep SDPA's CPU kernel busy (window 128, T = 8192: fwd + bwd
# 510 ms per layer with b = 64, 580 with 128, 610 with 256, 880 with 512).
LOCAL_BLOCK = 64


@dataclass
class LocalMask:
    """Key padding and |i - j| <= window in factored form: what `local_attention` reads instead of a (T,T) mask.

    keep (B,T) bool, True = a real key; `dense()` is the equivalent (B,1,T,T) bool mask (the reference).
    """

    keep: torch.Tensor
    window: int

    def dense(self) -> torch.Tensor:
        T = self.keep.shape[1]
        return self.keep[:, None, None, :] & window_mask(T, self.window, self.keep.device)[None, None]  # (B,1,T,T)


def dense_mask(mask: Union[torch.Tensor, LocalMask, None]) -> Optional[torch.Tensor]:
    """Any mask `attention_mask` returns, as a bool tensor broadcastable to (B,H,T,S) (or None)."""
    return mask.dense() if isinstance(mask, LocalMask) else mask


class Tiles:
    """q, k, v (B,H,T,E) laid out for blockwise local attention with window w and query blocks of b.

    Queries are cut into n blocks per entry; block [s, s + b) sees only the L = b + 2w keys [s - w, s + b + w).
    All batch entries are laid end to end as one sequence (queries, keys and values (B*n*b,H,E)), so the
    keys of m consecutive tiles are one slice of m*b + 2w rows and a tile is an `unfold` view, never a
    copy. A tile at a sequence edge reads the neighbouring entry's keys, or zeros past either end of the
    whole sequence (only those two runs are padded copies); `real` (B*n,L), False there and at padding,
    masks them.
    """

    def __init__(self, shape: torch.Size, keep: torch.Tensor, window: int):
        B, H, T, E = shape
        self.shape, self.window, self.block = shape, window, LOCAL_BLOCK
        b, w = self.block, window
        self.count = -(-T // b)  # n blocks per entry
        self.tail = self.count * b - T  # the last block is padded to b queries; those rows are dropped at the end
        L = b + 2 * w
        self.real = F.pad(keep, (w, self.tail + w)).unfold(1, L, b).reshape(B * self.count, L)  # (B,T) -> (B*n,L)
        offset = torch.arange(L, device=keep.device)[None, :] - torch.arange(b, device=keep.device)[:, None]  # j-i+w
        self.band = (offset >= 0) & (offset <= 2 * w)  # (b,L)
        self.queries = self.keys = self.values = None

    def load(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> "Tiles":
        """Lay q, k, v (B,H,T,E) end to end: (B*n*b,H,E) each."""
        self.queries, self.keys, self.values = (self.end_to_end(x) for x in (q, k, v))
        return self

    def end_to_end(self, x: torch.Tensor) -> torch.Tensor:
        """(B,H,T,E) -> (B*n*b,H,E), zeros in the block padding (one copy)."""
        B, H, T, E = self.shape
        out = x.new_zeros(B * self.count * self.block, H, E)
        self.per_entry(out).copy_(x)
        return out

    def per_entry(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of `end_to_end`: (B*n*b,H,E) -> (B,H,T,E), a view."""
        B, H, T, E = self.shape
        return x.view(B, self.count * self.block, H, E)[:, :T].transpose(1, 2)  # (B,T,H,E) -> (B,H,T,E)

    def chunks(self) -> list[tuple[int, int]]:
        """Runs [m0, m1) of consecutive tiles, the unit of work and of transient memory: SDPA's backward
        makes a gradient per tile, (b + 2w) / b times the run's own keys, so a run holds at most RUN_KEYS
        tile keys. A run holds only tiles whose keys are all real or only tiles that miss some, so the
        many inner tiles share the band mask and only edge and padding tiles carry their own."""
        inner = self.real.all(dim=1).tolist()  # (B*n,)
        step = max(1, RUN_KEYS // self.band.shape[1])
        runs, start = [], 0
        for m in range(1, len(inner) + 1):
            if m == len(inner) or inner[m] != inner[start] or m - start == step:
                runs.append((start, m))
                start = m
        return runs

    def rows(self, m0: int, m1: int) -> tuple[slice, slice]:
        """Query rows and key rows of tiles m0..m1: keys [m0*b - w, m1*b + w), cut at both ends of the sequence."""
        b, w = self.block, self.window
        return slice(m0 * b, m1 * b), slice(max(m0 * b - w, 0), min(m1 * b + w, len(self.real) * b))

    def attend(self, queries, keys, values, m0: int, m1: int, dropout_p: float) -> torch.Tensor:
        """Tiles m0..m1: queries (m*b,H,E), keys/values (`rows`) -> (m,H,b,E).

        The shared (b,L) band is the whole mask when every key of the run is real (SDPA broadcasts it);
        otherwise each tile gets its own mask, which SDPA turns into float, 4 L bytes per query.
        """
        b, L, H, E = self.block, self.band.shape[1], self.shape[1], self.shape[3]
        real = self.real[m0:m1]
        queries = queries.view(m1 - m0, b, H, E).transpose(1, 2)  # (m,H,b,E)
        before, after = self.window - m0 * b, m1 * b + self.window - len(self.real) * b
        if before > 0 or after > 0:  # a run at an end of the whole sequence: zeros stand for the missing keys
            keys, values = (F.pad(x, (0, 0, 0, 0, max(before, 0), max(after, 0))) for x in (keys, values))
        keys, values = (x.unfold(0, L, b).permute(0, 1, 3, 2) for x in (keys, values))  # (m,H,E,L) -> (m,H,L,E)
        mask = self.band if bool(real.all()) else (self.band & real[:, None, :])[:, None]  # (b,L) or (m,1,b,L)
        return F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask, dropout_p=dropout_p)


def _rng_state(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


class LocalAttention(torch.autograd.Function):
    """Blockwise local attention that saves only q, k, v (full attention's SDPA also keeps its output)
    and recomputes the tiles in backward one run at a time, so what it adds to q, k, v is one run of
    tiles (RUN_KEYS tile keys), whatever T; the price is one more forward pass over the tiles. With
    dropout the random state is saved and replayed, so backward draws the same masks.
    """

    @staticmethod
    def forward(ctx, q, k, v, keep: torch.Tensor, window: int, dropout_p: float):
        tiles = Tiles(q.shape, keep, window).load(q, k, v)
        # The laid-out copies, not q, k, v: backward then builds nothing, and q, k, v are freed now.
        ctx.save_for_backward(tiles.queries, tiles.keys, tiles.values, keep)
        ctx.shape, ctx.window, ctx.dropout_p = q.shape, window, dropout_p
        ctx.rng = _rng_state(q.device) if dropout_p > 0 else None
        mixed = torch.empty_like(tiles.queries)  # (B*n*b,H,E)
        for m0, m1 in tiles.chunks():
            query_rows, key_rows = tiles.rows(m0, m1)
            out = tiles.attend(tiles.queries[query_rows], tiles.keys[key_rows], tiles.values[key_rows], m0, m1,
                               dropout_p)  # (m,H,b,E)
            mixed[query_rows].view(m1 - m0, tiles.block, *mixed.shape[1:]).copy_(out.transpose(1, 2))  # (m,b,H,E)
        return tiles.per_entry(mixed)  # (B,H,T,E)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        queries, keys, values, keep = ctx.saved_tensors
        tiles = Tiles(ctx.shape, keep, ctx.window)
        tiles.queries, tiles.keys, tiles.values = queries, keys, values
        grad = tiles.end_to_end(grad)  # (B,H,T,E) -> (B*n*b,H,E)
        grads = [torch.zeros_like(queries), torch.zeros_like(keys), torch.zeros_like(values)]
        device = queries.device
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=ctx.rng is not None):
            if ctx.rng is not None and devices:
                torch.cuda.set_rng_state(ctx.rng, device)
            elif ctx.rng is not None:
                torch.set_rng_state(ctx.rng)
            for m0, m1 in tiles.chunks():
                query_rows, key_rows = tiles.rows(m0, m1)
                # Leaves per run: a gradient through a slice of the whole sequence would allocate all of it per run.
                parts = [tiles.queries[query_rows], tiles.keys[key_rows], tiles.values[key_rows]]
                parts = [part.detach().requires_grad_() for part in parts]
                with torch.enable_grad():
                    mixed = tiles.attend(*parts, m0, m1, ctx.dropout_p)  # (m,H,b,E)
                H, E = mixed.shape[1], mixed.shape[3]
                upstream = grad[query_rows].view(m1 - m0, tiles.block, H, E).transpose(1, 2)  # (m*b,H,E) -> (m,H,b,E)
                found = torch.autograd.grad(mixed, parts, upstream)
                for total, part, index in zip(grads, found, (query_rows, key_rows, key_rows)):
                    total[index] += part  # runs overlap by 2w key rows
        grad_q, grad_k, grad_v = (tiles.per_entry(g) for g in grads)
        return grad_q, grad_k, grad_v, None, None, None


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, local: LocalMask, *,
                    dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(QK^T / sqrt(E)) V restricted to |i - j| <= window and real keys, in O(T (b + 2w)) time.

    q, k, v (B,H,T,E) -> (B,H,T,E); see `Tiles` for the layout and `LocalAttention` for the memory.
    Inside each (b, L) tile the exact band and key padding form the mask. A query with no allowed key
    gets zeros, as in the dense path.
    """
    return LocalAttention.apply(q, k, v, local.keep, local.window, dropout_p)


def attention_mask(mask: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                   window: Optional[int] = None, *,
                   blockwise: bool = True) -> Union[torch.Tensor, LocalMask, None]:
    """Key padding (B,S), an optional window and an extra (B,T,S) mask as one bool (B,1,1|T,S) mask,
    or None when everything may be attended to (SDPA's fastest path).

    A window over a long input (T >= 2w and T >= 2b: the window leaves out pairs, and there are
    tiles to share the work) with no extra mask comes back as a `LocalMask` instead, which attention
    computes blockwise; `blockwise=False` always builds the dense mask.
    """
    T = mask.shape[1]
    if (blockwise and window is not None and attn_mask is None
            and T >= 2 * max(window, LOCAL_BLOCK)):
        return LocalMask(mask, window)
    full = None if bool(mask.all()) else mask[:, None, None, :]  # (B,S) -> (B,1,1,S)
    extra = []
    if window is not None and window < mask.shape[1]:
        extra.append(window_mask(mask.shape[1], window, mask.device)[None, None])  # (1,1,T,T)
    if attn_mask is not None:
        extra.append(attn_mask[:, None])  # (B,T,S) -> (B,1,T,S)
    for m in extra:
        full = m if full is None else full & m
    return full


class MultiHeadAttention(nn.Module):
    """Multi-head attention: project to Q, K, V, attend per head, merge heads, project out.

    forward(x (B,T,D), mask (B,1|H,1|T,T) bool, True = may attend, or a LocalMask, memory (B,S,D) or None)
    -> (B,T,D). With `memory`, keys and values come from it (cross-attention); `causal` lets position
    i attend only to positions <= i (decoder self-attention).

    A `LocalMask` is attended blockwise only by dot + softmax self-attention (rotary positions
    included: they rotate q and k before `attend`). Additive scoring, ReLU normalisation, `fast=False`,
    `reference=True` and `causal` fall back to its dense (B,1,T,T) mask.
    """

    def __init__(
        self,
        width: int,
        num_heads: int,
        *,
        score: nn.Module,
        normalize,
        dropout: float = 0.0,
        rotary: Optional[nn.Module] = None,
        fast: bool = True,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = width // num_heads
        self.query = nn.Linear(width, width)
        self.key_value = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        self.score = score
        self.normalize = normalize
        self.dropout = dropout
        self.rotary = rotary
        # SDPA computes exactly softmax(QK^T / sqrt(E)) V, so it may only stand in for dot + softmax.
        self.fast = fast and isinstance(score, DotScore) and isinstance(normalize, Softmax)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B,T,D) -> (B,H,T,E)

    @staticmethod
    def merge_heads(x: torch.Tensor) -> torch.Tensor:
        B, H, T, E = x.shape
        return x.transpose(1, 2).reshape(B, T, H * E)  # (B,H,T,E) -> (B,T,D)

    def forward(
        self,
        x: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        memory: Optional[torch.Tensor] = None,
        edges: Optional[torch.Tensor] = None,
        causal: bool = False,
    ) -> torch.Tensor:
        if edges is not None:
            return self.out(self.attend_edges(x, edges))
        q, k, v = self.project(x, memory)
        if self.rotary is not None and memory is None:
            q, k = self.rotary(q), self.rotary(k)
        mixed = self.attend(q, k, v, mask, causal=causal)  # (B,H,T,E)
        return self.out(self.merge_heads(mixed))

    def project(self, x: torch.Tensor, memory: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, ...]:
        """q (B,H,T,E) from x (B,T,D); k, v (B,H,S,E) from memory (B,S,D), or from x when it is None.

        Self-attention runs the three projections as one matmul over the stacked weights [W_q; W_kv]
        (one pass over x, and backward adds no gradient of x from two branches); the stacking copies
        3 D^2 weights, against 3 B T D outputs. The parameters stay two Linears, so saved runs load.
        """
        if memory is not None:
            k, v = (self.split_heads(t) for t in self.key_value(memory).chunk(2, dim=-1))
            return self.split_heads(self.query(x)), k, v
        weight = torch.cat((self.query.weight, self.key_value.weight))  # (3D,D)
        bias = torch.cat((self.query.bias, self.key_value.bias))  # (3D,)
        return tuple(self.split_heads(t) for t in F.linear(x, weight, bias).chunk(3, dim=-1))  # (B,T,3D) -> 3 x (B,H,T,E)

    def attend_edges(self, x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """Attention along the edges of one graph: memory O(edges), not O(nodes^2).

        x (1,N,D) node vectors; edges (2,N_edges) long, row 0 = source j, row 1 = target i (i attends to j).
        Returns (1,N,D) before the output projection.
        """
        _, N, D = x.shape
        source, target = edges
        q = self.query(x[0]).view(N, self.num_heads, self.head_dim)  # (N,D) -> (N,H,E)
        k, v = (t.reshape(N, self.num_heads, self.head_dim) for t in self.key_value(x[0]).chunk(2, dim=-1))
        weights = self.normalize.edges(self.score.pairs(q[target], k[source]), target, N)  # (N_edges,H)
        weights = F.dropout(weights, p=self.dropout, training=self.training)
        mixed = torch.zeros_like(q).index_add_(0, target, weights[..., None] * v[source])  # (N,H,E)
        return mixed.view(1, N, D)

    def attend(self, q, k, v, mask: Union[torch.Tensor, LocalMask, None], reference: bool = False,
               causal: bool = False) -> torch.Tensor:
        """q (B,H,T,E), k/v (B,H,S,E), mask bool broadcastable to (B,H,T,S) or a LocalMask -> (B,H,T,E).

        `causal`: query i also sees only keys j <= i (T == S; a decoder's masked self-attention).
        """
        p = self.dropout if self.training else 0.0
        if isinstance(mask, LocalMask):
            if self.fast and not reference and not causal:
                return local_attention(q, k, v, mask, dropout_p=p)
            mask = mask.dense()
        if causal and mask is None and self.fast and not reference:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # flash kernel, no mask tensor
        if causal:
            T, S = q.shape[-2], k.shape[-2]
            lower = torch.ones(T, S, dtype=torch.bool, device=q.device).tril()  # (T,S)
            mask = lower if mask is None else mask & lower
        if self.fast and not reference:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        weights = self.normalize.dense(self.score(q, k), mask)  # (B,H,T,S)
        weights = F.dropout(weights, p=p, training=self.training)
        return torch.matmul(weights, v)

    def weights(self, x: torch.Tensor, mask: Union[torch.Tensor, LocalMask, None] = None) -> torch.Tensor:
        """The attention matrix alpha' (B,H,T,T) for inspection and plots (explicit path)."""
        q, k, _ = self.project(x)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        return self.normalize.dense(self.score(q, k), dense_mask(mask))


def build_attention(width: int, num_heads: int, *, score: str, normalize: str, dropout: float,
                    rotary: Optional[nn.Module] = None,
                    additive_chunk_mb: float = ADDITIVE_CHUNK_MB) -> MultiHeadAttention:
    from attntrain.registry import lookup

    head_dim = width // num_heads
    options = {"chunk_mb": additive_chunk_mb} if score == "additive" else {}
    return MultiHeadAttention(
        width,
        num_heads,
        score=lookup(SCORES, score, "model.encoder.attention.score")(head_dim, num_heads, **options),
        normalize=lookup(NORMALIZERS, normalize, "model.encoder.attention.normalize"),
        dropout=dropout,
        rotary=rotary,
    )
