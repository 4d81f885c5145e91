"""Run-level faults that used to pass silently: an --overwrite that lost the old model, a resume on other data
or of a finished run, budgets that did not mean what they said, runs and compare listings that misread runs,
a NaN best checkpoint, a full disk while checkpointing. Each: exit code, one message, nothing lost."""

from __future__ import annotations

import errno
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from attntrain.compare import summarize_run
from attntrain.errors import UserError
from attntrain.io import writing
from attntrain.runlist import list_runs
from attntrain.runs import PREVIOUS, Stage
from attntrain.train.checkpoint import RunDir
from attntrain.train.trainer import Trainer
from tests.conftest import REPO, ewt_slice, head_sentences, shared_data, tiny_raw
from tests.test_faults import cli, refused, write_config


def records(run_dir: Path, kind: str | None = None) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if kind is None or r["kind"] == kind]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(tmp_path) -> tuple[Path, Path]:
    """(config file, run directory) of a finished tiny tagging run on a data root the test may edit."""
    root = ewt_slice(tmp_path / "data")
    config = write_config(tmp_path / "tiny.yaml", tiny_raw(root, tmp_path / "runs", "tiny", max_steps=6,
                                                           eval_every=3))
    assert cli("fit", str(config)).returncode == 0
    return config, tmp_path / "runs" / "tiny"


# ---- --overwrite and failed fits ----------------------------------------------------------------

def test_overwrite_with_unreadable_data_keeps_the_old_run(finished, tmp_path):
    config, run = finished
    before = snapshot(run)
    broken = ewt_slice(tmp_path / "broken")
    (broken / "ud_en_ewt" / "en_ewt-ud-train.conllu").write_text("1\tonly-one-column\n\n", encoding="utf-8")
    result = cli("fit", str(config), "--overwrite", "--set", f"data.root={broken}")
    refused(result, 2, "en_ewt-ud-train.conllu")
    assert snapshot(run) == before  # the trained model, its figures and metrics: all still there
    assert not (run / PREVIOUS).exists()


def test_overwrite_replaces_the_run_once_the_new_one_is_built(finished):
    config, run = finished
    old_best = (run / "best.safetensors").read_bytes()
    assert cli("fit", str(config), "--overwrite", "--set", "train.max_steps=3", "--set", "seed=9").returncode == 0
    assert (run / "best.safetensors").read_bytes() != old_best
    assert records(run, "stop")[-1]["step"] == 3 and not (run / PREVIOUS).exists()


def test_failed_fresh_fit_leaves_no_run_folder(tmp_path):
    broken = ewt_slice(tmp_path / "broken")
    (broken / "ud_en_ewt" / "en_ewt-ud-train.conllu").write_text("1\tonly-one-column\n\n", encoding="utf-8")
    config = write_config(tmp_path / "c.yaml", tiny_raw(broken, tmp_path / "runs", "fresh"))
    refused(cli("fit", str(config)), 2, "en_ewt-ud-train.conllu")
    assert not (tmp_path / "runs" / "fresh").exists()


def test_overwrite_killed_before_the_new_run_was_built_is_undone_next_time(tmp_path):
    run = tmp_path / "run"
    (run / PREVIOUS).mkdir(parents=True)
    (run / PREVIOUS / "best.safetensors").write_bytes(b"old model")
    (run / "config.yaml").write_text("half of a new run")  # what the killed process had written
    stage = Stage(run)
    with pytest.raises(UserError, match="already exists"):
        stage.begin(overwrite=False)  # the old run is back, and (without --overwrite) kept
    assert (run / "best.safetensors").read_bytes() == b"old model"
    assert not (run / "config.yaml").exists() and not (run / PREVIOUS).exists()


# ---- resume --------------------------------------------------------------------------------------

def test_resume_of_a_finished_run_says_so_and_changes_nothing(finished):
    _, run = finished
    before = (run / "metrics.jsonl").read_bytes()
    refused(cli("fit", "--resume", str(run)), 2, "this run is finished (step 6 of 6)", "train.max_steps=N")
    assert (run / "metrics.jsonl").read_bytes() == before  # no second set of final records


