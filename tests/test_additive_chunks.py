"""Additive scoring in query chunks (bounded memory) equals the whole (B,H,T,S,E) computation."""

from __future__ import annotations

import pytest
import torch

from attntrain.config import EncoderConfig
from attntrain.model.scores import AdditiveScore, ChunkedAdditive, additive_scores, chunk_rows
from attntrain.model.encoder import build_transformer


def inputs(B=2, H=3, T=7, S=5, E=4, dtype=torch.float64):
    torch.manual_seed(0)
    q, k = torch.randn(B, H, T, E, dtype=dtype), torch.randn(B, H, S, E, dtype=dtype)
    weight = torch.randn(H, E, dtype=dtype)
    return [t.requires_grad_() for t in (q, k, weight)]


@pytest.mark.parametrize("rows", [1, 3, 7])  # one query per chunk, a ragged last chunk, one chunk
def test_chunked_equals_whole_in_value_and_gradient(rows):
    q, k, weight = inputs()
    grad = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    whole = additive_scores(q, k, weight)
    expected = torch.autograd.grad(whole, (q, k, weight), grad)
    chunked = ChunkedAdditive.apply(q, k, weight, rows)
    found = torch.autograd.grad(chunked, (q, k, weight), grad)
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-12)
    for a, b in zip(found, expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_chunked_backward_passes_gradcheck():
    q, k, weight = inputs(B=1, H=2, T=4, S=3, E=3)
    assert torch.autograd.gradcheck(lambda *t: ChunkedAdditive.apply(*t, 3), (q, k, weight))


def saved_sizes(fn) -> list[int]:
    """Element counts of the tensors autograd keeps for backward while `fn` runs."""
    sizes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
        fn()
    return sizes


def test_budget_decides_between_whole_and_chunked_and_bounds_what_is_kept():
    B, H, T, S, E = 2, 3, 64, 64, 4
    hidden = B * H * T * S * E
    q, k, _ = inputs(B, H, T, S, E, dtype=torch.float32)
    roomy = AdditiveScore(E, H, chunk_mb=hidden * 4 / 2**20)  # the whole hidden fits exactly
    tight = AdditiveScore(E, H, chunk_mb=hidden * 4 / 2**20 / 8)  # an eighth of it: 8 chunks of 8 queries
    tight.weight = roomy.weight
    assert chunk_rows(B * H * S * E * 4, tight.chunk_mb) == 8
    assert max(saved_sizes(lambda: roomy(q, k))) == hidden
    assert max(saved_sizes(lambda: tight(q, k))) < hidden / 8
    torch.testing.assert_close(tight(q, k), roomy(q, k), rtol=1e-5, atol=1e-5)


def test_encoder_with_a_tiny_budget_trains_like_the_whole_hidden():
    """Through the whole encoder (padding, explicit path, ReLU normalisation): outputs and every
    parameter gradient agree when additive scores are chunked one query at a time."""
    results = []
    for budget in (256.0, 1e-6):
        torch.manual_seed(0)
        cfg = EncoderConfig(num_layers=2, width=16, num_heads=2, ffn_dim=32,
                            attention={"score": "additive", "normalize": "relu", "additive_chunk_mb": budget})
        encoder = build_transformer(cfg).double().eval()
        x = torch.randn(2, 6, 16, dtype=torch.float64)
        mask = torch.arange(6)[None, :] < torch.tensor([[6], [4]])
        out = encoder(x, mask)
        out[mask].square().sum().backward()
        results.append((out, {n: p.grad for n, p in encoder.named_parameters()}))
    (whole, whole_grads), (chunked, chunked_grads) = results
    torch.testing.assert_close(chunked, whole, rtol=1e-10, atol=1e-10)
    for name, grad in whole_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-10, atol=1e-10, msg=name)


def test_budget_must_be_positive():
    with pytest.raises(ValueError):
        EncoderConfig(attention={"score": "additive", "additive_chunk_mb": 0})


def test_a_trace_keeps_the_whole_hidden_so_it_serves_every_length():
    """Export traces record Python loops once; under a trace the chunk loop is not taken, so the traced
    scores are right for a length other than the traced one (the same guard as the feed-forward rows)."""
    score = AdditiveScore(4, 3, chunk_mb=1e-6).eval()
    q, k, _ = inputs()
    traced = torch.jit.trace(score, (q.detach().float(), k.detach().float()), check_trace=False)
    longer_q, longer_k = torch.randn(2, 3, 11, 4), torch.randn(2, 3, 9, 4)
    torch.testing.assert_close(traced(longer_q, longer_k), additive_scores(longer_q, longer_k, score.weight))
