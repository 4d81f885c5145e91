"""`attntrain tune`: trials are ordinary run directories selected on dev (test only for the best), the
pruner stops trials that are clearly worse, and the study in runs/<name>/tune/study.db survives a kill."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from attntrain.config import build_config, load_config
from attntrain.errors import UserError
from attntrain.runlist import list_runs
from tests.conftest import REPO, cli_env

optuna = pytest.importorskip("optuna")

spec = importlib.util.spec_from_file_location("own_data_examples", REPO / "scripts" / "own_data_examples.py")
examples = importlib.util.module_from_spec(spec)
spec.loader.exec_module(examples)


@pytest.fixture(scope="module")
def sentences(tmp_path_factory) -> Path:
    """SST-2 sentences as train/dev/test folders of pos.txt / neg.txt (120 of each split)."""
    return examples.write("sst2_3k", tmp_path_factory.mktemp("own"), limit=120)


def tune_config(tmp_path: Path, sentences: Path, **tune) -> Path:
    """A tiny classifier whose dev loss is the objective; lr 1e-6 learns nothing (a clearly worse trial)."""
    raw = {"name": "search", "runs_dir": str(tmp_path / "runs"),
           "data": {"source": {"format": "text", "files": {split: str(sentences / split / "*.txt")
                                                           for split in ("train", "dev", "test")}},
                    "input": {"field": "text"}, "target": {"field": "label"}, "max_tokens": 400},
           "model": {"embed": {"word_dim": 16}, "head": {"kind": "sequence"},
                     "encoder": {"num_layers": 1, "width": 16, "num_heads": 2, "ffn_dim": 16}},
           "train": {"max_steps": 12, "max_epochs": 100, "eval_every": 2, "warmup_steps": 0, "threads": 1,
                     "progress": False, "metric": "loss", "metric_mode": "min"},
           "tune": {"space": {"train.lr": {"choices": [1.0e-6, 3.0e-3]},
                              "model.encoder.dropout": {"low": 0.0, "high": 0.3}},
                    "sampler": "random", "startup_trials": 1, "warmup_evals": 1, **tune}}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def study_of(runs: Path):
    return optuna.load_study(study_name="search", storage=f"sqlite:///{runs / 'search' / 'tune' / 'study.db'}")


def test_trials_select_on_dev_prune_the_worse_and_a_second_call_adds_trials(tmp_path, sentences):
    from attntrain.tune import tune

    report = tune(tune_config(tmp_path, sentences), trials=4)
    parent = tmp_path / "runs" / "search"
    study = study_of(tmp_path / "runs")
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) >= 1 and states.count(optuna.trial.TrialState.COMPLETE) >= 1
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert any(t.params["train.lr"] == 1.0e-6 for t in pruned)
    best = study.best_trial
    for trial in study.trials:  # every trial is a run directory that trained with dev as its only final split
        folder = parent / f"trial-{trial.number}"
        assert load_config(folder / "config.yaml").train.eval_splits == ["dev"]
        assert (folder / "eval_test.json").is_file() == (trial.number == best.number)  # test: the best only
    best_dir = parent / f"trial-{best.number}"
    assert json.loads((best_dir / "eval_dev.json").read_text())["loss"] == pytest.approx(best.value)
    records = [json.loads(line) for line in (parent / f"trial-{pruned[0].number}" / "metrics.jsonl").open()]
    assert records[-1]["kind"] == "stop" and records[-1]["reason"] == "pruned"
    statuses = {row["name"]: row["status"] for row in list_runs(tmp_path / "runs")}
    assert statuses[f"search/trial-{pruned[0].number}"].startswith("pruned at step")
    assert statuses[f"search/trial-{best.number}"].startswith("finished")
    chosen = yaml.safe_load((parent / "best.yaml").read_text())
    assert "tune" not in chosen and chosen["train"]["lr"] == best.params["train.lr"]
    assert chosen["name"] == "search-best"
    assert (parent / "tune" / "history.png").is_file() and (parent / "tune" / "trials.md").is_file()
    assert f"best: trial {best.number}" in report

    tune(tune_config(tmp_path, sentences), trials=1)  # the same study, one more trial
    again = study_of(tmp_path / "runs").trials
    assert len(again) == len(states) + 1
    assert again[-1].params != again[0].params  # the seeded sampler does not start its stream over
    assert "best: trial" in tune(tune_config(tmp_path, sentences), trials=0)  # report only
    assert len(study_of(tmp_path / "runs").trials) == len(again)


def test_folds_make_the_objective_the_mean_dev_metric(tmp_path):
    from attntrain.tune import tune

    folder = examples.write("sst2_text", tmp_path / "own", limit=240)  # pos.txt / neg.txt, no split
    config = tune_config(tmp_path, folder, pruner="none")
    raw = yaml.safe_load(config.read_text())
    raw["data"]["source"] = {"format": "text", "path": str(folder / "*.txt")}
    raw["tune"]["space"] = {"train.lr": {"choices": [3.0e-3]}}
    config.write_text(yaml.safe_dump(raw))
    tune(config, trials=1, folds=2)
    trial = study_of(tmp_path / "runs").trials[0]
    folds = [tmp_path / "runs" / "search" / "trial-0" / f"fold-{k}" for k in range(2)]
    dev = [json.loads((fold / "eval_dev.json").read_text())["loss"] for fold in folds]
    assert trial.value == pytest.approx(sum(dev) / 2)
    assert all((fold / "eval_test.json").is_file() for fold in folds)  # the best (only) trial's test folds


def test_a_killed_tune_resumes_with_its_finished_trials(tmp_path, sentences):
    config = tune_config(tmp_path, sentences, pruner="none")
    command = [sys.executable, "-m", "attntrain", "tune", str(config), "--trials", "3"]
    env = {**cli_env(), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    parent = tmp_path / "runs" / "search"
    deadline = time.time() + 240
    while not (parent / "trial-1").is_dir() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # no chance to tidy up: trial 1 stays "running" in the database
    process.wait()
    assert (parent / "trial-0" / "eval_dev.json").is_file()
    done = subprocess.run(command[:-1] + ["1"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    study = study_of(tmp_path / "runs")
    complete = [t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 0 in complete and len(complete) >= 2 and len(study.trials) >= 3  # kept trial 0, added one more
    assert "best: trial" in done.stdout


def test_the_search_space_names_real_keys_and_one_kind_of_range(tmp_path):
    with pytest.raises(UserError, match=r"tune.space: 'train.lrr' is not a config key"):
        build_config({"tune": {"space": {"train.lrr": {"low": 1e-4, "high": 1e-2}}}}, "x.yaml")
    with pytest.raises(UserError, match="either choices"):
        build_config({"tune": {"space": {"train.lr": {"low": 1e-4, "high": 1e-2, "choices": [1e-3]}}}}, "x.yaml")
    with pytest.raises(UserError, match="log: true needs low > 0"):
        build_config({"tune": {"space": {"train.lr": {"low": 0, "high": 1e-2, "log": True}}}}, "x.yaml")
    space = build_config({"tune": {"space": {"model.encoder.num_layers": {"low": 1, "high": 4}}}}, "x").tune.space
    assert space["model.encoder.num_layers"].is_int()


def test_a_new_studys_first_trial_is_the_config_as_written(tmp_path, sentences):
    """tune.first_trial: config queues the config's own values, so the search's best dev is never below it."""
    from attntrain.tune import enqueue_config, suggest

    path = tune_config(tmp_path, sentences)
    raw = yaml.safe_load(path.read_text())
    raw["train"]["lr"] = 3.0e-3
    raw["model"]["encoder"]["dropout"] = 0.25
    raw["tune"]["space"]["train.weight_decay"] = {"low": 0.2, "high": 0.3}  # the config's 0.01 lies outside
    cfg = build_config(raw, "search.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    line = enqueue_config(study, cfg)
    assert "2 of 3 keys" in line and "train.weight_decay=0.01" in line
    study.optimize(lambda t: sum(float(suggest(t, k, s)) for k, s in cfg.tune.space.items()), n_trials=2)
    first, second = study.trials[0].params, study.trials[1].params
    assert first["train.lr"] == 3.0e-3 and first["model.encoder.dropout"] == 0.25
    assert 0.2 <= first["train.weight_decay"] <= 0.3  # sampled, as the line said
    assert second["train.lr"] in (1.0e-6, 3.0e-3) and 0.2 <= second["train.weight_decay"] <= 0.3  # drawn
    assert enqueue_config(study, cfg) == ""  # a study with trials gets nothing queued
    from attntrain.config import SearchRange
    from attntrain.tune import in_space

    grid = SearchRange(low=0.1, high=0.5, step=0.2)  # 0.1, 0.3, 0.5
    assert in_space(grid, 0.3) and not in_space(grid, 0.2) and not in_space(grid, 0.7)
    assert not in_space(SearchRange(low=1, high=4), 2.5) and in_space(SearchRange(low=1, high=4), 3)
    raw["tune"]["first_trial"] = "sampled"
    assert enqueue_config(optuna.create_study(), build_config(raw, "search.yaml")) == ""
