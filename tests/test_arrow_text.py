"""Text splits of the generic task in Arrow (attntrain.data.tasks.generic): batches made from the cached encoded
split equal encoding each example on its own (conllu, conll, labeled_lines and csv sources), and a split is
encoded once, read again by a later task, and encoded anew when a setting changes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from attntrain.config import build_config
from attntrain.data import build_task
from attntrain.data.sources.arrow import ArrowExamples
from tests.conftest import head_sentences, shared_data


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A data root with slices of UD English-EWT (conllu), WNUT-17 (conll) and SST-2 (labeled lines, csv)."""
    root = tmp_path_factory.mktemp("data")
    for folder, names in (("ud_en_ewt", {f"en_ewt-ud-{s}.conllu": 150 for s in ("train", "dev", "test")}),
                          ("wnut17", {"wnut17train.conll": 1200, "emerging.dev.conll": 150,
                                      "emerging.test.annotated": 150})):  # train holds every dev tag
        (root / folder).mkdir()
        for name, count in names.items():
            head_sentences(shared_data() / folder / name, root / folder / name, count)
    (root / "sst2").mkdir()
    for split in ("train", "dev", "test"):
        kim = shared_data() / "sst2" / "stsa_binary" / f"stsa.binary.{split}"
        lines = kim.read_text(encoding="utf-8").splitlines()
        with open(root / "sst2" / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["label", "text"])
            out.writerows(line.split(" ", 1) for line in lines[:200])
    return root


EMBED = {"word_dim": 16, "char_dim": 8, "char_filters": 8, "shape_dim": 4}


def raw_config(root: Path, kind: str, **data) -> dict:
    presets = {
        "conllu": {"task": "ud_pos", "dataset": "ud_en_ewt", "root": str(root)},
        "conll": {"task": "wnut17", "dataset": "wnut17", "root": str(root)},
        "labeled_lines": {"task": "sst2", "dataset": "sst2", "train_limit": 300, "eval_limit": 200},
        "csv": {"source": {"format": "csv",
                           "files": {s: str(root / "sst2" / f"{s}.csv") for s in ("train", "dev", "test")}},
                "input": {"field": "text", "tokenizer": "whitespace"}, "target": {"field": "label"}},
    }
    head = "tagging" if kind in ("conllu", "conll") else "sequence"
    return {"name": "arrow-text", "data": {**presets[kind], "max_len": 12, **data},
            "model": {"embed": EMBED, "head": {"kind": head}}}


def task_for(root: Path, kind: str, **data):
    task = build_task(build_config(raw_config(root, kind, **data), "test"))
    task.prepare()
    return task


def same_batch(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", ["conllu", "conll", "labeled_lines", "csv"])
def test_batches_from_arrow_equal_encoding_each_example(root, kind, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNTRAIN_CACHE", str(tmp_path / "cache"))
    task = task_for(root, kind, truncate="head_tail")
    assert any(len(task.encode(row, max_len=None)["words"]) > 12 for row in task.split_raw("train"))  # caps matter
    for split in ("train", "dev"):
        encoded, raw = task.split(split), task.split_raw(split)
        assert isinstance(encoded, ArrowExamples) and len(encoded) == len(raw)
        max_len = 12 if split == "train" else task.eval_max_len()
        each = [task.encode(row, max_len=max_len) for row in raw]
        assert task.lengths(split) == [item["length"] for item in each]
        for indices in task.batches(split, shuffle=split == "train")[:6]:
            assert same_batch(task.batch(split, indices), task.collate([each[i] for i in indices]))


def encoded_files(cache: Path) -> list[Path]:
    return sorted((cache / "encoded").glob("text-*.arrow"))


def test_encoded_once_and_a_changed_setting_never_reads_a_stale_cache(root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ATTNTRAIN_CACHE", str(cache))
    first = task_for(root, "conll")
    first.split("train"), first.split("dev")
    files = encoded_files(cache)
    assert len(files) == 2
    again = task_for(root, "conll")
    assert same_batch(again.batch("dev", [3, 1]), first.batch("dev", [3, 1]))
    assert encoded_files(cache) == files  # read, not encoded again
    other = task_for(root, "conll", max_len=8)
    other.split("train")
    assert len(encoded_files(cache)) == 3  # train is capped differently: a new file
    assert other.split("train")[0]["words"].shape[0] <= 8
    lower = build_task(build_config(raw_config(root, "conll"), "test", ["model.embed.lowercase=false"]))
    lower.prepare()
    lower.split("train"), lower.split("dev")
    assert len(encoded_files(cache)) == 5  # another vocabulary: both splits encoded anew


def test_a_damaged_cache_file_is_encoded_again(root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ATTNTRAIN_CACHE", str(cache))
    first = task_for(root, "conll")
    expected = first.batch("dev", [0, 2])
    [path] = encoded_files(cache)
    path.write_bytes(path.read_bytes()[:100])  # a write cut short
    again = task_for(root, "conll")
    assert same_batch(again.batch("dev", [0, 2]), expected)
    assert encoded_files(cache) == [path] and path.stat().st_size > 100  # written anew, whole
