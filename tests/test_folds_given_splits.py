"""`--folds K` on data that comes with its own splits (train/dev/test files, Planetoid's fixed split): the folds
come from train (fold k is dev, the given test stays test). Until 2026-12-07 night such data silently ignored
data.split.folds, so `tune --folds 3` trained on all of train and scored the one given dev set three times."""

from __future__ import annotations

import importlib.util

import pytest

from attntrain.config import build_config
from attntrain.data.tasks.build import build_task
from attntrain.data.tasks.splits import train_folds
from attntrain.errors import UserError
from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("own_data_examples", REPO / "scripts" / "own_data_examples.py")
examples = importlib.util.module_from_spec(spec)
spec.loader.exec_module(examples)


def texts(task, split: str) -> list[str]:
    return [row["text"] for row in task.split_raw(split)]


def test_folds_of_given_splits_partition_train_into_dev_and_keep_the_test(tmp_path, capfd):
    folder = examples.write("sst2_3k", tmp_path / "own", limit=90)
    data = {"source": {"format": "text", "files": {s: str(folder / s / "*.txt") for s in ("train", "dev", "test")}},
            "input": {"field": "text"}, "target": {"field": "label"}}
    head = {"head": {"kind": "sequence"}}
    whole = build_task(build_config({"data": data, "model": head}, "t"))
    train, test = texts(whole, "train"), texts(whole, "test")
    devs = []
    for fold in range(3):
        task = build_task(build_config({"data": {**data, "split": {"folds": 3, "fold": fold}}, "model": head}, "t"))
        fold_train, fold_dev = texts(task, "train"), texts(task, "dev")
        assert sorted(fold_train + fold_dev) == sorted(train)  # every training row once: trains or is this fold's dev
        assert texts(task, "test") == test and set(fold_dev) <= set(train)  # the given dev takes no part
        assert len(fold_dev) == len(train) // 3
        devs.append(fold_dev)
    assert sorted(sum(devs, [])) == sorted(train)  # the three dev folds partition train
    assert "fold 2 of the given train split is dev, the given dev split is set aside" in capfd.readouterr().err


def test_train_folds_are_seeded_and_checked():
    assert train_folds(10, 3, 1, seed=0) == train_folds(10, 3, 1, seed=0)
    assert train_folds(10, 3, 1, seed=0) != train_folds(10, 3, 1, seed=1)
    with pytest.raises(UserError, match="fold: 3 is not below"):
        train_folds(10, 3, 3, seed=0)
    with pytest.raises(UserError, match="need at least 4 training rows"):
        train_folds(3, 4, 0, seed=0)


def test_planetoid_folds_take_dev_from_its_140_training_nodes():
    whole = build_task(build_config({"data": {"task": "planetoid", "dataset": "cora"}}, "t")).node_splits()
    task = build_task(build_config({"data": {"task": "planetoid", "dataset": "cora",
                                             "split": {"folds": 5, "fold": 0}}}, "t"))
    splits = task.node_splits()
    assert sorted(splits["train"] + splits["dev"]) == sorted(whole["train"]) and len(splits["dev"]) == 28
    assert splits["test"] == whole["test"]


def test_folds_for_translation_are_one_error():
    with pytest.raises(UserError, match="data.split.folds: 3 folds are not made for translation"):
        build_task(build_config({"data": {"task": "translation", "dataset": "multi30k", "split": {"folds": 3}},
                                 "model": {"head": {"kind": "seq2seq"}}}, "t"))
