"""Shared fixtures: small slices of the real datasets in a temporary data root, tiny configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attntrain.config import build_config
from attntrain.data.root import data_root

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
    root = tmp_path_factory.mktemp("data")
    folder = root / "ud_en_ewt"
    folder.mkdir()
    src = shared_data() / "ud_en_ewt"
    for split, count in (("train", 400), ("dev", 120), ("test", 120)):
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
