"""Text embedding: the character CNN's distinct-spelling path agrees with convolving every token slot."""

from __future__ import annotations

import torch

from attntrain.model.embed import PAD, CharCNN


def spelled_batch() -> torch.Tensor:
    """(B,T,C) character ids with repeated spellings, words of several lengths and padded token slots."""
    torch.manual_seed(0)
    words = torch.randint(1, 30, (12, 6))  # 12 spellings of up to 6 characters
    lengths = torch.randint(1, 7, (12,))
    words[torch.arange(6)[None, :] >= lengths[:, None]] = PAD
    chars = words[torch.randint(0, 12, (3, 9))]  # (3,9,6): every spelling several times
    chars[0, 7:] = PAD  # sentence 0 has 7 tokens, sentence 2 has 4
    chars[2, 4:] = PAD
    return chars


def test_char_cnn_distinct_spellings_match_every_slot():
    chars = spelled_batch()
    assert torch.unique(chars.view(-1, 6), dim=0).shape[0] < 27 // 2  # the fast path has work to skip
    torch.manual_seed(1)
    cnn = CharCNN(30, 8, 16, 3).double()
    grads = []
    for run in (cnn.forward, cnn.reference):
        cnn.zero_grad()
        out = run(chars)  # (3,9,16)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads.append((out.detach(), cnn.conv.weight.grad.clone(), cnn.embed.weight.grad.clone()))
    for fast, reference in zip(*grads):
        torch.testing.assert_close(fast, reference, rtol=1e-10, atol=1e-12)
    assert bool((grads[0][0][0, 7:] == 0).all())  # padded token slots stay zero

