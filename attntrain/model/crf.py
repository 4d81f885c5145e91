"""Linear-chain CRF and Viterbi decoding over per-position tag scores.

# B batch, T time, L number of tags

`viterbi` also serves constrained decoding without a CRF: with log-probabilities as emissions and
0 / -inf transition scores it returns the most probable tag sequence among the valid ones. The CRF's
log-likelihood uses the forward algorithm; tests check both against brute-force enumeration.
Sequences are right-padded: `mask` (B,T) is True on a prefix of each row, and every row has length >= 1.
"""

from __future__ import annotations

import torch
from torch import nn

FORBIDDEN = -1.0e4  # score of a transition that breaks the tag scheme (finite, so gradients stay finite)


def penalty(allowed: torch.Tensor) -> torch.Tensor:
    """bool table -> 0 where allowed, FORBIDDEN where not."""
    return torch.where(allowed, 0.0, FORBIDDEN)


def viterbi(emissions: torch.Tensor, mask: torch.Tensor, transitions: torch.Tensor, start: torch.Tensor,
            end: torch.Tensor) -> torch.Tensor:
    """Best tag ids (B,T) (padding positions hold 0) under emissions (B,T,L) + transition scores (L,L)."""
    B, T, L = emissions.shape
    score = start + emissions[:, 0]  # (B,L)
    back = []
    for t in range(1, T):
        total = score[:, :, None] + transitions[None]  # (B,L prev,L next)
        best, arg = total.max(1)  # (B,L)
        new = best + emissions[:, t]
        keep = mask[:, t, None]
        score = torch.where(keep, new, score)
        back.append(torch.where(keep, arg, torch.arange(L, device=arg.device).expand(B, L)))  # padding: stay
    last = (score + end).argmax(-1)  # (B,)
    path = [last]
    for arg in reversed(back):
        last = arg.gather(1, last[:, None]).squeeze(1)
        path.append(last)
    ids = torch.stack(path[::-1], dim=1)  # (B,T)
    return ids.masked_fill(~mask, 0)


class LinearChainCRF(nn.Module):
    """Learned transition, start and end scores; `allowed` tables (from the tag scheme) fix invalid moves to -1e4."""

    def __init__(self, num_tags: int, start_allowed: torch.Tensor, allowed: torch.Tensor, end_allowed: torch.Tensor):
        super().__init__()
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        self.register_buffer("transition_penalty", penalty(allowed), persistent=False)
        self.register_buffer("start_penalty", penalty(start_allowed), persistent=False)
        self.register_buffer("end_penalty", penalty(end_allowed), persistent=False)

    def scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (self.transitions + self.transition_penalty, self.start + self.start_penalty,
                self.end + self.end_penalty)

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z (B,) by the forward algorithm."""
        transitions, start, end = self.scores()
        alpha = start + emissions[:, 0]  # (B,L)
        for t in range(1, emissions.shape[1]):
            new = torch.logsumexp(alpha[:, :, None] + transitions[None], dim=1) + emissions[:, t]  # (B,L)
            alpha = torch.where(mask[:, t, None], new, alpha)
        return torch.logsumexp(alpha + end, dim=-1)

    def path_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Score (B,) of the given tag sequences (tags at padding positions are ignored)."""
        transitions, start, end = self.scores()
        tags = tags.masked_fill(~mask, 0)
        emitted = emissions.gather(2, tags[..., None]).squeeze(-1)  # (B,T)
        moves = transitions[tags[:, :-1], tags[:, 1:]]  # (B,T-1)
        lengths = mask.sum(1)  # (B,)
        last = tags.gather(1, (lengths - 1)[:, None]).squeeze(1)
        return (start[tags[:, 0]] + (emitted * mask).sum(1) + (moves * mask[:, 1:]).sum(1) + end[last])

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood summed over the batch's sequences."""
        emissions = emissions.float()
        return (self.log_partition(emissions, mask) - self.path_score(emissions, tags, mask)).sum()

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return viterbi(emissions.float(), mask, *self.scores())
