"""Nested, seeded training subsets (data.train_fraction / train_examples) and `attntrain curves`."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import pytest
import yaml

from attntrain import runs, sweep
from attntrain.config import build_config
from attntrain.curves import parse_fractions, run_curves
from attntrain.data import build_task
from attntrain.errors import UserError
from tests.conftest import REPO, cli_env, shared_data, tiny_raw
from tests.test_graph import cora_config


def sst2_config(tmp_path, **data):
    """SST-2 sentences (no phrases), the first 600 training sentences, 100 dev / test."""
    raw = {"name": "sst2", "seed": 1, "runs_dir": str(tmp_path / "runs"),
           "data": {"task": "sst2", "root": str(shared_data()), "dataset": "sst2", "train_limit": 600,
                    "eval_limit": 100, **data}, "model": {"head": {"kind": "sequence"}}}
    return build_config(raw, "test")


def keys(rows) -> list[str]:
    """Each row as text (file position dropped), to compare rows across two reads."""
    return [json.dumps({k: v for k, v in row.items() if k != "_where"}, sort_keys=True, default=str) for row in rows]


def train_rows(cfg) -> list[str]:
    task = build_task(cfg)
    return keys(task.split_raw("train"))


def test_smaller_fractions_are_subsets_of_larger_ones_and_dev_test_stay_whole(tmp_path):
    whole = build_task(sst2_config(tmp_path))
    small, large = (train_rows(sst2_config(tmp_path, train_fraction=f)) for f in (0.03, 0.1))
    assert (len(small), len(large)) == (18, 60)  # round(0.03 * 600), round(0.1 * 600)
    assert set(small) < set(large) < set(keys(whole.split_raw("train")))
    assert train_rows(sst2_config(tmp_path, train_examples=18)) == small  # the same order, counted in examples
    assert train_rows(sst2_config(tmp_path, train_fraction=0.03)) == small  # seeded
    other = train_rows(sst2_config(tmp_path, train_fraction=0.03, subset_seed=7))
    assert other != small and len(other) == 18
    cut = build_task(sst2_config(tmp_path, train_fraction=0.03))
    cut.split_raw("train")
    assert cut.train_subset.fingerprint() == [18, "data.train_fraction 0.03 of 600, seed 1"]
    for split in ("dev", "test"):
        assert keys(cut.split_raw(split)) == keys(whole.split_raw(split))


def test_graph_subsets_count_labelled_train_nodes(tmp_path):
    whole = build_task(cora_config(tmp_path)).node_splits()
    small, large = (build_task(cora_config(tmp_path, train_fraction=f)).node_splits() for f in (0.1, 0.3))
    assert (len(small["train"]), len(large["train"])) == (14, 42)  # of Planetoid's 140 training nodes
    assert set(small["train"]) < set(large["train"]) < set(whole["train"])
    assert small["dev"] == whole["dev"] and small["test"] == whole["test"]


def test_a_subset_with_one_class_is_refused_naming_the_key(tmp_path):
    with pytest.raises(UserError, match=r"data.train_examples: the 1 training examples kept .* two classes"):
        build_task(sst2_config(tmp_path, train_examples=1)).prepare(None)
    with pytest.raises(UserError, match=r"data.train_examples: the 1 training examples kept .* two classes"):
        build_task(cora_config(tmp_path, train_examples=1)).prepare(None)


@pytest.mark.parametrize("data,says", [({"train_fraction": 0}, "data.train_fraction"),
                                        ({"train_fraction": 1.5}, "data.train_fraction"),
                                        ({"train_examples": 0}, "data.train_examples"),
                                        ({"train_fraction": 0.5, "train_examples": 3}, "give one")])
def test_subset_values_out_of_range_are_config_errors(tmp_path, data, says):
    with pytest.raises(UserError, match=says):
        sst2_config(tmp_path, **data)


def test_more_examples_than_train_has_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"data.train_examples: 601 is more than the 600 training examples"):
        build_task(sst2_config(tmp_path, train_examples=601)).split_raw("train")


def test_resume_with_another_subset_is_refused(ewt_root, tmp_path):
    cfg = build_config(tiny_raw(ewt_root, tmp_path / "runs", "sub", max_steps=4, eval_every=2), "test",
                       ["data.train_fraction=0.1"])
    from attntrain.train.checkpoint import RunDir
    from attntrain.train.trainer import Trainer

    Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    saved = json.loads((cfg.run_dir() / "task.json").read_text())["data_fingerprint"]
    assert saved["train"][0] == 40 and saved["train_subset"] == [40, "data.train_fraction 0.1 of 400, seed 3"]
    with pytest.raises(UserError, match=r"the train data changed since this run started \(40 -> 120 examples\)"):
        runs.fit(resume=cfg.run_dir(), overrides=["data.train_fraction=0.3", "train.max_steps=8"])


def write_configs(ewt_root, folder):
    """Two small POS configs that differ in the encoder only: transformer and cnn."""
    paths = []
    for kind in ("transformer", "cnn"):
        raw = tiny_raw(ewt_root, folder / "runs", kind, max_steps=None, max_epochs=1, eval_every=0.5)
        raw["model"]["encoder"]["kind"] = kind
        path = folder / f"pos_{kind}.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        paths.append(str(path))
    return paths


def test_curves_writes_one_line_per_config_and_a_second_call_trains_nothing(ewt_root, tmp_path, monkeypatch):
    configs = write_configs(ewt_root, tmp_path)
    json_path, csv_path, png = run_curves(configs, [0.1, 0.3], name="eff")
    record = json.loads(json_path.read_text())
    assert [line["label"] for line in record["lines"]] == ["transformer", "cnn"]
    assert record["metric"] == "accuracy" and "transformer >= 5 (1/4 of 18)" in record["budget"]
    for line in record["lines"]:
        assert line["full_steps"] == 18 and line["min_steps"] == 5  # 400 sentences: 18 batches, 1 epoch; ceil(18 / 4)
        assert [p["examples"] for p in line["points"]] == [40, 120]
        assert all(0 <= p["test"] <= 100 for p in line["points"])
        assert [p["run"] for p in line["points"]] == [str(tmp_path / "runs" / "eff" / line["label"] / f"frac-{f}")
                                                    for f in ("0.1", "0.3")]
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["config"], r["fraction"], r["examples"]) for r in rows] == [
        ("transformer", "0.1", "40"), ("transformer", "0.3", "120"), ("cnn", "0.1", "40"), ("cnn", "0.3", "120")]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(sweep.runs, "fit", no_training)
    assert json.loads(run_curves(configs, [0.1, 0.3], name="eff")[0].read_text())["lines"] == record["lines"]


@pytest.mark.parametrize("given,says", [(["0"], "0 is outside (0, 1]"), (["1.5"], "1.5 is outside (0, 1]"),
                                        (["abc"], "'abc' is not a number")])
def test_parse_fractions_errors(given, says):
    with pytest.raises(UserError, match=re.escape(says)):
        parse_fractions(given)
    assert parse_fractions(["0.1,0.01", "1", "0.1"]) == [0.01, 0.1, 1.0]


def test_bad_fraction_on_the_command_line_is_one_line_and_exit_2():
    done = subprocess.run([sys.executable, "-m", "attntrain", "curves", "configs/sst2.yaml", "--train-fractions",
                           "0.01", "2"], capture_output=True, text=True, env=cli_env(), cwd=REPO, timeout=120)
    assert done.returncode == 2
    said = ("error: --train-fractions: 2 is outside (0, 1]; a fraction of the training set is above 0 and at most 1 "
            "(1 = all of it)")
    assert done.stderr.strip().splitlines() == [said]


def test_curves_with_seeds_draws_each_seed_on_its_own_subset_with_a_std(ewt_root, tmp_path):
    configs = write_configs(ewt_root, tmp_path)[:1]
    json_path, _, _ = run_curves(configs, [0.1], name="seeded", seeds=2, min_steps=2)
    (point,) = json.loads(json_path.read_text())["lines"][0]["points"]
    assert point["seeds"] == 2 and point["examples"] == 40 and point["test_std"] is not None
    run = tmp_path / "runs" / "seeded" / "transformer" / "frac-0.1"
    subsets = [json.loads((run / f"seed-{k}" / "task.json").read_text())["data_fingerprint"]["train_subset"]
               for k in (3, 4)]
    assert subsets == [[40, "data.train_fraction 0.1 of 400, seed 3"], [40, "data.train_fraction 0.1 of 400, seed 4"]]
