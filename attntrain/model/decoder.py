"""Transformer decoder: masked (causal) self-attention + cross-attention to the encoder + feed-forward.

# B batch, R decoding rows (sentences x beams), T target time, S source time, D model width,
# H heads, E head width (D / H)

Two ways through the same weights:
  forward(x, memory, memory_mask)   the whole target at once, causal mask (training, and the
                                    uncached decoding reference that recomputes the prefix)
  start(memory, memory_mask) / step(x, cache)
                                    one new token per step: keys/values of earlier target tokens
                                    are kept in a cache, the encoder memory's keys/values are
                                    projected once, so step t costs one token, not t.
Both use the blocks' `MultiHeadAttention` modules (their projections and `attend`), so the score,
normalisation, heads and positional encoding settings apply to the decoder as to the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from attntrain.model.attention import MultiHeadAttention, attention_mask
from attntrain.model.dropout import Dropout
from attntrain.model.encoder import FeedForward


@dataclass
class LayerCache:
    """One block's cached keys/values.

    Self-attention (R,H,capacity,E): one row per decoding row; the first `DecoderCache.length`
    positions are filled, one more per step, written in place (the buffer doubles when full), so a
    step copies one position, not the whole prefix. Cross-attention (n,H,S,E): one row per sentence,
    projected once; the `group` consecutive rows of a sentence (its beams) read it together as
    `group` queries, so beams never copy the encoder memory.
    """

    self_keys: Optional[torch.Tensor]
    self_values: Optional[torch.Tensor]
    cross_keys: torch.Tensor
    cross_values: torch.Tensor


@dataclass
class DecoderCache:
    layers: list[LayerCache]
    memory_mask: Optional[torch.Tensor]  # (n,1,1,S) bool or None
    length: int = 0  # target tokens already fed
    group: int = 1  # consecutive rows that share a sentence (beams)

    def expand(self, beams: int) -> "DecoderCache":
        """Every row becomes `beams` consecutive rows (the start of beam search)."""
        def repeat(t):
            return None if t is None else t.repeat_interleave(beams, dim=0)

        layers = [LayerCache(repeat(c.self_keys), repeat(c.self_values), c.cross_keys, c.cross_values)
                  for c in self.layers]
        return DecoderCache(layers, self.memory_mask, self.length, self.group * beams)

    def select(self, rows: torch.Tensor) -> "DecoderCache":
        """Keep / reorder rows (beam reordering, dropping finished sentences).

        `rows` must keep sentences together: rows[i * group : (i + 1) * group] come from one sentence.
        """
        sentences = rows[:: self.group] // self.group  # (n',) the sentence of each kept group
        unchanged = sentences.numel() == self.layers[0].cross_keys.shape[0] and bool(
            (sentences == torch.arange(sentences.numel(), device=rows.device)).all())

        def per_sentence(t):
            return t if t is None or unchanged else t.index_select(0, sentences)

        def per_row(t):  # the whole buffer in one copy (its capacity is at most 2 x filled, or 16)
            return None if t is None else t.index_select(0, rows)

        layers = [LayerCache(per_row(c.self_keys), per_row(c.self_values), per_sentence(c.cross_keys),
                             per_sentence(c.cross_values)) for c in self.layers]
        return DecoderCache(layers, per_sentence(self.memory_mask), self.length, self.group)


class DecoderBlock(nn.Module):
    """Pre-norm: x + self_attention(norm(x)) [causal], x + cross_attention(norm(x), memory), x + ffn(norm(x))."""

    def __init__(self, self_attention: MultiHeadAttention, cross_attention: MultiHeadAttention,
                 feed_forward: Optional[FeedForward], width: int, dropout: float):
        super().__init__()
        self.self_norm = nn.LayerNorm(width)
        self.self_attention = self_attention
        self.cross_norm = nn.LayerNorm(width)
        self.cross_attention = cross_attention
        self.ffn_norm = nn.LayerNorm(width) if feed_forward is not None else None
        self.feed_forward = feed_forward
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: Optional[torch.Tensor]) -> torch.Tensor:
        x = x + self.dropout(self.self_attention(self.self_norm(x), causal=True))
        x = x + self.dropout(self.cross_attention(self.cross_norm(x), memory_mask, memory=memory))
        return self._feed_forward(x)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.feed_forward is None:
            return x
        return x + self.dropout(self.feed_forward(self.ffn_norm(x)))

    # ---- incremental path ----------------------------------------------------------------------
    def start(self, memory: torch.Tensor) -> LayerCache:
        """Project the encoder memory (B,S,D) to cross-attention keys/values once."""
        attention = self.cross_attention
        keys, values = (attention.split_heads(t) for t in attention.key_value(memory).chunk(2, dim=-1))
        return LayerCache(None, None, keys, values)

    def step(self, x: torch.Tensor, cache: LayerCache, memory_mask: Optional[torch.Tensor],
             position: int, group: int = 1) -> torch.Tensor:
        """x (R,1,D): the newest token at `position`; appends its key/value to `cache` (in place).

        The `group` consecutive rows of a sentence attend to its memory as `group` queries of one row.
        Inference only: no dropout (the model is in eval mode when it decodes).
        """
        x = x + self._self_attention_step(self.self_norm(x), cache, position)
        attention = self.cross_attention
        R, _, D = x.shape
        queries = attention.query(self.cross_norm(x)).view(R // group, group, D)  # (R,1,D) -> (n,K,D)
        mixed = attention.attend(attention.split_heads(queries), cache.cross_keys, cache.cross_values,
                                 memory_mask)  # (n,H,K,E)
        x = x + attention.out(attention.merge_heads(mixed)).view(R, 1, D)  # (n,K,D) -> (R,1,D)
        return self._feed_forward(x)

    def _self_attention_step(self, x: torch.Tensor, cache: LayerCache, position: int) -> torch.Tensor:
        attention = self.self_attention
        query = attention.split_heads(attention.query(x))  # (R,H,1,E)
        key, value = (attention.split_heads(t) for t in attention.key_value(x).chunk(2, dim=-1))
        if attention.rotary is not None:  # rotated at its own position, as the full pass does
            query, key = attention.rotary(query, offset=position), attention.rotary(key, offset=position)
        if cache.self_keys is None or cache.self_keys.shape[2] == position:  # full: double the capacity
            cache.self_keys, cache.self_values = (_grown(old, key, position) for old in (cache.self_keys,
                                                                                        cache.self_values))
        cache.self_keys[:, :, position] = key[:, :, 0]  # (R,H,E) into (R,H,capacity,E)
        cache.self_values[:, :, position] = value[:, :, 0]
        keys, values = cache.self_keys[:, :, :position + 1], cache.self_values[:, :, :position + 1]  # (R,H,t+1,E)
        # The newest token may see every cached one: no mask, which is what causal means for the last row.
        return attention.out(attention.merge_heads(attention.attend(query, keys, values, None)))


def _grown(old: Optional[torch.Tensor], like: torch.Tensor, filled: int) -> torch.Tensor:
    """A (R,H,capacity,E) buffer with room for twice `filled` positions (16 at first), holding old[:, :, :filled]."""
    R, H, _, E = like.shape
    buffer = like.new_empty(R, H, max(16, 2 * filled), E)
    if old is not None:
        buffer[:, :, :filled] = old[:, :, :filled]
    return buffer


class TransformerDecoder(nn.Module):
    """Positional encoding + N decoder blocks + final norm, on target vectors (B,T,D)."""

    def __init__(self, position: nn.Module, blocks: list[DecoderBlock], width: int, *, dropout: float,
                 max_positions: Optional[int] = None):
        super().__init__()
        self.position = position
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(width)
        self.dropout = Dropout(dropout)
        self.max_positions = max_positions  # learned positions cover only this many target tokens

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """x (B,T,D) target vectors, memory (B,S,D), memory_mask (B,S) bool -> (B,T,D)."""
        mask = attention_mask(memory_mask)
        x = self.dropout(self.position(x))
        for block in self.blocks:
            x = block(x, memory, mask)
        return self.norm(x)

    def start(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> DecoderCache:
        return DecoderCache([block.start(memory) for block in self.blocks], attention_mask(memory_mask))

    def step(self, x: torch.Tensor, cache: DecoderCache) -> torch.Tensor:
        """x (R,1,D) the newest target vector -> (R,1,D); the cache grows by one position. Inference only."""
        position = cache.length
        x = self.position(x, offset=position)
        for block, layer in zip(self.blocks, cache.layers):
            x = block.step(x, layer, cache.memory_mask, position, cache.group)
        cache.length += 1
        return self.norm(x)
