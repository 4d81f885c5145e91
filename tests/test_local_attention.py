"""Blockwise local attention == the dense band mask it replaces (outputs and gradients)."""

from __future__ import annotations

import pytest
import torch

from attntrain.config import EncoderConfig
from attntrain.model.attention import (LOCAL_BLOCK, LocalMask, Tiles, attention_mask, build_attention,
                                       local_attention)
from attntrain.model.encoder import build_transformer


def padded_mask(lengths: list[int], T: int) -> torch.Tensor:
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B,T)


def dense_reference(q, k, v, keep: torch.Tensor, window: int) -> torch.Tensor:
    """Explicit softmax(QK^T / sqrt(E)) V with |i - j| <= window and key padding; rows with no key -> 0."""
    T, E = q.shape[-2], q.shape[-1]
    index = torch.arange(T)
    allowed = keep[:, None, None, :] & ((index[None, :] - index[:, None]).abs() <= window)  # (B,1,T,T)
    scores = (q @ k.transpose(-1, -2) / E**0.5).masked_fill(~allowed, float("-inf"))
    return torch.nan_to_num(scores.softmax(-1), nan=0.0) @ v


# (T, window, heads, lengths): T divisible and not by the block, windows below / above a block,
# padding that leaves whole blocks (and whole tiles) without a real key.
CASES = [
    (200, 5, 2, None),
    (130, 3, 1, [130, 77]),
    (257, 40, 4, [257, 1, 100]),
    (300, 64, 2, [299, 10]),
    (384, 64, 3, None),
    (700, 100, 2, [650, 333]),
    (1100, 2, 2, [1100, 700]),  # b = 64: several runs of tiles (backward recomputes run by run)
]


