"""Examples in memory-mapped Arrow (attntrain.data.sources.arrow): a translation split read from parallel text is
encoded once into a cached file, batches equal encoding each example on its own, a changed setting or
file never reads a stale cache, and bad lines are named by file:line."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from attntrain.config import build_config
from attntrain.data import build_task
from attntrain.data.sources.arrow import ArrowExamples, ArrowRows
from attntrain.data.tasks.translation import FILES
from attntrain.errors import UserError
from tests.conftest import shared_data

COUNTS = {"train": 300, "dev": 30, "test": 30}


@pytest.fixture(scope="module")
def parallel(tmp_path_factory) -> Path:
    """Plain line-aligned files {train,val,test_2016_flickr}.{de,en}: the first pairs of Multi30k."""
    folder = tmp_path_factory.mktemp("parallel")
    for split, count in COUNTS.items():
        for lang in ("de", "en"):
            with gzip.open(shared_data() / "multi30k" / "raw" / f"{FILES[split]}.{lang}.gz", "rt", encoding="utf-8") as f:
                lines = [next(f) for _ in range(count)]
            (folder / f"{FILES[split]}.{lang}").write_text("".join(lines), encoding="utf-8")
    return folder


def task_for(folder: Path, **translation):
    raw = {"name": "arrow", "data": {"source": {"format": "parallel", "languages": ["de", "en"],
                                                "files": {s: str(folder / stem) for s, stem in FILES.items()}},
                                     "input": {"field": "de"}, "target": {"field": "en"}, "max_len": 20,
                                     "translation": {"vocab_size": 400, **translation}},
           "model": {"head": {"kind": "seq2seq"}}}
    task = build_task(build_config(raw, "test"))
    task.prepare()
    return task


def files(cache: Path, kind: str) -> list[Path]:
    return sorted((cache / kind).glob("*")) if (cache / kind).is_dir() else []


def same_batch(a: dict, b: dict) -> bool:
    a = {k: v for k, v in a.items() if k not in ("indices", "split")}  # what Seq2seqTask.batch adds to collate's
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


def test_batches_from_arrow_equal_encoding_each_example(parallel, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNTRAIN_CACHE", str(tmp_path / "cache"))
    task = task_for(parallel)
    for split in ("train", "dev"):
        encoded, raw = task.split(split), task.split_raw(split)
        assert isinstance(encoded, ArrowExamples) and isinstance(raw, ArrowRows) and len(encoded) == COUNTS[split]
        max_len = 20 if split == "train" else None  # training targets are capped; dev keeps every subword
        indices = [5, 0, 17, 3]
        assert same_batch(task.batch(split, indices), task.collate([task.encode(raw[i], max_len=max_len) for i in indices]))
        assert task.lengths(split) == [task.encode(ex, max_len=max_len)["length"] for ex in raw]
    assert any(length > 20 for length in (len(task.encode(ex, max_len=None)["target"]) for ex in task.split_raw("train")))


def test_encoded_once_and_a_changed_setting_never_reads_a_stale_cache(parallel, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ATTNTRAIN_CACHE", str(cache))
    first = task_for(parallel)
    first.split("dev")
    encoded, learned = files(cache, "encoded"), files(cache, "subwords")
    assert len(encoded) == 2 and len(learned) == 1  # train (encoded by prepare) and dev; one vocabulary
    again = task_for(parallel)
    again.split("dev")
    assert files(cache, "encoded") == encoded and files(cache, "subwords") == learned  # found, not redone
    assert again.source.to_json() == first.source.to_json() and again.output_ids == first.output_ids
    other = task_for(parallel, vocab_size=500)
    assert len(files(cache, "encoded")) == 3 and len(files(cache, "subwords")) == 2
    assert len(other.source) == 500
    raw = other.split_raw("train")
    assert other.split("train")[7]["target"].tolist() == other.target.encode(" ".join(raw[7]["target"].split()))[:20]


def copy_of(parallel: Path, folder: Path) -> Path:
    """The parallel files copied into `folder`, for a test to edit."""
    folder.mkdir()
    for path in parallel.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def test_an_edited_file_is_read_again(parallel, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNTRAIN_CACHE", str(tmp_path / "cache"))
    folder = copy_of(parallel, tmp_path / "copy")
    assert task_for(folder).split_raw("dev")[0]["target"] != "Changed ."
    lines = (folder / "val.en").read_text(encoding="utf-8").split("\n")
    (folder / "val.en").write_text("\n".join(["Changed ."] + lines[1:]), encoding="utf-8")
    assert task_for(folder).split_raw("dev")[0]["target"] == "Changed ."


def test_bad_lines_name_file_and_line(parallel, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNTRAIN_CACHE", str(tmp_path / "cache"))
    folder = copy_of(parallel, tmp_path / "bad")
    data = (folder / "train.de").read_bytes().split(b"\n")
    (folder / "train.de").write_bytes(b"\n".join(data[:2] + [b"caf\xe9"] + data[3:]))
    with pytest.raises(UserError, match=r"train\.de:3:4: not UTF-8"):
        task_for(folder)
    (folder / "train.de").write_bytes(b"\n".join(data[:-2]))
    with pytest.raises(UserError, match=r"train\.en: 300 lines, but .*train\.de has 299"):
        task_for(folder)


def test_vocabulary_sample(parallel, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNTRAIN_CACHE", str(tmp_path / "cache"))
    full = task_for(parallel, vocab_sample=None)  # every pair
    assert task_for(parallel).source.to_json() == full.source.to_json()  # the default sample holds all 300
    assert task_for(parallel, vocab_sample=300).source.to_json() == full.source.to_json()  # the whole of train
    sampled = task_for(parallel, vocab_sample=100)
    assert sampled.source.to_json() != full.source.to_json()
    assert task_for(parallel, vocab_sample=100).source.to_json() == sampled.source.to_json()  # seeded
    assert len(sampled.split("train")) == 300  # only the vocabulary is learned from the sample
