"""The byte-mask dropout: drop rate, rescaling, gradient, identity at eval."""

from __future__ import annotations

import torch

from attntrain.model.dropout import Dropout, dropout


def test_drop_rate_and_rescale_keep_the_expectation():
    torch.manual_seed(0)
    x = torch.ones(400, 500)
    y = dropout(x, 0.6, training=True)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - round(0.6 * 256) / 256) < 0.005  # rate, rounded to 1/256
    assert torch.allclose(y[kept], torch.full_like(y[kept], 256 / (256 - round(0.6 * 256))))
    assert abs(y.mean().item() - 1.0) < 0.01


def test_gradient_flows_only_through_kept_entries():
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    y = dropout(x, 0.5, training=True)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.equal(x.grad != 0, kept)
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 2.0))


def test_eval_mode_and_zero_rate_are_identity():
    x = torch.randn(5, 7)
    layer = Dropout(0.3).eval()
    assert layer(x) is x
    assert dropout(x, 0.0, training=True) is x


def test_mask_is_the_same_draw_as_the_plain_byte_pick():
    """The mask comes from the same random words, byte for byte, as picking 7 bytes per word and
    comparing them: seeded runs (and the README's figures) keep their dropout masks."""
    from attntrain.model.dropout import _BYTES, keep_mask

    shape = (3, 11, 5)  # 165 elements: not a multiple of 7, so the last word is partly used
    torch.manual_seed(3)
    keep, scale = keep_mask(torch.Size(shape), 0.1, torch.device("cpu"))
    torch.manual_seed(3)
    words = -(-165 // 7)
    bits = torch.randint(0, 2**56, (words,), dtype=torch.int64)
    uniform = bits.view(torch.uint8).view(words, 8)[:, _BYTES].reshape(-1)[:165].view(shape)
    assert torch.equal(keep, uniform >= round(0.1 * 256))
    assert scale == 256 / (256 - 26)
    x = torch.randn(shape)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.1, training=True), x * ((uniform >= 26).float() * scale))