@pytest.mark.parametrize("T,window,heads,lengths", CASES)
def test_blockwise_equals_dense_forward_and_gradients(T, window, heads, lengths):
    torch.manual_seed(T + window)
    B = 1 if lengths is None else len(lengths)
    keep = torch.ones(B, T, dtype=torch.bool) if lengths is None else padded_mask(lengths, T)
    assert T >= 2 * max(window, LOCAL_BLOCK)  # long enough for attention_mask to choose blockwise
    leaves = [torch.randn(B, heads, T, 16, requires_grad=True) for _ in range(3)]
    grad_out = torch.randn(B, heads, T, 16)

    blockwise = local_attention(*leaves, LocalMask(keep, window))
    blockwise_grads = torch.autograd.grad(blockwise, leaves, grad_out)
    dense = dense_reference(*leaves, keep, window)
    dense_grads = torch.autograd.grad(dense, leaves, grad_out)

    torch.testing.assert_close(blockwise, dense, rtol=1e-4, atol=1e-5)
    for got, want in zip(blockwise_grads, dense_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # Not vacuous: the window matters (attention over all real keys differs).
    assert not torch.allclose(blockwise, dense_reference(*leaves, keep, T), atol=1e-3)
    assert all(torch.isfinite(g).all() for g in blockwise_grads)


def test_mask_is_local_only_for_long_inputs_and_dense_equals_band():
    keep = padded_mask([300, 120], 300)
    local = attention_mask(keep, window=8)
    assert isinstance(local, LocalMask)
    # The LocalMask's dense form is what the dense path builds.
    torch.testing.assert_close(local.dense(), attention_mask(keep, window=8, blockwise=False))
    short = attention_mask(keep[:, :20], window=8)  # shorter than two tiles
    assert isinstance(short, torch.Tensor) and short.shape[-2:] == (20, 20)
    # An extra mask (graphs) keeps the dense path.
    extra = torch.ones(2, 300, 300, dtype=torch.bool)
    assert isinstance(attention_mask(keep, extra, window=8), torch.Tensor)


@pytest.mark.parametrize("score,normalize", [("dot", "softmax"), ("additive", "softmax"), ("dot", "relu")])
def test_attend_with_local_mask_equals_dense_for_every_scoring(score, normalize):
    """dot + softmax runs blockwise; the others fall back to the dense mask; all equal the reference."""
    torch.manual_seed(0)
    attention = build_attention(32, 2, score=score, normalize=normalize, dropout=0.0).eval()
    q, k, v = (torch.randn(2, 2, 150, 16) for _ in range(3))
    local = LocalMask(padded_mask([150, 90], 150), 6)
    got = attention.attend(q, k, v, local)
    want = attention.attend(q, k, v, local.dense(), reference=True)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("position", ["sinusoidal", "rotary"])
def test_windowed_encoder_same_output_blockwise_and_dense(position):
    torch.manual_seed(0)
    cfg = EncoderConfig(num_layers=2, width=32, num_heads=4, ffn_dim=64, dropout=0.0, position=position,
                        max_len=400, attention={"window": 10})
    encoder = build_transformer(cfg).eval()
    x = torch.randn(2, 333, 32, requires_grad=True)
    mask = padded_mask([333, 200], 333)

    assert isinstance(encoder.attention_mask(mask, None), LocalMask)
    blockwise = encoder(x, mask)
    (blockwise_grad,) = torch.autograd.grad(blockwise[mask].sum(), x)
    encoder.blockwise = False
    assert isinstance(encoder.attention_mask(mask, None), torch.Tensor)
    dense = encoder(x, mask)
    (dense_grad,) = torch.autograd.grad(dense[mask].sum(), x)

    torch.testing.assert_close(blockwise, dense, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(blockwise_grad, dense_grad, rtol=1e-4, atol=1e-5)
    # Two layers of window 10: position 150 sees inputs 130..170 and nothing beyond.
    encoder.blockwise = True
    (reach,) = torch.autograd.grad(encoder(x, mask)[0, 150] @ torch.randn(32), x)  # (a sum is erased by LayerNorm)
    seen = reach[0].abs().sum(-1) > 0  # (T,)
    assert seen[130:171].all() and not seen[:130].any() and not seen[171:].any()


def test_windowed_encoder_trains_with_dropout():
    cfg = EncoderConfig(num_layers=1, width=16, num_heads=2, ffn_dim=32, attention={"window": 4, "dropout": 0.1})
    encoder = build_transformer(cfg).train()
    x = torch.randn(2, 150, 16, requires_grad=True)
    encoder(x, padded_mask([150, 60], 150)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[1, :60].abs().sum() > 0


def test_backward_recomputation_passes_gradcheck():
    """The hand-written backward (tiles recomputed run by run) against finite differences, in float64."""
    torch.manual_seed(0)
    keep = padded_mask([70, 41], 70)
    q, k, v = (torch.randn(2, 1, 70, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert len(Tiles(q.shape, keep, 3).chunks()) == 1 and len(Tiles(q.shape, keep, 3).real) == 4
    torch.autograd.gradcheck(lambda *qkv: local_attention(*qkv, LocalMask(keep, 3)), (q, k, v), fast_mode=True)


def test_dropout_masks_are_replayed_in_backward():
    """With attention dropout, backward recomputes each run under the forward's random state: its gradients
    equal those of the same computation kept by autograd (same seed)."""
    keep = padded_mask([300, 180], 300)
    leaves = [torch.randn(2, 2, 300, 8, requires_grad=True) for _ in range(3)]
    grad_out = torch.randn(2, 2, 300, 8)
    torch.manual_seed(5)
    out = local_attention(*leaves, LocalMask(keep, 4), dropout_p=0.3)
    got = torch.autograd.grad(out, leaves, grad_out)

    torch.manual_seed(5)
    tiles = Tiles(leaves[0].shape, keep, 4).load(*leaves)  # the same runs, differentiated by autograd
    H, E = 2, 8
    runs = [tiles.attend(tiles.queries[r], tiles.keys[k], tiles.values[k], m0, m1, 0.3)
            for (m0, m1), (r, k) in ((c, tiles.rows(*c)) for c in tiles.chunks())]
    reference = tiles.per_entry(torch.cat(runs).transpose(1, 2).reshape(-1, H, E))
    torch.testing.assert_close(out, reference)
    assert not torch.allclose(out, local_attention(*leaves, LocalMask(keep, 4)))  # dropout really acted
    for a, b in zip(got, torch.autograd.grad(reference, leaves, grad_out)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
