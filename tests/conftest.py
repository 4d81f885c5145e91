"""Shared fixtures: small slices of the real datasets in a temporary data root, tiny configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attntrain.config import build_config
from attntrain.data.sources.root import data_root

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """The real data root; the tests need it (they never touch the network)."""
    try:
        return data_root()
    except Exception as e:  # pragma: no cover - environment problem, say so plainly
        pytest.fail(f"real datasets not found ({e}); set ATTNTRAIN_DATA")


def head_sentences(src: Path, dst: Path, count: int) -> None:
    """Copy the first `count` sentences (blank-line separated blocks) of a CoNLL-U file."""
    blocks, current = [], []
    with open(src, encoding="utf-8") as f:
        for line in f:
            current.append(line)
            if not line.strip():
                blocks.append("".join(current))
                current = []
                if len(blocks) == count:
                    break
    dst.write_text("".join(blocks), encoding="utf-8")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ATTNTRAIN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def ewt_root(tmp_path_factory) -> Path:
    """A data root holding a slice of UD English-EWT: 400 train, 120 dev, 120 test sentences."""
    return ewt_slice(tmp_path_factory.mktemp("data"))


def ewt_slice(root: Path, train: int = 400) -> Path:
    """Write a slice of UD English-EWT (`train`, 120 dev, 120 test sentences) into the data root `root`."""
    folder = root / "ud_en_ewt"
    folder.mkdir(parents=True)
    src = shared_data() / "ud_en_ewt"
    for split, count in (("train", train), ("dev", 120), ("test", 120)):
        head_sentences(src / f"en_ewt-ud-{split}.conllu", folder / f"en_ewt-ud-{split}.conllu", count)
    return root


def tiny_raw(ewt_root: Path, runs: Path, name: str = "tiny", **train) -> dict:
    """A small but real POS config on the EWT slice: trains in seconds."""
    return {
        "name": name,
        "seed": 3,
        "runs_dir": str(runs),
        "data": {"task": "ud_pos", "root": str(ewt_root), "dataset": "ud_en_ewt", "max_tokens": 600},
        "model": {
            "embed": {"word_dim": 32, "char_dim": 16, "char_filters": 32, "word_dropout": 0.1, "dropout": 0.1},
            "encoder": {"num_layers": 2, "width": 64, "num_heads": 4, "ffn_dim": 128, "dropout": 0.1},
        },
        "train": {"lr": 3e-3, "warmup_steps": 5, "max_steps": 40, "eval_every": 20, "log_every": 5,
                  "progress": False, "threads": 1, **train},
    }


@pytest.fixture
def tiny_config(ewt_root, tmp_path):
    def make(name: str = "tiny", overrides: list[str] = (), **train):
        return build_config(tiny_raw(ewt_root, tmp_path / "runs", name, **train), "test", overrides)

    return make


def cli_env() -> dict:
    env = dict(os.environ)
    env.setdefault("ATTNTRAIN_DATA", str(shared_data()))
    return env


# ---- tiny trained runs shared by the serving, export and prediction-format tests (built once) ----

def _train(raw: dict):
    from attntrain.train.checkpoint import RunDir
    from attntrain.train.trainer import Trainer

    cfg = build_config(raw, "test")
    Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    return cfg.run_dir()


@pytest.fixture(scope="session")
def tagging_run(ewt_root, tmp_path_factory) -> Path:
    """POS tagging, 40 steps on the EWT slice (~5 s)."""
    return _train(tiny_raw(ewt_root, tmp_path_factory.mktemp("runs"), "tagging"))


@pytest.fixture(scope="session")
def sequence_run(tmp_path_factory) -> Path:
    """SST-2 sentiment (sequence head, [CLS] pooling), 30 steps on 600 training sentences."""
    return _train({
        "name": "sequence", "seed": 1, "runs_dir": str(tmp_path_factory.mktemp("runs")),
        "data": {"task": "sst2", "root": str(shared_data()), "dataset": "sst2", "train_limit": 600,
                 "eval_limit": 100, "max_tokens": 600},
        "model": {"embed": {"word_dim": 32, "char_dim": 16, "char_filters": 32},
                  "encoder": {"num_layers": 2, "width": 64, "num_heads": 4, "ffn_dim": 128},
                  "head": {"kind": "sequence", "pooling": "cls"}},
        "train": {"lr": 3e-3, "warmup_steps": 5, "max_steps": 30, "eval_every": 30, "progress": False, "threads": 1},
    })


@pytest.fixture(scope="session")
def translation_run(tmp_path_factory) -> Path:
    """Multi30k de-en, 30 steps on 500 pairs (outputs are poor but real: search, scores, BPE round trip)."""
    from tests.test_seq2seq import COUNTS, FILES, head_lines
    from tests.test_seq2seq import tiny_raw as translation_raw

    root = tmp_path_factory.mktemp("m30k")
    raw_dir = root / "multi30k" / "raw"
    raw_dir.mkdir(parents=True)
    for split, count in COUNTS.items():
        for lang in ("de", "en"):
            name = f"{FILES[split]}.{lang}.gz"
            head_lines(shared_data() / "multi30k" / "raw" / name, raw_dir / name, count)
    raw = translation_raw(root, tmp_path_factory.mktemp("runs"), max_steps=30, eval_every=30)
    raw["data"]["eval_limit"] = 10
    return _train(raw)


@pytest.fixture(scope="session")
def image_run(tmp_path_factory) -> Path:
    """MNIST patches, 10 steps on 256 images: enough for base64 / path image inputs."""
    return _train({
        "name": "image", "seed": 1, "runs_dir": str(tmp_path_factory.mktemp("runs")),
        "data": {"task": "mnist", "root": str(shared_data()), "dataset": "mnist", "train_limit": 256,
                 "eval_limit": 64, "dev_size": 100, "max_tokens": 1024},
        "model": {"encoder": {"num_layers": 1, "width": 32, "num_heads": 2, "ffn_dim": 64},
                  "head": {"kind": "sequence", "pooling": "mean"}},
        "train": {"lr": 3e-3, "warmup_steps": 2, "max_steps": 10, "eval_every": 10, "progress": False, "threads": 1},
    })
