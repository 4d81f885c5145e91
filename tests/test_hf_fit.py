"""Runs that start from a (tiny, test-made) BERT checkpoint: the checkpoint's tokenizer, tags per word on the
first piece of each word, and a trained run that predicts, serves, exports and draws attention maps without
the checkpoint folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from attntrain import runs
from attntrain.config import build_config
from attntrain.data.inputs.pieces import piece_input
from attntrain.data.targets.spans import span_scores
from attntrain.model import build_model
from attntrain.model.hf_import import configure, load_init
from tests.conftest import _train, shared_data
from tests.test_hf_import import VOCAB, save_checkpoint, save_word_pieces

transformers = pytest.importorskip("transformers")

WNUT = {"dataset": "wnut17", "source": {"format": "conll", "columns": ["tokens", "tags"],
                                        "files": {"train": "wnut17train.conll", "dev": "emerging.dev.conll",
                                                  "test": "emerging.test.annotated"}},
        "input": {"field": "tokens", "kind": "text"}, "target": {"field": "tags", "scheme": "auto"}}


def test_a_word_of_three_pieces_gets_one_tag_on_its_first_piece(tmp_path):
    save_checkpoint("bert", tmp_path)
    cfg = configure(build_config({"model": {"init": f"hf:{tmp_path}"}, "data": {"input": {"field": "tokens"}}},
                                 "test"), log=lambda m: None)
    pieces = piece_input(cfg)
    pieces.prepare(None, None)
    item = pieces.encode(["the", "unbelievable", "cat"])
    assert pieces.piece_labels(["the", "unbelievable", "cat"]) == ["[CLS]", "the", "un", "##believ", "##able", "cat",
                                                                   "[SEP]"]
    assert item["length"] == 3 and item["word_starts"].tolist() == [1, 2, 5]
    model = build_model(cfg, {**pieces.info(), "num_labels": 4}).eval()
    load_init(model, cfg)
    batch = pieces.collate([item, pieces.encode(["a", "dog"])])
    batch["labels"] = torch.tensor([[0, 1, 2], [3, 0, -100]])
    with torch.no_grad():
        out = model(batch)
        every_piece = model.head(model.encoder(*model.embed(batch)), batch)  # (B,S,L)
    assert out["logits"].shape == (2, 3, 4)  # one row of scores per word, not per piece
    assert torch.equal(out["logits"][0], every_piece[0, [1, 2, 5]])
    assert torch.equal(out["logits"][1, :2], every_piece[1, [1, 2]])


def wnut_checkpoint(folder) -> None:
    """A tiny random BERT whose word-piece vocabulary (400) is learned from WNUT-17 training text."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    lines = (shared_data() / "wnut17" / "wnut17train.conll").read_text(encoding="utf-8").splitlines()[:6000]
    words = [line.split("\t")[0] for line in lines if line.strip()]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator([" ".join(words[i:i + 20]) for i in range(0, len(words), 20)],
                                  trainers.WordPieceTrainer(vocab_size=400, special_tokens=VOCAB[:5]))
    vocab = [word for word, _ in sorted(tokenizer.get_vocab().items(), key=lambda pair: pair[1])]
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=128)
    transformers.BertModel(config).save_pretrained(folder)
    save_word_pieces(folder, vocab, lowercase=False)


@pytest.fixture(scope="module")
def wnut_run(tmp_path_factory):
    """WNUT-17 NER from the tiny checkpoint, 6 steps on 300 sentences; then the checkpoint folder is deleted."""
    folder = tmp_path_factory.mktemp("checkpoint")
    wnut_checkpoint(folder)
    run_dir = _train({
        "name": "hf_ner", "seed": 1, "runs_dir": str(tmp_path_factory.mktemp("runs")),
        "data": {**WNUT, "root": str(shared_data()), "train_limit": 300, "eval_limit": 60, "max_tokens": 800},
        "model": {"init": f"hf:{folder}", "embed": {"char_dim": 16}, "head": {"kind": "tagging"}},
        # a small lr: the fresh head stays near random, so it predicts entities to score (a trained one says O)
        "train": {"lr": 1e-4, "warmup_steps": 2, "max_steps": 6, "eval_every": 6, "progress": False, "threads": 1,
                  "metric": "f1"},
    })
    shutil.rmtree(folder)  # everything below reads the run directory only
    return run_dir


