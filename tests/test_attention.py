"""Attention internals: fast path == reference path, masking, and every table entry trains."""

from __future__ import annotations

import itertools

import pytest
import torch

from attntrain.config import EncoderConfig
from attntrain.model.attention import NORMALIZERS, SCORES, build_attention
from attntrain.model.encoder import build_transformer
from attntrain.model.positional import POSITIONS
from attntrain.registry import lookup
from attntrain.errors import UserError


def padded_mask(lengths: list[int], T: int) -> torch.Tensor:
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B,T)


def test_sdpa_fast_path_equals_explicit_reference():
    torch.manual_seed(0)
    attention = build_attention(64, 4, score="dot", normalize="softmax", dropout=0.0).eval()
    assert attention.fast
    q, k, v = (torch.randn(3, 4, 7, 16) for _ in range(3))
    mask = padded_mask([7, 4, 1], 7)[:, None, None, :]  # (B,1,1,S)
    fast = attention.attend(q, k, v, mask)
    reference = attention.attend(q, k, v, mask, reference=True)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    # And the reference really is softmax(QK^T / sqrt(E)) V with masked keys removed.
    scores = q[1] @ k[1, :, :4].transpose(-1, -2) / 4.0  # (H,T,4): keys 4.. are padding
    manual = scores.softmax(-1) @ v[1, :, :4]
    torch.testing.assert_close(reference[1], manual, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("score,normalize", list(itertools.product(SCORES, NORMALIZERS)))
def test_masked_keys_get_zero_weight(score, normalize):
    torch.manual_seed(0)
    attention = build_attention(32, 2, score=score, normalize=normalize, dropout=0.0).eval()
    x = torch.randn(2, 5, 32)
    mask = padded_mask([5, 3], 5)[:, None, None, :]
    weights = attention.weights(x, mask)  # (B,H,T,S)
    assert weights.shape == (2, 2, 5, 5)
    assert torch.all(weights[1, :, :, 3:] == 0)
    assert torch.all(weights >= 0)
    if normalize == "softmax":
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 5))


@pytest.mark.parametrize("score,normalize,position",
                         list(itertools.product(SCORES, NORMALIZERS, POSITIONS)))
def test_padding_does_not_change_real_outputs(score, normalize, position):
    """Appending padding to a sequence leaves the outputs at its real positions unchanged."""
    torch.manual_seed(0)
    cfg = EncoderConfig(num_layers=2, width=32, num_heads=4, ffn_dim=64, position=position,
                        attention={"score": score, "normalize": normalize})
    encoder = build_transformer(cfg).eval()
    x = torch.randn(1, 6, 32)
    alone = encoder(x, torch.ones(1, 6, dtype=torch.bool))
    padded_x = torch.cat([x, torch.randn(1, 4, 32) * 10], dim=1)  # garbage in the padding
    padded = encoder(padded_x, padded_mask([6], 10))
    torch.testing.assert_close(padded[:, :6], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("score,normalize,position",
                         list(itertools.product(SCORES, NORMALIZERS, POSITIONS)))
def test_every_variant_runs_forward_and_backward(score, normalize, position):
    cfg = EncoderConfig(num_layers=1, width=16, num_heads=2, ffn_dim=32, position=position,
                        attention={"score": score, "normalize": normalize, "dropout": 0.1, "window": 2})
    encoder = build_transformer(cfg).train()
    x = torch.randn(3, 9, 16, requires_grad=True)
    out = encoder(x, padded_mask([9, 5, 2], 9))
    out.sum().backward()
    assert out.shape == (3, 9, 16)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_window_restricts_attention():
    """With window w, a position's output ignores inputs further than w*layers away."""
    torch.manual_seed(0)
    cfg = EncoderConfig(num_layers=1, width=16, num_heads=2, ffn_dim=32, attention={"window": 1})
    encoder = build_transformer(cfg).eval()
    x = torch.randn(1, 8, 16)
    mask = torch.ones(1, 8, dtype=torch.bool)
    changed = x.clone()
    changed[0, 7] = torch.randn(16)  # (a constant shift would be erased by LayerNorm)
    a, b = encoder(x, mask), encoder(changed, mask)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_lookup_lists_valid_names():
    with pytest.raises(UserError, match="valid: additive, dot"):
        lookup(SCORES, "cosine", "model.encoder.attention.score")
    with pytest.raises(UserError, match="valid: learned, none, rotary, sinusoidal"):
        lookup(POSITIONS, "alibi", "model.encoder.position")


def test_stacked_projection_equals_the_separate_linears():
    """Self-attention projects q, k, v in one matmul over [W_q; W_kv]; it must equal the two Linears
    (the parameters saved runs hold), and cross-attention still reads k, v from the memory."""
    torch.manual_seed(0)
    attention = build_attention(32, 4, score="dot", normalize="softmax", dropout=0.0)
    x, memory = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    q, k, v = attention.project(x)
    keys, values = attention.key_value(x).chunk(2, dim=-1)
    for fused, plain in ((q, attention.query(x)), (k, keys), (v, values)):
        torch.testing.assert_close(fused, attention.split_heads(plain), rtol=1e-6, atol=1e-6)
    q, k, v = attention.project(x, memory)
    assert q.shape == (2, 4, 5, 8) and k.shape == v.shape == (2, 4, 7, 8)
    torch.testing.assert_close(k, attention.split_heads(attention.key_value(memory)[..., :32]))
    assert sorted(name for name, _ in attention.named_parameters())[:4] == [
        "key_value.bias", "key_value.weight", "out.bias", "out.weight"]