def test_resume_on_changed_data_is_refused_unless_allowed(finished, tmp_path):
    _, run = finished
    train = tmp_path / "data" / "ud_en_ewt" / "en_ewt-ud-train.conllu"
    head_sentences(shared_data() / "ud_en_ewt" / "en_ewt-ud-train.conllu", train, 300)  # 100 sentences fewer
    longer = ("--set", "train.max_steps=8")
    refused(cli("fit", "--resume", str(run), *longer), 2, "the train data changed since this run started",
            "400 -> 300 examples", "--allow-data-change")
    assert records(run, "stop")[-1]["step"] == 6
    assert cli("fit", "--resume", str(run), *longer, "--allow-data-change").returncode == 0
    assert records(run, "stop")[-1]["step"] == 8
    saved = json.loads((run / "task.json").read_text())["data_fingerprint"]
    assert saved["train"][0] == 300  # the data it now trains on


def test_a_change_in_a_list_valued_field_is_seen_and_an_old_fingerprint_still_resumes(tmp_path):
    """Lists in an example (raw words, nested ids) are hashed since `"hash": 2`; before, only tensors and scalars."""
    from types import SimpleNamespace

    from attntrain.train.fingerprint import check_same_data, data_fingerprint

    def task(words):
        rows = [{"ids": torch.tensor([i, i + 1]), "label": i % 2, "words": list(words[i])} for i in range(len(words))]
        return SimpleNamespace(splits=["train"], split=lambda name: rows, train_subset=None)

    before = task([["a", "b"], ["c", "d"]])
    after = task([["a", "b"], ["c", "X"]])  # only the list differs
    saved = data_fingerprint(before)
    assert saved["hash"] == 2
    with pytest.raises(UserError, match="same number of examples, other content"):
        check_same_data(saved, after, tmp_path, allow_change=False)
    check_same_data(saved, before, tmp_path, allow_change=False)  # the same data passes
    old = data_fingerprint(before, lists=False)
    old.pop("hash", None)  # as a run saved before lists were hashed
    check_same_data(old, after, tmp_path, allow_change=False)  # checked the old way: not refused for the new hash


# ---- budgets and why a run stopped ------------------------------------------------------------------

def fit_tiny(tiny_config, name: str, **train) -> tuple[Trainer, list[dict]]:
    cfg = tiny_config(name, **train)
    trainer = Trainer(cfg, RunDir(cfg.run_dir()), resume=False)
    result = trainer.fit()
    stops = records(cfg.run_dir(), "stop")
    assert len(stops) == 1 and result.reason == stops[0]["detail"]
    return trainer, stops


def test_max_steps_overrides_max_epochs(tiny_config):
    trainer, stops = fit_tiny(tiny_config, "epochs", max_epochs=1, max_steps=None)
    per_epoch = trainer.budget().per_epoch
    assert stops[0]["reason"] == "max_epochs" and stops[0]["step"] == per_epoch
    trainer, stops = fit_tiny(tiny_config, "steps", max_epochs=1, max_steps=2 * per_epoch + 1)
    assert stops[0]["reason"] == "max_steps" and stops[0]["step"] == 2 * per_epoch + 1  # not cut at one epoch


def test_min_steps_extends_a_short_run_and_max_steps_still_caps(tiny_config):
    trainer, stops = fit_tiny(tiny_config, "min", max_epochs=1, max_steps=None, min_steps=20)
    assert trainer.budget().per_epoch < 20
    assert stops[0]["reason"] == "min_steps" and stops[0]["step"] == 20
    trainer, stops = fit_tiny(tiny_config, "capped", max_epochs=1, max_steps=7, min_steps=20)
    assert stops[0]["reason"] == "max_steps" and stops[0]["step"] == 7


def test_patience_stop_names_the_best_step(tiny_config):
    # lr 1e-9 learns nothing: dev accuracy never improves on the first evaluation
    _, stops = fit_tiny(tiny_config, "patient", lr=1e-9, warmup_steps=0, eval_every=2, max_steps=40, patience=2)
    assert stops[0]["reason"] == "patience" and stops[0]["step"] == 6
    assert stops[0]["best_step"] == 2 and "train.patience" in stops[0]["detail"]


