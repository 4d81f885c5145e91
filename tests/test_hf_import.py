"""model.init: hf:... -- BERT-family checkpoints as attntrain's own embedding + encoder.

Every checkpoint here is a tiny random one that the test makes with transformers and saves to tmp_path;
nothing downloads (the hub-name path reads a cache folder the test fills).
"""

from __future__ import annotations

import pytest
import torch

from attntrain.config import build_config
from attntrain.errors import UserError
from attntrain.model import build_model
from attntrain.model.hf_import import configure, load_checkpoint_weights

transformers = pytest.importorskip("transformers")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "un", "##believ", "##able",
         "new", "york", "is", "big", ".", ",", "a", "dog", "ran", "good", "bad", "movie", "film", "great", "not"]
SIZES = {"vocab_size": len(VOCAB), "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 32, "max_position_embeddings": 40}


def family_model(family: str):
    """A tiny random transformers base model of the family (seeded; LayerNorms perturbed so they matter)."""
    torch.manual_seed(0)
    if family == "distilbert":
        config = transformers.DistilBertConfig(vocab_size=len(VOCAB), dim=16, n_layers=2, n_heads=2, hidden_dim=32,
                                               max_position_embeddings=40)
    elif family == "roberta":
        config = transformers.RobertaConfig(**{**SIZES, "max_position_embeddings": 42}, pad_token_id=1,
                                            hidden_act="gelu_new")
    elif family == "electra":
        config = transformers.ElectraConfig(**SIZES, embedding_size=8)
    else:
        config = transformers.BertConfig(**SIZES, layer_norm_eps=1e-7)
    model = transformers.AutoModel.from_config(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def save_word_pieces(folder, vocab: list[str], *, lowercase: bool) -> None:
    """A word-piece tokenizer of `vocab` saved beside a checkpoint's config.json (read back by AutoTokenizer)."""
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    transformers.AutoTokenizer.from_pretrained(folder, do_lower_case=lowercase).save_pretrained(folder)


def save_checkpoint(family: str, folder):
    """A save_pretrained folder of a tiny checkpoint (+ a word-piece tokenizer); returns the transformers model."""
    model = family_model(family)
    model.save_pretrained(folder)
    if family != "roberta":
        save_word_pieces(folder, VOCAB, lowercase=True)
    return model


def imported(folder, head: str = "tagging"):
    raw = {"model": {"init": f"hf:{folder}", "head": {"kind": head}}}
    cfg = configure(build_config(raw, "test"), log=lambda m: None)
    model = build_model(cfg, {"input": "pieces", "num_words": len(VOCAB), "num_labels": 3}).eval()
    load_checkpoint_weights(model, str(folder))
    return model


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert", "electra"])
@pytest.mark.parametrize("lengths", [[9, 9], [9, 4]], ids=["full", "padded"])
def test_imported_encoder_gives_the_checkpoints_hidden_states(tmp_path, family, lengths):
    reference = save_checkpoint(family, tmp_path)
    model = imported(tmp_path)
    torch.manual_seed(1)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]  # (B,S)
    ids = torch.randint(5, len(VOCAB), mask.shape).masked_fill(~mask, reference.config.pad_token_id)
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        got = model.encoder(*model.embed({"words": ids, "mask": mask}))
    assert got.shape == expected.shape
    assert (got - expected)[mask].abs().max() < 1e-5
    assert (got - expected)[mask].abs().max() < (expected[mask].abs().max() * 1e-5 + 1e-5)


def test_sizes_in_the_config_are_reported_once_and_replaced(tmp_path):
    save_checkpoint("bert", tmp_path)
    lines = []
    raw = {"model": {"init": f"hf:{tmp_path}", "encoder": {"width": 64, "num_heads": 4, "num_layers": 2}}}
    cfg = configure(build_config(raw, "test"), log=lines.append)
    assert len(lines) == 1 and "model.encoder.width=16 (config: 64)" in lines[0] and "num_layers" not in lines[0]
    assert (cfg.model.encoder.width, cfg.model.encoder.norm, cfg.model.encoder.norm_eps) == (16, "post", 1e-7)
    assert (cfg.model.embed.positions, cfg.model.embed.token_types, cfg.model.embed.norm) == (40, 2, True)


def test_a_folder_that_is_no_checkpoint_is_one_line_naming_it(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError) as caught:
        configure(build_config({"model": {"init": f"hf:{tmp_path}"}}, "test"))
    assert str(tmp_path) in str(caught.value) and "\n" not in str(caught.value)


def test_an_unknown_model_family_is_one_line_naming_it(tmp_path):
    transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=30).save_pretrained(tmp_path)
    with pytest.raises(UserError) as caught:
        configure(build_config({"model": {"init": f"hf:{tmp_path}"}}, "test"))
    message = str(caught.value)
    assert str(tmp_path) in message and "'gpt2'" in message and "\n" not in message


def test_a_hub_name_resolves_through_the_local_cache_only(tmp_path, monkeypatch):
    """A hub name is read from the hub cache (HF_HUB_CACHE), offline: a name that is not there is an error."""
    from huggingface_hub.constants import REPO_ID_SEPARATOR

    cache = tmp_path / "hub"
    snapshot = cache / f"models{REPO_ID_SEPARATOR}tiny{REPO_ID_SEPARATOR}bert" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    reference = save_checkpoint("bert", snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("transformers.utils.hub.HF_HUB_CACHE", str(cache), raising=False)
    model = imported("tiny/bert")
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    with torch.no_grad():
        expected = reference(input_ids=ids).last_hidden_state
        got = model.encoder(*model.embed({"words": ids, "mask": torch.ones_like(ids, dtype=torch.bool)}))
    assert (got - expected).abs().max() < 1e-5
    with pytest.raises(UserError, match="tiny/absent"):
        imported("tiny/absent")


def test_a_run_whose_input_is_not_text_is_refused(tmp_path):
    save_checkpoint("bert", tmp_path)
    cfg = configure(build_config({"model": {"init": f"hf:{tmp_path}"}}, "test"), log=lambda m: None)
    model = build_model(cfg, {"input": "audio", "num_features": 13, "num_labels": 3})
    with pytest.raises(UserError, match="input is text"):
        load_checkpoint_weights(model, str(tmp_path))
