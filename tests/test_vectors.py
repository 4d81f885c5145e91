"""model.embed.vectors: word-vector files of every format (written here) start a text run's word table."""

from __future__ import annotations

import gzip
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attntrain.config import build_config
from attntrain.data.inputs.text import TextVocab
from attntrain.data.inputs.vectors import vector_words
from attntrain.errors import UserError
from attntrain.model import build_model
from attntrain.model.vectors import load_vectors
from tests.conftest import REPO, cli_env

TRAIN = [["The", "cat", "sat", "on", "the", "mat"], ["Paris", "is", "big"], ["the", "zyzzyva", "sat"]]
# file words: exact forms, a cased one that folds to a vocabulary word, and words train never has
WORDS = ["the", "The", "cat", "sat", "on", "Paris", "is", "london", "rome"]
VECTORS = {word: np.arange(4, dtype=np.float32) + 10 * number for number, word in enumerate(WORDS)}


def text_lines(header: bool) -> list[str]:
    lines = [f"{len(WORDS)} 4"] if header else []
    return lines + [f"{word} " + " ".join(f"{v:.1f}" for v in VECTORS[word]) for word in WORDS]


def write(path, kind: str):
    """A vector file of `kind`: word2vec (text), glove (no header), vec (fastText), bin (word2vec binary)."""
    if kind == "bin":
        body = f"{len(WORDS)} 4\n".encode() + b"".join(
            word.encode() + b" " + VECTORS[word].astype("<f4").tobytes() + b"\n" for word in WORDS)
    else:
        body = ("\n".join(text_lines(header=kind != "glove")) + "\n").encode()
    path.write_bytes(gzip.compress(body) if path.suffix == ".gz" else body)
    return path


def vocab_and_model(path, **embed):
    cfg = build_config({"model": {"embed": {"word_dim": 4, "vectors": str(path), **embed}}}, "test")
    text = TextVocab(cfg.model.embed)
    text.build(TRAIN)
    model = build_model(cfg, {**text.info(), "num_labels": 3})
    return cfg, text, model


FILES = ["vectors.w2v.txt", "glove.6B.4d.txt", "wiki.vec", "vectors.bin", "wiki.vec.gz", "vectors.bin.gz"]


@pytest.mark.parametrize("name", FILES)
def test_each_format_loads_aligned_to_the_vocabulary_with_its_coverage(tmp_path, name):
    kind = {"txt": "glove" if name.startswith("glove") else "word2vec", "vec": "vec", "bin": "bin"}[
        name.removesuffix(".gz").rsplit(".", 1)[1]]
    path = write(tmp_path / name, kind)
    cfg, text, model = vocab_and_model(path)
    lines = []
    load_vectors(model, SimpleNamespace(input_kind=SimpleNamespace(text=text)), cfg, log=lines.append)
    table = model.embed.words.table.weight
    ids = text.words.index
    assert torch.equal(table[ids["the"]], torch.from_numpy(VECTORS["the"]))  # exact spelling wins over "The"
    assert torch.equal(table[ids["paris"]], torch.from_numpy(VECTORS["Paris"]))  # case-folded
    assert not torch.equal(table[ids["zyzzyva"]][:1], torch.tensor([0.0]))  # no vector: its random start
    assert not torch.equal(table[ids["mat"]][:1], torch.tensor([0.0]))
    # train (lowercased): 10 types {the, cat, sat, on, mat, paris, is, big, zyzzyva} -> 9 types, 12 tokens;
    # with vectors: the(3) cat sat(2) on paris is = 6 types, 9 tokens
    assert len(lines) == 1 and "types 66.7% (6 of 9), tokens 75.0%" in lines[0] and str(path) in lines[0]


def test_vector_words_of_a_gzipped_binary_file(tmp_path):
    assert vector_words(write(tmp_path / "v.bin.gz", "bin")) == WORDS


def test_frozen_vectors_do_not_train(tmp_path):
    cfg, text, model = vocab_and_model(write(tmp_path / "v.vec", "vec"), vectors_trainable=False)
    load_vectors(model, SimpleNamespace(input_kind=SimpleNamespace(text=text)), cfg, log=lambda m: None)
    assert not model.embed.words.table.weight.requires_grad
    words = torch.tensor([text.words.ids(["the", "cat", "sat"])])
    batch = {"words": words, "mask": torch.ones_like(words, dtype=torch.bool), "labels": torch.tensor([[0, 1, 2]])}
    model(batch)["loss"].backward()
    assert model.embed.words.table.weight.grad is None and model.embed.project.weight.grad is not None


def test_extend_gives_words_unseen_in_train_their_vector(tmp_path):
    path = write(tmp_path / "v.vec", "vec")
    cfg, text, model = vocab_and_model(path, vectors_extend=True)
    load_vectors(model, SimpleNamespace(input_kind=SimpleNamespace(text=text)), cfg, log=lambda m: None)
    item = text.encode(["london", "rome", "paris", "oslo"])
    assert item["oov"].tolist() == [True, True, False, True]  # out of train, as before
    london, rome, _, oslo = item["words"].tolist()
    assert oslo == 1 and london > 1 and rome > 1  # in the file: an entry of its own; elsewhere <unk>
    table = model.embed.words.table.weight
    assert torch.equal(table[rome], torch.from_numpy(VECTORS["rome"]))
    plain = vocab_and_model(path)[1]
    assert plain.encode(["london"])["words"].tolist() == [1]


@pytest.mark.parametrize("body,found", [("a 1 2 3 4\nb 1 2 3\n", ":2: 3 numbers where the file's vectors have 4"),
                                        ("2 4\na 1 2 3 4\nb 1 2 3 4 5 6\n", ":3:")])
def test_ragged_widths_are_one_error_naming_file_and_line(tmp_path, body, found):
    path = tmp_path / "bad.txt"
    path.write_text(body)
    cfg, text, model = vocab_and_model(path)
    with pytest.raises(UserError) as caught:
        load_vectors(model, SimpleNamespace(input_kind=SimpleNamespace(text=text)), cfg)
    assert f"{path}{found}" in str(caught.value) and "\n" not in str(caught.value)


def test_a_width_that_disagrees_with_word_dim_exits_2_naming_the_file(tmp_path):
    path = write(tmp_path / "v.vec", "vec")
    config = tmp_path / "run.yaml"
    config.write_text(
        "data: {task: ud_pos, train_limit: 50, eval_limit: 20}\n"
        f"model: {{embed: {{word_dim: 8, vectors: {path}}}, encoder: {{num_layers: 1, width: 16, num_heads: 2}}}}\n"
        f"runs_dir: {tmp_path / 'runs'}\n"
        "train: {max_steps: 1, progress: false, threads: 1}\n")
    done = subprocess.run([sys.executable, "-m", "attntrain", "fit", str(config)], capture_output=True, text=True,
                          env=cli_env(), cwd=REPO, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(
        f"{path}: vectors of width 4, but model.embed.word_dim is 8 (set it to 4)")
    assert "Traceback" not in done.stderr