def test_few_steps_are_warned_about(tiny_config):
    from attntrain.train.schedule import resolve

    cfg = tiny_config(max_steps=None, max_epochs=2)
    assert any("train.min_steps" in w for w in resolve(cfg.train, 12).warnings)
    assert not resolve(tiny_config(max_steps=12).train, 12).warnings  # an explicit step budget is meant


def test_an_ema_horizon_the_ramp_cannot_reach_is_warned_about(tiny_config):
    """The average's span grows as ~1/9 of the steps so far: 0.3 and 0.1125 of a 1,624-step run are the same
    average at every step (so 0.3 warns), while 0.05 is honoured at the end."""
    from attntrain.train.schedule import ema_decay, resolve

    long, ramp_end, short = (resolve(tiny_config(max_steps=1624, ema_horizon=h).train, 1624) for h in (0.3, 0.1125, 0.05))
    assert any("reaches only ~182" in w and "ema_horizon" in w for w in long.warnings)
    assert not ramp_end.warnings and not short.warnings
    assert all(ema_decay(long.ema, s) == ema_decay(ramp_end.ema, s) for s in range(1625))
    assert ema_decay(short.ema, 1600) == short.ema < (1 + 1600) / (10 + 1600)


@pytest.mark.parametrize("name,steps,before", [("sst2", 1624, 0.30788), ("sst2_pretrained", 1624, 0.30788),
                                               ("imdb", 1312, 0.3811)])
def test_the_recipes_new_ema_horizon_is_the_average_their_figures_were_made_with(name, steps, before):
    """docs/tasks.md: the recipes' 0.1125 acts as their old setting did, step for step, over their own runs."""
    from attntrain.config import load_config
    from attntrain.train.schedule import ema_decay, resolve

    train = load_config(str(REPO / "configs" / f"{name}.yaml")).train
    now = resolve(train, steps)
    old = resolve(train.model_copy(update={"ema_horizon": before}), steps)
    assert not now.warnings and all(ema_decay(now.ema, s) == ema_decay(old.ema, s) for s in range(steps + 1))


def test_nan_dev_loss_is_never_kept_as_best(tiny_config, monkeypatch):
    import attntrain.train.trainer as trainer_module

    cfg = tiny_config(max_steps=4, eval_every=2)
    trainer = Trainer(cfg, RunDir(cfg.run_dir()), resume=False)
    monkeypatch.setattr(trainer_module, "evaluate", lambda *a, **k: {"accuracy": 50.0, "loss": math.nan})
    assert trainer._evaluate_dev() is False
    assert trainer.progress.best is None and not RunDir(cfg.run_dir()).best.exists()


def test_full_disk_while_checkpointing_names_the_file(tmp_path, monkeypatch):
    """torch.save reports a full disk as a RuntimeError from inline_container.cc: it becomes ENOSPC naming the
    checkpoint file, even though the checkpoint's folder does not exist yet (it is renamed into place)."""
    import attntrain.io as io

    monkeypatch.setattr(io.shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(10, 10, 0))
    target = tmp_path / "runs" / "r" / "checkpoints" / "step-00000004" / "trainer.pt"
    with pytest.raises(OSError) as error, writing(target):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(target)


# ---- runs and compare, as a user reads them -------------------------------------------------------

