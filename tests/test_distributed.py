"""Data-parallel training with several CPU processes (gloo): same losses and metrics as one process,
exact metrics on splits that do not divide evenly, resume across process counts, stops and failures."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from attntrain.config import build_config
from attntrain.errors import UserError
from attntrain.train import distributed
from attntrain.train.checkpoint import RunDir
from attntrain.train.trainer import Trainer
from tests.conftest import REPO, cli_env, tiny_raw

STEPS = 50


def records(run_dir: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def fit_cli(*args) -> subprocess.Popen:
    env = {**cli_env(), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "attntrain", "fit", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def setup(ewt_root, tmp_path_factory):
    """A config without dropout (so one and two processes draw no different masks), 117 dev/test
    sentences in small evaluation batches (an odd count of them), and its one-process run."""
    folder = tmp_path_factory.mktemp("dist")
    raw = tiny_raw(ewt_root, folder / "runs", max_steps=STEPS, eval_every=18, log_every=1)
    raw["data"].update(eval_limit=117, eval_max_tokens=300)
    raw["model"]["embed"].update(word_dropout=0.0, dropout=0.0)
    raw["model"]["encoder"]["dropout"] = 0.0
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    code, err = finish(fit_cli(str(config), "--set", "name=one"))
    assert code == 0, err
    return config, folder / "runs"


def assert_same_run(a: Path, b: Path) -> None:
    """Per-step training losses within 1e-4 (relative) and the same dev/test metrics."""
    loss_a = {r["step"]: r["loss"] for r in records(a, "train")}
    loss_b = {r["step"]: r["loss"] for r in records(b, "train")}
    assert sorted(loss_a) == sorted(loss_b) == list(range(1, STEPS + 1))
    worst = max(abs(loss_a[s] - loss_b[s]) / abs(loss_a[s]) for s in loss_a)
    assert worst <= 1e-4, worst
    for split in ("dev", "test"):
        ma, mb = (json.loads((run / f"eval_{split}.json").read_text()) for run in (a, b))
        assert ma["tokens"] == mb["tokens"] and ma["oov_tokens"] == mb["oov_tokens"]
        assert ma["accuracy"] == pytest.approx(mb["accuracy"], abs=0.1)  # a near-tie may flip one token
        assert ma["loss"] == pytest.approx(mb["loss"], rel=1e-4)


def test_two_processes_train_like_one(setup):
    config, runs = setup
    code, err = finish(fit_cli(str(config), "--set", "name=two", "--nproc", "2"))
    assert code == 0, err
    assert_same_run(runs / "one", runs / "two")
    # Exact evaluation (tokens equal above) over an odd number of batches: the processes ran 4 and 3 of them.
    from attntrain.data import build_task

    task = build_task(build_config(yaml.safe_load(config.read_text()), str(config)))
    task.prepare(json.loads((runs / "one" / "task.json").read_text()))
    assert len(task.batches("dev", shuffle=False)) % 2 == 1
    assert json.loads((runs / "two" / "eval_dev.json").read_text())["tokens"] == sum(task.lengths("dev"))
    # Rank 0 alone wrote the run files: one start record, one train record per step.
    assert len(records(runs / "two", "start")) == 1 and len(records(runs / "two", "train")) == STEPS
    assert (runs / "two" / "learning_curves.png").is_file()


def test_resume_with_another_process_count(setup):
    """Two processes stop early, one finishes the run; and the reverse. Both equal the one-process run.

    The runs train with a constant learning rate, so a first part of 36 steps (an evaluation step, eval_every
    18) resumed with train.max_steps 50 follows the same schedule as 50 steps straight.
    """
    config, runs = setup
    constant = ("--set", "train.schedule=constant")
    code, err = finish(fit_cli(str(config), "--set", "name=one_constant", *constant))
    assert code == 0, err
    for name, first, then in (("two_one", ["--nproc", "2"], []), ("one_two", [], ["--nproc", "2"])):
        code, err = finish(fit_cli(str(config), "--set", f"name={name}", *constant, "--set", "train.max_steps=36",
                                   *first))
        assert code == 0, err
        step = torch.load(RunDir(runs / name).latest() / "trainer.pt", weights_only=True)["progress"]["step"]
        assert step == 36
        code, err = finish(fit_cli("--resume", str(runs / name), "--set", f"train.max_steps={STEPS}", *then))
        assert code == 0, err
        assert_same_run(runs / "one_constant", runs / name)


def test_ctrl_c_stops_every_process_and_resumes(setup):
    config, runs = setup
    run = runs / "stopped"
    process = fit_cli(str(config), "--set", "name=stopped", "--set", "train.max_steps=5000", "--nproc", "2")
    wait_for(lambda: (run / "metrics.jsonl").is_file() and len(records(run, "train")) >= 5)
    process.send_signal(signal.SIGINT)  # Ctrl-C reaches the launcher, which passes it on
    code, err = finish(process, timeout=120)
    assert code == 130, err
    assert "stopped by SIGINT" in err and "resume with: attntrain fit --resume" in err
    step = torch.load(RunDir(run).latest() / "trainer.pt", weights_only=True)["progress"]["step"]
    assert records(run, "train")[-1]["step"] == step  # saved at the step where both processes stopped
    code, err = finish(fit_cli("--resume", str(run), "--set", f"train.max_steps={step + 3}", "--nproc", "2"))
    assert code == 0, err
    assert records(run, "train")[-1]["step"] == step + 3


def test_a_dying_process_stops_the_others(setup):
    config, runs = setup
    run = runs / "dying"
    process = fit_cli(str(config), "--set", "name=dying", "--set", "train.max_steps=5000", "--set", "train.save_every=5",
                      "--nproc", "2")
    wait_for(lambda: RunDir(run).latest() is not None)
    workers = subprocess.run(["pgrep", "-f", "--", "--set=name=dying"], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2
    subprocess.run(["kill", "-9", workers[-1]])
    code, err = finish(process, timeout=120)  # no hang
    assert code == 1, err
    assert "another process of this run stopped" in err or "failed (signal SIGKILL)" in err
    assert f"attntrain fit --resume {run}" in err
    step = torch.load(RunDir(run).latest() / "trainer.pt", weights_only=True)["progress"]["step"]
    code, err = finish(fit_cli("--resume", str(run), "--set", f"train.max_steps={step + 2}"))
    assert code == 0, err


def test_seeds_under_several_processes(setup):
    config, runs = setup
    code, err = finish(fit_cli(str(config), "--set", "name=seeds", "--set", "train.max_steps=4", "--seeds", "2",
                               "--nproc", "2"))
    assert code == 0, err
    summary = json.loads((runs / "seeds" / "summary.json").read_text())
    assert summary["seeds"] == [3, 4] and "test mean" in summary["summary"]


# ---- bad input -------------------------------------------------------------------------------------
def test_nccl_on_cpu_is_one_clear_error(setup):
    config, _ = setup
    code, err = finish(fit_cli(str(config), "--set", "name=nccl", "--set", "train.backend=nccl", "--nproc", "2"))
    assert code == 2
    assert err.strip().splitlines() == [err.strip().splitlines()[0]] and "train.backend: nccl needs CUDA" in err


def test_more_processes_than_cores_or_gpus(monkeypatch, tiny_config):
    cfg = tiny_config()
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert distributed.check_launch(2, cfg.train) == []
    assert "3 but 2 CPU core(s)" in distributed.check_launch(3, cfg.train)[0]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UserError, match="4 processes per machine but 2 GPU"):
        distributed.check_launch(4, cfg.train)
    with pytest.raises(UserError, match="names one GPU"):
        distributed.check_launch(2, cfg.train.model_copy(update={"device": "cuda:1"}))


def test_resume_with_a_breaking_config_change_names_the_key(setup):
    _, runs = setup
    from attntrain.runs import run_config

    for override, named in (("model.encoder.width=48", "changed since it was saved: model.encoder.width 64 -> 48"), ("data.max_tokens=300", "data.max_tokens")):
        cfg = run_config(runs / "one", [override])
        with pytest.raises(UserError, match=named):
            Trainer(cfg, RunDir(runs / "one"), resume=True)
    saved = (runs / "one" / "config.yaml").read_text()  # the failed resumes left it alone
    assert "width: 64" in saved and "max_tokens: 600" in saved


# ---- meters ----------------------------------------------------------------------------------------
def _sync_worker(rank: int, world: int, init: str, out: str) -> None:
    """One of two gloo processes: fill meters with this rank's share of fixed data, sum them."""
    import torch.distributed as dist

    from attntrain.model.bleu import TranslationMeter
    from attntrain.model.heads import IGNORE, SequenceMeter, TaggingMeter
    from attntrain.model.seq2seq import Seq2seqOutput

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.manual_seed(0)
    logits, labels = torch.randn(7, 5, 4), torch.randint(0, 4, (7, 5))
    labels[:, 3:] = IGNORE
    batches = distributed.shard(list(range(7)))  # 7 one-example batches: ranks get 4 and 3
    tagging, sequence = TaggingMeter(tags=["O", "B-X", "I-X", "B-Y"], scheme="iob2"), SequenceMeter(4)
    translation = TranslationMeter(lambda ids: " ".join(map(str, ids)), None)
    for i in batches:
        tagging.update(logits[i:i + 1], {"labels": labels[i:i + 1], "mask": labels[i:i + 1] != IGNORE},
                       torch.tensor(0.5 + i))
        sequence.update(logits[i:i + 1, 0], {"labels": labels[i:i + 1, 0]}, torch.tensor(1.0 * i))
        translation.update(Seq2seqOutput(tokens=[[i, i + 1]], beam=4), {"indices": [i], "references": [f"{i} {i + 1}"]})
    results = {}
    for name, meter in (("tagging", tagging), ("sequence", sequence), ("translation", translation)):
        distributed.sync_meter(meter)
        results[name] = distributed.compute_on_main(meter)
    results["hypotheses"] = [translation.hypotheses[i] for i in sorted(translation.hypotheses)]
    Path(out.format(rank)).write_text(json.dumps(results))
    dist.destroy_process_group()


def test_meters_summed_over_processes_equal_one_meter(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "rank{}.json")
    mp.spawn(_sync_worker, args=(2, f"file://{tmp_path / 'store'}", out), nprocs=2)
    import torch.distributed as dist

    single = str(tmp_path / "single{}.json")  # the same worker alone is the reference
    _sync_worker(0, 1, f"file://{tmp_path / 'store1'}", single)
    assert not dist.is_initialized()
    reference = json.loads(Path(single.format(0)).read_text())
    reference_types = reference["tagging"].pop("per_type")
    for rank in (0, 1):
        got = json.loads(Path(out.format(rank)).read_text())
        per_type = got["tagging"].pop("per_type")
        assert per_type == reference_types and per_type  # entity counts from all ranks
        assert got["tagging"] == pytest.approx(reference["tagging"]) and "f1" in got["tagging"]
        assert got["sequence"] == pytest.approx(reference["sequence"])
        assert got["translation"]["bleu"] == pytest.approx(reference["translation"]["bleu"])
        assert got["translation"]["sentences"] == 7 and got["translation"]["beam"] == 4
        assert got["hypotheses"] == reference["hypotheses"] == [f"{i} {i + 1}" for i in range(7)]
