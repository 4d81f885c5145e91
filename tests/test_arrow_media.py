"""Audio and image splits of the generic task in Arrow (attntrain.data.tasks.generic): examples made from the cached
decoded split equal encoding each row on its own (FSDD wavs, MNIST IDX, an RGB imagefolder), a later task reads
the cache without decoding a file, and a changed setting, an edited file or a damaged cache file is decoded anew."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from attntrain.config import build_config
from attntrain.data import build_task
from attntrain.data.sources.arrow import ArrowExamples
from attntrain.data.inputs.kinds import AudioInput, ImageInput, unit_pixels
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A data root: FSDD recordings 0-13 of two speakers (copies, so a test may touch one) and 40 MNIST PNGs
    (RGB, two classes) as an imagefolder; MNIST IDX is read from the real root."""
    root = tmp_path_factory.mktemp("media")
    recordings = root / "fsdd" / "recordings"
    recordings.mkdir(parents=True)
    for digit in range(10):
        for speaker in ("jackson", "theo"):
            for index in range(14):  # 0-4 test, 5-9 dev, 10-13 train
                name = f"{digit}_{speaker}_{index}.wav"
                shutil.copy(shared_data() / "fsdd" / "recordings" / name, recordings / name)
    from PIL import Image

    from attntrain.data.inputs.images import read_idx

    images = read_idx(next((shared_data() / "mnist").glob("t10k-images*")))
    for i in range(40):
        folder = root / "pngs" / ("train" if i < 30 else "test") / str(i % 2)
        folder.mkdir(parents=True, exist_ok=True)
        gray = images[i].numpy()
        Image.fromarray(np.stack([gray, gray // 2, 255 - gray], -1)).save(folder / f"{i}.png")
    return root


def raw_config(root: Path, kind: str, **data) -> dict:
    presets = {
        "fsdd": {"task": "fsdd", "dataset": "fsdd", "root": str(root), "max_len": 60},
        "fsdd_mfcc": {"task": "fsdd", "dataset": "fsdd", "root": str(root), "label": "speaker",
                      "audio": {"features": "mfcc", "n_mels": 20, "n_mfcc": 8}},
        "mnist": {"task": "mnist", "dataset": "mnist", "train_limit": 200, "dev_size": 60, "eval_limit": 60},
        "idx_resized": {"dataset": "mnist", "input": {"field": "image", "kind": "image"}, "target": {"field": "label"},
                        "source": {"format": "idx", "files": {"train": "train-*-ubyte*", "test": "t10k-*-ubyte*"}},
                        "split": {"dev": 30}, "train_limit": 100, "eval_limit": 30, "image": {"size": [20, 20]},
                        "patch": 5},  # the mnist preset fixes 28x28; its files as a user's source may be resized
        "imagefolder": {"source": {"format": "imagefolder", "path": str(root / "pngs")},
                        "input": {"field": "path", "kind": "image"}, "target": {"field": "label"},
                        "image": {"size": [24, 24]}, "patch": 4, "split": {"dev": 0.2}},
    }
    return {"name": "arrow-media", "data": {**presets[kind], **data}, "model": {"head": {"kind": "sequence"}}}


def task_for(root: Path, kind: str, **data):
    task = build_task(build_config(raw_config(root, kind, **data), "test"))
    task.prepare()
    return task


def same_item(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and a["length"] == b["length"] and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a if k != "length")


def cached_files(cache: Path) -> set[str]:
    return {p.name for p in (cache / "encoded").glob("*.arrow")} if (cache / "encoded").is_dir() else set()


@pytest.mark.parametrize("kind", ["fsdd", "fsdd_mfcc", "mnist", "idx_resized", "imagefolder"])
def test_examples_from_arrow_equal_encoding_each_row(root, kind, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNTRAIN_CACHE", str(tmp_path / "cache"))
    task = task_for(root, kind)
    for split in task.splits:
        encoded, raw = task.split(split), task.split_raw(split)
        assert isinstance(encoded, ArrowExamples) and len(encoded) == len(raw)
        max_len = task.cfg.data.max_len if split == "train" else task.eval_max_len()
        each = [task.encode(row, max_len=max_len) for row in raw]
        assert task.lengths(split) == [item["length"] for item in each]
        assert all(same_item(made, one) for made, one in zip(encoded, each))
        indices = task.batches(split, shuffle=split == "train")[0]
        batch, expected = task.batch(split, indices), task.collate([each[i] for i in indices])
        assert batch.keys() == expected.keys() and all(torch.equal(batch[k], expected[k]) for k in batch)
    if kind == "fsdd":  # 14 recordings of which 0-4 test: some train ones are longer than max_len
        assert max(task.lengths("train")) == 60
    if kind.startswith("fsdd") or task.cfg.data.image.mean is None:  # measured, not declared: the statistics from the cached decode equal statistics from decoding every train row again
        again = type(task.input_kind)(task.cfg.data, task.cfg.model.embed)
        again.prepare(task.split_raw("train"), None)
        assert torch.equal(again.mean, task.input_kind.mean) and torch.equal(again.std, task.input_kind.std)


@pytest.mark.parametrize("kind", ["fsdd", "mnist", "imagefolder"])
def test_a_later_task_reads_the_cache_without_decoding(root, kind, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNTRAIN_CACHE", str(tmp_path / "cache"))
    first = task_for(root, kind)
    made = {split: list(first.split(split)) for split in first.splits}
    files = cached_files(tmp_path / "cache")
    assert len(files) == len(first.splits)
    decoded = []
    for kind_class in (AudioInput, ImageInput):
        def counted(self, value, decode=kind_class.decode):
            decoded.append(value)
            return decode(self, value)

        monkeypatch.setattr(kind_class, "decode", counted)
    second = task_for(root, kind)
    assert second.state() == first.state()
    for split in first.splits:
        assert all(same_item(a, b) for a, b in zip(second.split(split), made[split]))
    assert len(decoded) == (0 if kind == "fsdd" else 1)  # images: the first one, read for its channel count
    assert cached_files(tmp_path / "cache") == files


def test_a_changed_setting_or_edited_file_is_decoded_anew(root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ATTNTRAIN_CACHE", str(cache))
    task_for(root, "fsdd").split("train")
    before = cached_files(cache)  # train (decoded in prepare for the statistics)
    task_for(root, "fsdd", audio={"n_mels": 32}).split("train")
    after_setting = cached_files(cache)
    assert len(after_setting) == len(before) + 1
    task_for(root, "fsdd", max_len=30).split("train")  # max_len is applied when an example is made: same file
    assert cached_files(cache) == after_setting

    wav = root / "fsdd" / "recordings" / "3_theo_12.wav"  # a train recording, replaced by another one
    original = wav.read_bytes()
    try:
        shutil.copy(root / "fsdd" / "recordings" / "3_theo_13.wav", wav)
        task = task_for(root, "fsdd")
        assert len(cached_files(cache)) == len(after_setting) + 1
        index = next(i for i, row in enumerate(task.split_raw("train")) if row["path"].endswith("3_theo_12.wav"))
        assert same_item(task.split("train")[index], task.encode(task.split_raw("train")[index], max_len=60))
    finally:
        wav.write_bytes(original)

    task_for(root, "idx_resized").split("train")
    images = cached_files(cache)
    task_for(root, "idx_resized", image={"size": [14, 14]}, patch=7).split("train")
    assert len(cached_files(cache)) == len(images) + 1


def test_a_damaged_cache_file_is_decoded_again(root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ATTNTRAIN_CACHE", str(cache))
    task = task_for(root, "mnist")
    expected = list(task.split("train"))
    [path] = [cache / "encoded" / name for name in cached_files(cache)]
    path.write_bytes(path.read_bytes()[:1000])  # cut short, as by a crash
    again = task_for(root, "mnist")
    assert all(same_item(a, b) for a, b in zip(again.split("train"), expected))
    assert path.stat().st_size > 1000  # written anew


def test_8bit_pixels_scale_as_the_image_reader_scales_them():
    """The cache keeps 8-bit pixels; torch's x / 255 equals numpy's float32 quotient (the image reader's) for
    every byte, at every vector width, so an image made from the cache is the same float32 tensor."""
    values = np.arange(256, dtype=np.uint8)
    for size in (1, 7, 16, 33, 256, 4099):
        pixels = np.resize(values, size)
        assert torch.equal(unit_pixels(torch.from_numpy(pixels)),
                           torch.from_numpy(pixels.astype(np.float32) / 255.0))