def fake_run(folder: Path, metrics: list[dict], *, config: str | None = None, test: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(config if config is not None else yaml.safe_dump(
        {"data": {"task": "ud_pos"}, "train": {"metric": "accuracy"}}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    if test is not None:
        (folder / "eval_test.json").write_text(json.dumps(test))
    return folder


def test_runs_lists_interrupted_folds_and_damaged_runs_as_they_are(tmp_path):
    runs = tmp_path / "runs"
    start = {"kind": "start", "step": 0, "parameters": 10}
    # interrupted at step 14 (before its first log line), then evaluated with `attntrain eval`
    fake_run(runs / "cut", [start, {"kind": "eval", "split": "dev", "step": 10, "accuracy": 61.0},
                            {"kind": "stop", "reason": "interrupt", "step": 14}], test={"accuracy": 60.0})
    fake_run(runs / "cv" / "fold-0", [start, {"kind": "stop", "reason": "max_epochs", "step": 30},
                                      {"kind": "final", "split": "test", "step": 30, "accuracy": 70.0}],
             test={"accuracy": 70.0})
    fake_run(runs / "broken", [start], config="data: [unclosed")
    rows = {row["name"]: row for row in list_runs(runs)}
    assert rows["cut"]["status"] == "stopped at step 14 (interrupt)" and rows["cut"]["best_dev"] == 61.0
    assert rows["cv/fold-0"]["status"] == "finished (max_epochs)"
    assert rows["broken"]["status"].startswith("unreadable:") and "config.yaml" in rows["broken"]["status"]
    result = cli("runs", str(runs))
    assert result.returncode == 0 and "cv/fold-0" in result.stdout and "broken" in result.stdout


def test_compare_shows_the_dev_metric_and_stop_of_an_interrupted_run_and_names_folds(tmp_path):
    runs = tmp_path / "runs"
    cut = fake_run(runs / "cut", [{"kind": "eval", "split": "dev", "step": 10, "accuracy": 61.0},
                                  {"kind": "eval", "split": "dev", "step": 20, "accuracy": 58.0},
                                  {"kind": "stop", "reason": "interrupt", "step": 24}])
    fold = fake_run(runs / "cv" / "fold-2", [{"kind": "stop", "reason": "patience", "step": 30}])
    row = summarize_run(cut)
    assert row["dev"] == {"accuracy": 61.0} and row["stopped"] == "interrupt"
    assert summarize_run(fold)["name"] == "cv/fold-2"


# ---- predictions, export, serve, predict --------------------------------------------------------

def test_predictions_file_carries_input_and_gold(sequence_run, tmp_path):
    run = tmp_path / "sequence"
    shutil.copytree(sequence_run, run)
    assert cli("eval", str(run), "--split", "dev", "--save-predictions").returncode == 0
    lines = [json.loads(line) for line in (run / "predictions_dev.jsonl").read_text().splitlines()]
    first = lines[0]
    assert isinstance(first["input"], str) and first["input"]  # the sentence as the data has it
    assert first["gold"] in ("0", "1", "negative", "positive") and "label" in first
    eval_dev = json.loads((run / "eval_dev.json").read_text())
    correct = sum(line["gold"] == line["label"] for line in lines)
    assert correct / len(lines) * 100 == pytest.approx(eval_dev["accuracy"])  # gold is what was scored


def test_export_of_a_graph_run_is_refused_in_one_line(tmp_path):
    result = cli("fit", "configs/cora_gat.yaml", "--set", f"runs_dir={tmp_path}", "--set", "train.max_steps=2",
                 "--set", "train.seeds=1", "--set", "train.progress=false", "--set", "train.threads=1")
    assert result.returncode == 0, result.stderr[-2000:]
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    refused(cli("export", str(run)), 2, "graph runs are not exported")


def test_serve_refuses_a_busy_port_before_loading(tagging_run):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = cli("serve", str(tagging_run), "--port", str(port))
    refused(result, 2, f"--port {port}", "another program")
    assert "serving" not in result.stdout


def test_deeply_nested_request_is_a_400():
    from attntrain.serve import RequestError, parse_body

    with pytest.raises(RequestError) as error:
        parse_body(b"[" * 100_000 + b"]" * 100_000)
    assert error.value.status == 400


def test_info_names_own_data_not_the_default_preset():
    from attntrain.compare import data_label
    from attntrain.config import Config

    cfg = Config.model_validate({"data": {"source": {"format": "csv", "path": "reviews.csv"},
                                          "input": {"field": "text"}, "target": {"field": "label"}}})
    assert data_label(cfg.data.model_dump(mode="json")) == "csv files"


def test_predict_takes_the_checkpoint_it_advises(tagging_run):
    result = cli("predict", str(tagging_run), "The dog barks .", "--checkpoint", "last", "--set",
                 "model.head.decode=argmax")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.split()) >= 4
    refused(cli("predict", str(tagging_run), "x", "--checkpoint", str(tagging_run / "nope.safetensors")), 2,
            "nope.safetensors")


def test_validate_checks_a_config_as_fit_folds_would_run_it():
    result = cli("validate", "configs/own/sst2_text.yaml", "--folds", "10")
    assert result.returncode == 0 and ": ok" in result.stdout, result.stderr[-2000:]
    refused(cli("validate", "configs/own/sst2_text.yaml", "--folds", "1"), 2, "--folds")