def test_a_run_from_a_checkpoint_keeps_per_word_metrics(wnut_run):
    cfg, task, model, _ = runs.load_run(wnut_run, device="cpu")
    assert cfg.model.encoder.norm == "post" and cfg.model.embed.char_dim == 0 and task.info()["input"] == "pieces"
    dev = [row for row in task.split_raw("dev")]
    metrics = runs.eval_run(wnut_run, "dev")
    lines = runs.predict(wnut_run, [" ".join(row["tokens"]) for row in dev], fmt="jsonl", pretokenized=True)
    predicted = [json.loads(line)["tags"] for line in lines]
    true = [list(row["tags"]) for row in dev]
    assert [len(tags) for tags in predicted] == [len(tags) for tags in true]
    assert sum(tag != "O" for tags in predicted for tag in tags) > 10  # spans to score: the F1 below is no 0 == 0
    assert metrics["tokens"] == sum(len(tags) for tags in true)  # words, not pieces
    per_word = span_scores(true, predicted, "iob2")
    assert (metrics["f1"], metrics["precision"]) == pytest.approx((per_word["f1"], per_word["precision"]))
    hits = sum(p == t for row_p, row_t in zip(predicted, true) for p, t in zip(row_p, row_t))
    assert metrics["accuracy"] == pytest.approx(100.0 * hits / metrics["tokens"])


def test_a_run_from_a_checkpoint_predicts_serves_and_draws_attention(wnut_run):
    from fastapi.testclient import TestClient

    from attntrain.plots import attention_weights
    from attntrain.predictor import Predictor
    from attntrain.serve import ServeSettings, create_app

    record = json.loads(list(runs.predict(wnut_run, ["Paul went to New York"], fmt="jsonl"))[0])
    assert record["tokens"] == ["Paul", "went", "to", "New", "York"] and len(record["tags"]) == 5
    predictor = Predictor.from_run(wnut_run)
    with TestClient(create_app(predictor, ServeSettings())) as client:
        served = client.post("/predict", json={"inputs": ["Paul went to New York"]}).json()["predictions"]
    assert served[0]["tags"] == record["tags"]
    labels, layers = attention_weights(predictor.model, predictor.task, "Paul went to New York")
    assert labels[0] == "[CLS]" and labels[-1] == "[SEP]" and len(layers) == 2
    assert layers[0].shape == (4, len(labels), len(labels))


def test_a_run_from_a_checkpoint_exports_to_onnx(wnut_run, tmp_path):
    import onnxruntime

    from attntrain.export import LogitsModel, export_run, sample_batch

    torch.set_num_threads(1)
    export_run(wnut_run, fmt="onnx", out=tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    _, task, model, _ = runs.load_run(wnut_run, device="cpu")
    raw = task.split_raw("test")
    for rows in (raw[:1], raw[3:12]):
        batch = sample_batch(task, rows)
        got = session.run(["logits"], {n: batch[n].numpy() for n in names})[0]
        with torch.no_grad():
            want = LogitsModel(model, names)(*[batch[n] for n in names]).numpy()
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4


def test_a_sentence_classifier_from_a_checkpoint_trains_and_predicts(tmp_path):
    save_checkpoint("bert", tmp_path / "checkpoint")
    run_dir = _train({
        "name": "hf_sst2", "seed": 1, "runs_dir": str(tmp_path / "runs"),
        "data": {"task": "sst2", "root": str(shared_data()), "dataset": "sst2", "train_limit": 200,
                 "eval_limit": 40, "max_tokens": 600},
        "model": {"init": f"hf:{tmp_path / 'checkpoint'}", "head": {"kind": "sequence", "pooling": "mean"}},
        "train": {"lr": 1e-3, "warmup_steps": 2, "max_steps": 6, "eval_every": 6, "progress": False, "threads": 1},
    })
    shutil.rmtree(tmp_path / "checkpoint")
    record = json.loads(list(runs.predict(run_dir, ["a great movie"], fmt="jsonl"))[0])
    assert record["label"] in ("negative", "positive", "0", "1")


def test_byte_level_pieces_give_each_word_its_leading_space(tmp_path):
    """RoBERTa's BPE spells a word after a space with a leading Ġ: words given one by one must get it too."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["the cat sat on the mat", "new york is big"] * 20, vocab_size=280,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(tmp_path))
    save_checkpoint("roberta", tmp_path)
    cfg = configure(build_config({"model": {"init": f"hf:{tmp_path}"}}, "test"), log=lambda m: None)
    pieces = piece_input(cfg)
    pieces.prepare(None, None)
    labels = pieces.piece_labels(["the", "cat", "sat"])
    starts = pieces.encode(["the", "cat", "sat"])["word_starts"].tolist()
    assert labels[0] == "<s>" and labels[-1] == "</s>" and labels[1:3] == ["Ġthe", "Ġcat"]
    assert len(starts) == 3 and all(labels[start].startswith("Ġ") for start in starts)
