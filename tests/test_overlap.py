"""Held-out inputs that are training inputs too, and one input given two labels in train: said at the start of
a run (one line each), kept in its start record; a clean split says nothing."""

from __future__ import annotations

import csv
import importlib.util
import json

from attntrain.config import build_config
from attntrain.data import build_task
from attntrain.data.tasks.overlap import check_overlap, describe
from attntrain.train.checkpoint import RunDir
from attntrain.train.trainer import Trainer
from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("own_data_examples", REPO / "scripts" / "own_data_examples.py")
examples = importlib.util.module_from_spec(spec)
spec.loader.exec_module(examples)


def rows_of(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def write_rows(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def config(folder, runs):
    return build_config({
        "name": "overlap", "runs_dir": str(runs), "seed": 1,
        "data": {"source": {"format": "csv", "files": {s: str(folder / f"{s}.csv") for s in ("train", "dev", "test")}},
                 "input": {"field": "text"}, "target": {"field": "label"}, "max_tokens": 600},
        "model": {"embed": {"word_dim": 16}, "encoder": {"num_layers": 1, "width": 16, "num_heads": 2, "ffn_dim": 16},
                  "head": {"kind": "sequence"}},
        "train": {"max_steps": 2, "eval_every": 2, "progress": False, "threads": 1}}, "test")


def test_copied_test_rows_and_conflicting_labels_are_said_and_recorded(tmp_path, capfd):
    folder = examples.write("sst2_csv", tmp_path / "own", limit=100)
    train, test = rows_of(folder / "train.csv"), rows_of(folder / "test.csv")
    write_rows(folder / "test.csv", test + train[1:11])  # 10 training sentences copied into test (as a user might)
    flipped = {"positive": "negative", "negative": "positive"}
    write_rows(folder / "train.csv", train + [[train[5][0], flipped[train[5][1]]]])  # row 5 again, other label
    cfg = config(folder, tmp_path / "runs")
    Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    err = capfd.readouterr().err
    assert "warning: 10 of 110 test inputs (9.1%) are training inputs too" in err
    assert f"test.csv:{len(test) + 1} = " in err and "train.csv:2" in err  # file:line of both (line 1: header)
    assert "1 training inputs repeat an earlier one with another label" in err and "train.csv:102" in err
    start = json.loads((cfg.run_dir() / "metrics.jsonl").open().readline())
    checks = {c["check"]: c for c in start["data_checks"]}
    assert checks["held_out_in_train"]["count"] == 10 and checks["held_out_in_train"]["split"] == "test"
    assert checks["train_label_conflicts"]["count"] == 1
    limited = config(folder, tmp_path / "runs")
    limited.data.train_limit = 5  # the rows the run trains on: 5 of the 10 copied sentences
    task = build_task(limited)
    task.prepare(None)
    [found] = task.data_checks
    assert found["count"] == 5 and found["of"] == 110


def test_clean_splits_say_nothing_and_token_lists_compare_as_text():
    train = [{"tokens": ["a", "b"], "_where": "t:1"}, {"tokens": ["c"], "_where": "t:2"}]
    assert check_overlap({"train": train, "dev": [{"tokens": ["a", "c"]}]}, "tokens", None) == []
    found = check_overlap({"train": train, "dev": [{"tokens": ["x"]}, {"tokens": ["a", "b"], "_where": "d:2"}]},
                          "tokens", None)
    assert found == [{"check": "held_out_in_train", "split": "dev", "count": 1, "of": 2, "example": "d:2 = t:1"}]
    assert describe(found[0]).startswith("warning: 1 of 2 dev inputs (50.0%)")
    spaced = [{"text": "a  b\n", "label": 1}, {"text": "a b", "label": "1"}]  # whitespace and 1 / "1" are the same
    assert check_overlap({"train": spaced}, "text", "label") == []


def test_the_shipped_sst2_split_has_two_test_sentences_in_train():
    """A fact of the Kim split the check found (stsa.binary.test:153 is stsa.binary.train:941)."""
    task = build_task(build_config({"data": {"task": "sst2", "dataset": "sst2"},
                                    "model": {"head": {"kind": "sequence"}}}, "preset"))
    task.prepare(None)
    [found] = [c for c in task.data_checks if c["check"] == "held_out_in_train"]
    assert found["split"] == "test" and found["count"] == 2 and "stsa.binary.train:941" in found["example"]


def test_validate_data_reads_checks_and_sizes_without_writing(tmp_path):
    import subprocess
    import sys

    import yaml

    from tests.conftest import cli_env

    folder = examples.write("sst2_csv", tmp_path / "own", limit=60)
    train, test = rows_of(folder / "train.csv"), rows_of(folder / "test.csv")
    write_rows(folder / "test.csv", test + train[1:4])
    cfg = config(folder, tmp_path / "runs")
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    done = subprocess.run([sys.executable, "-m", "attntrain", "validate", str(path), "--data"], capture_output=True,
                          text=True, env={**cli_env(), "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "data: train 60, dev 60, test 63 examples" in done.stdout
    assert "budget: 2 steps" in done.stdout and "parameters" in done.stdout
    assert "warning: 3 of 63 test inputs (4.8%)" not in done.stderr and "note: 3 of 63 test inputs" in done.stderr
    assert not (tmp_path / "runs").exists()  # nothing written
