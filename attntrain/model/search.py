"""Batched greedy and beam search over any `Stepper` (cached or recomputing decoder).

# N sentences, K beams, R rows fed to the decoder (alive sentences x beams), V target vocabulary

All sentences of a batch (and all beams of each) decode together as rows of one tensor; a sentence
that is done leaves the batch, so the rows shrink as decoding goes. The search only asks the stepper
for next-token log-probs of every row and tells it which rows to keep, in which order; whether the
stepper keeps a key/value cache or recomputes the whole prefix is invisible here, so both give the
same tokens (tested).
"""

from __future__ import annotations

from typing import Optional, Protocol

import torch


class Stepper(Protocol):
    device: torch.device
    output_ids: torch.Tensor  # (V,) the token id of each log-prob column

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (R,t): <s> + the prefix of every row (token ids) -> (R,V) scores of the next token.

        Their argmax is the log-probs' argmax: greedy search needs no softmax over the vocabulary.
        """

    def logprobs(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (R,t) -> (R,V) log-probs of the next token: logits(tokens).log_softmax(-1)."""

    def expand(self, beams: int) -> None:
        """Every row becomes `beams` consecutive rows (the beams of one sentence)."""

    def select(self, rows: torch.Tensor) -> None:
        """Keep these rows (R',) long, in this order, for the next call; the beams of a sentence stay together."""


def _without_eos(ids: list[int], eos: int) -> list[int]:
    return ids[:-1] if ids and ids[-1] == eos else ids


def _ban_eos(logprobs: torch.Tensor, minimums: Optional[torch.Tensor], t: int, eos_column: int) -> torch.Tensor:
    """Rows whose sentence may not end at step t (t + 1 < its minimum length) get -inf for </s>, in place."""
    if minimums is not None:
        early = minimums <= t + 1  # (R,) rows allowed to end
        if not bool(early.all()):
            logprobs[:, eos_column].masked_fill_(~early, float("-inf"))
    return logprobs


def _eos_column(stepper: Stepper, eos: int) -> int:
    return int((stepper.output_ids == eos).nonzero()[0, 0])


@torch.no_grad()
def greedy_search(stepper: Stepper, max_lengths: list[int], *, bos: int, eos: int,
                  min_lengths: Optional[list[int]] = None) -> list[list[int]]:
    """Most probable next token at every step; sentence i stops at </s> or after max_lengths[i] tokens.

    min_lengths: sentence i may not end (emit </s>) before step min_lengths[i]; min = max forces the length.
    """
    device = stepper.device
    N = len(max_lengths)
    limits = torch.tensor(max_lengths, device=device)
    minimums = None if min_lengths is None else torch.tensor(min_lengths, device=device)
    eos_column = _eos_column(stepper, eos) if min_lengths is not None else -1
    alive = torch.arange(N, device=device)  # sentence of each row
    tokens = torch.full((N, 1), bos, dtype=torch.long, device=device)  # (R,t)
    results: list[list[int]] = [[] for _ in range(N)]
    for t in range(max(max_lengths, default=0)):
        scores = stepper.logits(tokens)  # (R,V); same argmax as the log-probs
        if minimums is not None:
            _ban_eos(scores, minimums[alive], t, eos_column)
        best = stepper.output_ids[scores.argmax(-1)]  # (R,) token ids
        tokens = torch.cat([tokens, best[:, None]], dim=1)  # (R,t+1)
        done = (best == eos) | (limits[alive] <= t + 1)
        if not bool(done.any()):
            continue
        for row in done.nonzero().flatten().tolist():
            results[int(alive[row])] = _without_eos(tokens[row, 1:].tolist(), eos)
        keep = (~done).nonzero().flatten()
        if keep.numel() == 0:
            break
        alive, tokens = alive[keep], tokens[keep]
        stepper.select(keep)
    return results


@torch.no_grad()
def beam_search(stepper: Stepper, max_lengths: list[int], *, bos: int, eos: int, beam: int,
                length_penalty: float = 1.0, min_lengths: Optional[list[int]] = None) -> list[list[int]]:
    """Beam search with `beam` hypotheses per sentence, all sentences in one batch.

    Each step scores every (beam, next token) pair and keeps the 2K best: a </s> among the K best
    finishes a hypothesis (ranked by log-prob / length ** length_penalty, length counting </s>),
    the K best that do not end go on. A sentence is done once it has K finished hypotheses; at its
    length limit </s> is forced, and before min_lengths[i] steps (when given) it is banned, so
    min = max forces every hypothesis to max - 1 tokens + </s>. Returns the best finished hypothesis of
    each sentence.
    """
    device, K = stepper.device, beam
    N = len(max_lengths)
    limits = torch.tensor(max_lengths, device=device)
    stepper.expand(K)  # N rows -> N*K rows
    alive = torch.arange(N, device=device)  # sentence of each group of K rows (n,)
    tokens = torch.full((N * K, 1), bos, dtype=torch.long, device=device)  # (n*K,t)
    scores = torch.zeros(N, K, device=device)  # (n,K) summed log-probs
    scores[:, 1:] = float("-inf")  # at the start only beam 0 is live: K copies of <s> would fill the beam with ties
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(N)]
    eos_column = _eos_column(stepper, eos)
    minimums = None if min_lengths is None else torch.tensor(min_lengths, device=device)
    counts = torch.zeros(N, dtype=torch.long, device=device)
    for t in range(max(max_lengths, default=0)):
        n = alive.numel()
        logprobs = stepper.logprobs(tokens)  # (n*K,V)
        V = logprobs.shape[-1]
        if minimums is not None:
            _ban_eos(logprobs, minimums[alive].repeat_interleave(K), t, eos_column)
        at_limit = limits[alive] <= t + 1  # (n,)
        if bool(at_limit.any()):  # the last allowed token is </s>
            rows = at_limit.repeat_interleave(K)
            eos_logprobs = logprobs[rows, eos_column]
            logprobs[rows] = float("-inf")
            logprobs[rows, eos_column] = eos_logprobs
        candidates = (scores.unsqueeze(2) + logprobs.view(n, K, V)).view(n, K * V)  # (n,K*V)
        top_scores, top_index = candidates.topk(2 * K, dim=1)  # (n,2K), best first
        parent, word = top_index // V, stepper.output_ids[top_index % V]  # (n,2K) beam, token id
        is_eos = word == eos
        ends = is_eos[:, :K] & torch.isfinite(top_scores[:, :K])  # (n,K)
        for i, k in ends.nonzero().tolist():
            ids = tokens[i * K + int(parent[i, k]), 1:].tolist()
            sentence = int(alive[i])
            finished[sentence].append((float(top_scores[i, k]) / (len(ids) + 1) ** length_penalty, ids))
            counts[sentence] += 1
        done = at_limit | (counts[alive] >= K)  # (n,)
        keep = (~done).nonzero().flatten()
        if keep.numel() == 0:
            break
        go_scores, pick = top_scores.masked_fill(is_eos, float("-inf")).topk(K, dim=1)  # (n,K) best non-</s>
        go_parent, go_word = parent.gather(1, pick), word.gather(1, pick)
        rows = (keep[:, None] * K + go_parent[keep]).flatten()  # (n'*K,) rows of the parents
        tokens = torch.cat([tokens[rows], go_word[keep].reshape(-1, 1)], dim=1)
        scores, alive = go_scores[keep], alive[keep]
        stepper.select(rows)
    return [max(hyps, key=lambda h: h[0])[1] if hyps else [] for hyps in finished]
