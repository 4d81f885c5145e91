"""Every shipped dot + softmax config keeps SDPA on its fused CPU kernel (flash), never the math path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from attntrain.config import load_config
from attntrain.model.attention import LocalMask, attention_mask, build_attention

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def sdpa_kernels(fn) -> set[str]:
    """Names of the scaled-dot-product-attention kernels `fn` (forward + backward) dispatched to."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages() if e.key.startswith("aten::_scaled_dot_product")}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_sdpa_configs_have_no_attention_dropout(path):
    """Dropout on the attention weights is what sends SDPA to its slow math path on CPU (masks of any
    shape, bool or float, and is_causal stay on the flash kernel in torch 2.13)."""
    encoder = load_config(path).model.encoder
    attention = encoder.attention
    if encoder.kind == "transformer" and (attention.score, attention.normalize) == ("dot", "softmax"):
        assert attention.dropout == 0.0, f"{path.name}: attention.dropout > 0 takes SDPA off its fast kernel"


@pytest.mark.parametrize("kind", ["none", "padding", "window", "causal"])
def test_attention_masks_take_the_flash_kernel(kind):
    """The masks the encoder and decoder build (none, (B,1,1,S) padding, the blockwise window's band,
    causal) reach SDPA's flash kernel in forward and backward; dropout would not."""
    torch.manual_seed(0)
    attention = build_attention(32, 4, score="dot", normalize="softmax", dropout=0.0)
    x = torch.randn(2, 160, 32, requires_grad=True)
    keep = torch.arange(160)[None, :] < torch.tensor([[160], [120]])
    mask = {"none": None, "padding": attention_mask(keep), "window": attention_mask(keep, window=16),
            "causal": None}[kind]
    assert isinstance(mask, LocalMask) == (kind == "window")
    kernels = sdpa_kernels(lambda: attention(x, mask, causal=kind == "causal").sum().backward())
    assert kernels == {"aten::_scaled_dot_product_flash_attention_for_cpu",
                       "aten::_scaled_dot_product_flash_attention_for_cpu_backward"}
    q = torch.randn(1, 2, 8, 4, requires_grad=True)
    math = sdpa_kernels(lambda: F.scaled_dot_product_attention(q, q, q, dropout_p=0.5).sum().backward())
    assert "aten::_scaled_dot_product_attention_math" in math  # the check can tell the two paths apart
