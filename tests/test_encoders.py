"""Every encoder kind is a drop-in replacement: same interface, works with every head, ignores padding."""

from __future__ import annotations

import itertools

import pytest
import torch

from attntrain.config import EncoderConfig, build_config
from attntrain.errors import UserError
from attntrain.model import build_model
from attntrain.model.encoder import ENCODERS
from attntrain.model.heads import HEADS

VARIANTS = [
    {"kind": "transformer"},
    {"kind": "transformer", "attention": {"window": 2}},
    {"kind": "transformer", "norm": "post", "norm_eps": 1e-12, "activation": "gelu_tanh"},  # the BERT family's blocks
    {"kind": "cnn", "kernel_size": 3, "dilation": 2},
    {"kind": "rnn", "rnn_cell": "lstm", "bidirectional": True},
    {"kind": "rnn", "rnn_cell": "gru", "bidirectional": False},
    {"kind": "gat", "output_heads": 2},
]
TEXT_INFO = {"input": "text", "num_words": 50, "num_chars": 20, "num_labels": 5}


def text_batch(lengths: list[int], T: int, head: str = "tagging") -> dict:
    torch.manual_seed(1)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    labels = (torch.randint(0, 5, (len(lengths), T)).masked_fill(~mask, -100) if head == "tagging"
              else torch.randint(0, 5, (len(lengths),)))
    return {
        "words": torch.randint(2, 50, (len(lengths), T)) * mask,
        "chars": torch.randint(1, 20, (len(lengths), T, 4)) * mask[..., None],
        "mask": mask,
        "labels": labels,
    }


OUTPUT_SHAPE = {"tagging": (2, 7, 5), "sequence": (2, 5)}


def test_every_encoder_kind_and_head_is_covered():
    assert {v["kind"] for v in VARIANTS} == set(ENCODERS)
    assert set(OUTPUT_SHAPE) == set(LABEL_HEADS)


# seq2seq reads target sentences, not labels: tests/test_seq2seq.py runs it with every encoder variant;
# pretrain reads masked inputs: tests/test_pretrain.py does.
LABEL_HEADS = [head for head in HEADS if head not in ("seq2seq", "pretrain")]


@pytest.mark.parametrize("encoder,head", list(itertools.product(range(len(VARIANTS)), LABEL_HEADS)))
def test_each_encoder_with_each_head_runs_forward_and_backward(encoder, head):
    raw = {"model": {"embed": {"word_dim": 8, "char_dim": 4, "char_filters": 8},
                     "encoder": {"num_layers": 2, "width": 16, "num_heads": 2, "ffn_dim": 32, **VARIANTS[encoder]},
                     "head": {"kind": head}}}
    model = build_model(build_config(raw, "test"), TEXT_INFO).train()
    out = model(text_batch([7, 3], 7, head))
    out["loss"].backward()
    assert out["logits"].shape == OUTPUT_SHAPE[head]
    grads = [p.grad for p in model.encoder.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("variant", range(len(VARIANTS)))
def test_padding_does_not_change_real_positions(variant):
    torch.manual_seed(0)
    cfg = EncoderConfig(num_layers=2, width=16, num_heads=2, ffn_dim=32, **VARIANTS[variant])
    encoder = ENCODERS[cfg.kind](cfg).eval()
    x = torch.randn(1, 5, 16)
    alone = encoder(x, torch.ones(1, 5, dtype=torch.bool))
    padded_x = torch.cat([x, torch.randn(1, 3, 16) * 10], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    padded = encoder(padded_x, mask)
    torch.testing.assert_close(padded[:, :5], alone, rtol=1e-4, atol=1e-5)


def test_cnn_receptive_field_is_local():
    """2 layers of kernel 3 (dilation 1): position 0 sees positions 0..2 only."""
    torch.manual_seed(0)
    cfg = EncoderConfig(kind="cnn", num_layers=2, width=8, kernel_size=3)
    encoder = ENCODERS["cnn"](cfg).eval()
    x = torch.randn(1, 6, 8)
    changed = x.clone()
    changed[0, 3:] = torch.randn(3, 8)
    mask = torch.ones(1, 6, dtype=torch.bool)
    torch.testing.assert_close(encoder(x, mask)[0, :1], encoder(changed, mask)[0, :1])


@pytest.mark.parametrize("encoder, message", [
    ({"kind": "cnn", "kernel_size": 4}, "model.encoder.kernel_size: must be odd"),
    ({"kind": "rnn", "width": 15, "num_heads": 1}, "model.encoder.bidirectional: a bidirectional rnn needs an even width"),
    ({"kind": "rnn", "rnn_cell": "elman"}, "model.encoder.rnn_cell: Input should be 'lstm' or 'gru'"),
    ({"kind": "lstm"}, "model.encoder.kind: unknown choice 'lstm'"),
])
def test_encoder_config_errors(encoder, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        build_config({"model": {"encoder": encoder}}, "test")


def test_even_ngram_width_is_refused():
    with pytest.raises(UserError, match="model.embed.ngram: must be odd"):
        build_config({"model": {"embed": {"ngram": 2}}}, "test")


@pytest.mark.parametrize("training", [False, True])
def test_feed_forward_skipping_padding_equals_computing_it(training):
    """In training the transformer's feed-forward layers leave padded positions out when a batch has enough
    padding; real positions, the loss and every gradient match the plain path, dropout masks included (same
    seed). In eval mode every position is computed (exports and predictions keep their padded outputs)."""
    from attntrain.model.encoder import build_transformer, real_rows

    torch.manual_seed(0)
    cfg = EncoderConfig(num_layers=2, width=16, num_heads=2, ffn_dim=32, dropout=0.3)
    encoder = build_transformer(cfg).double().train(training)
    x = torch.randn(3, 8, 16, dtype=torch.float64)
    mask = torch.arange(8)[None, :] < torch.tensor([[8], [5], [2]])
    assert real_rows(mask).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16, 17]
    results = []
    for skip in (True, False):
        encoder.skip_padding = skip
        encoder.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        out = encoder(x, mask)
        out[mask].square().sum().backward()
        results.append((out[mask], [p.grad for p in encoder.parameters()]))
    (packed, packed_grads), (plain, plain_grads) = results
    if not training:
        encoder.skip_padding = True
        everywhere = encoder(x, mask)
        encoder.skip_padding = False
        torch.testing.assert_close(everywhere, encoder(x, mask), rtol=0, atol=0)  # padded positions too
    torch.testing.assert_close(packed, plain, rtol=1e-12, atol=1e-12)
    for a, b in zip(packed_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_rare_padding_is_computed_rather_than_skipped():
    from attntrain.model.encoder import real_rows

    assert real_rows(torch.ones(2, 10, dtype=torch.bool)) is None
    assert real_rows(torch.arange(10)[None, :] < torch.tensor([[10], [9]])) is None  # 5% padding
    assert real_rows(torch.arange(10)[None, :] < torch.tensor([[10], [8]])) is not None  # 10%
