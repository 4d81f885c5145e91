"""Real (short) training on a slice of EWT: loss falls, save/load round trip, exact resume."""

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
from safetensors.torch import load_file

from attntrain import runs
from attntrain.train.checkpoint import RunDir
from attntrain.train.trainer import Trainer
from tests.conftest import REPO, cli_env, tiny_raw


def records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.fixture(scope="module")
def trained(ewt_root, tmp_path_factory):
    """One tiny run shared by the tests that only read it."""
    from attntrain.config import build_config

    cfg = build_config(tiny_raw(ewt_root, tmp_path_factory.mktemp("runs"), max_steps=60, eval_every=30), "test")
    result = Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    return cfg, result


def test_loss_falls_and_tagging_is_learned(trained):
    cfg, result = trained
    losses = [r["loss"] for r in records(cfg.run_dir(), "train")]
    assert len(losses) == 12
    assert losses[-1] < 0.6 * losses[0]
    # 17 tags; the most frequent (NOUN) is ~17% of tokens. 60 small steps already get far past that.
    assert result.metrics["dev"]["accuracy"] > 50.0
    assert set(result.metrics) == {"dev", "test"}
    start = records(cfg.run_dir(), "start")[0]
    assert 0.0 <= start["padding_fraction"] < 0.3


def test_run_directory_holds_everything_to_rebuild(trained):
    cfg, _ = trained
    run = RunDir(cfg.run_dir())
    for path in (run.config, run.task_state, run.metrics, run.best, run.eval_file("test")):
        assert path.is_file(), path
    assert yaml.safe_load(run.config.read_text())["model"]["encoder"]["width"] == 64
    assert run.latest() is not None and (run.latest() / "model.safetensors").is_file()


def test_save_load_gives_identical_predictions(trained):
    cfg, result = trained
    metrics = runs.eval_run(cfg.run_dir(), "test")
    for key in ("accuracy", "oov_accuracy", "loss"):
        assert metrics[key] == pytest.approx(result.metrics["test"][key], abs=1e-9)
    _, task, model, _ = runs.load_run(cfg.run_dir())
    sentences = ["The quick brown fox jumps over the lazy dog .", "I don't like it !", ""]
    first = list(runs.predict(cfg.run_dir(), sentences))
    assert first == list(runs.predict(cfg.run_dir(), sentences))
    assert first[2] == ""
    assert first[1].split() [:3] == ["I/" + first[1].split()[0].split("/")[1], "do/" + first[1].split()[1].split("/")[1],
                                      "n't/" + first[1].split()[2].split("/")[1]]
    tags = [pair.rsplit("/", 1)[1] for pair in first[0].split()]
    assert len(tags) == 10 and set(tags) <= set(task.labels.items)


def fit_cli(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "attntrain", "fit", *args], cwd=REPO, env=env or cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(RunDir(run_dir).latest() / "model.safetensors"))


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_interrupted_then_resumed_equals_uninterrupted(ewt_root, tmp_path, how):
    config = tmp_path / "tiny.yaml"
    # The SIGTERM variant also averages weights (train.ema): the average must survive the restart too.
    ema = 0.9 if how == "sigterm" else None
    config.write_text(yaml.safe_dump(tiny_raw(ewt_root, tmp_path / "runs", max_steps=60, eval_every=10,
                                              log_every=1, ema=ema)))
    straight = fit_cli(str(config), "--set", "name=straight")
    out, err = straight.communicate(timeout=600)
    assert straight.returncode == 0, err

    broken_dir = tmp_path / "runs" / "broken"
    broken = fit_cli(str(config), "--set", "name=broken")
    if how == "sigterm":  # interrupt mid-run, between checkpoints: the handler saves one
        wait_for(lambda: (broken_dir / "metrics.jsonl").is_file() and len(records(broken_dir, "train")) >= 15)
        broken.send_signal(signal.SIGTERM)
        _, err = broken.communicate(timeout=120)
        assert broken.returncode == 130, err
        assert "resume with: attntrain fit --resume" in err
        assert records(broken_dir, "stop")[-1]["reason"] == "interrupt"  # metrics.jsonl says why it ended
    else:  # kill -9 after a checkpoint: no handler runs, the last checkpoint must do
        wait_for(lambda: RunDir(broken_dir).latest() is not None and len(records(broken_dir, "train")) >= 25)
        broken.kill()
        broken.communicate(timeout=60)
    stopped_at = torch.load(RunDir(broken_dir).latest() / "trainer.pt", weights_only=True)["progress"]["step"]
    assert 0 < stopped_at < 60

    resumed = fit_cli("--resume", str(broken_dir))
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err

    a, b = final_weights(tmp_path / "runs" / "straight"), final_weights(broken_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    strip = lambda rs: [(r["step"], r["loss"]) for r in rs]  # noqa: E731
    assert strip(records(broken_dir, "train")) == strip(records(tmp_path / "runs" / "straight", "train"))
    assert records(broken_dir, "stop")[-1]["reason"] == "max_steps"
    test_a = json.loads((tmp_path / "runs" / "straight" / "eval_test.json").read_text())
    test_b = json.loads((broken_dir / "eval_test.json").read_text())
    assert test_a["accuracy"] == test_b["accuracy"]


def test_tensorboard_scalars_match_metrics_jsonl(tiny_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config("tb", max_steps=10, eval_every=5, tensorboard=True)
    Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    events = EventAccumulator(str(cfg.run_dir() / "tensorboard"))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    expected = [(r["step"], r["loss"]) for r in records(cfg.run_dir(), "train")]
    assert [s for s, _ in logged] == [s for s, _ in expected] == [5, 10]
    assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)
    dev = [r["accuracy"] for r in records(cfg.run_dir(), "eval")]
    assert [e.value for e in events.Scalars("eval_dev/accuracy")] == pytest.approx(dev, rel=1e-6)
    assert "final_test/accuracy" in events.Tags()["scalars"]


def test_tensorboard_missing_is_a_clear_error(monkeypatch):
    from attntrain.errors import UserError
    from attntrain.train.trainer import open_tensorboard

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(UserError, match=r"pip install 'attntrain\[tensorboard\]'"):
        open_tensorboard(Path("unused"))


def test_ema_weights_are_evaluated_and_kept_as_best(tiny_config):
    cfg = tiny_config("ema", max_steps=20, eval_every=20, ema=0.9)
    trainer = Trainer(cfg, RunDir(cfg.run_dir()), resume=False)
    trainer.fit()
    run = RunDir(cfg.run_dir())
    best, raw = load_file(str(run.best)), load_file(str(run.latest() / "model.safetensors"))
    ema = torch.load(run.latest() / "trainer.pt", weights_only=True)["ema"]
    names = list(best)
    assert any(not torch.equal(best[k], raw[k]) for k in names)  # the average is not the last weights
    model_names = [n for n, _ in trainer.model.named_parameters()]
    for name, tensor in zip(model_names, ema):
        torch.testing.assert_close(best[name], tensor)


def test_resume_may_switch_weight_averaging_on(tiny_config):
    """A run trained without train.ema, resumed with it: the average starts from the resumed weights."""
    plain = tiny_config("switch", max_steps=10, eval_every=10)
    Trainer(plain, RunDir(plain.run_dir()), resume=False).fit()
    averaged = tiny_config("switch", max_steps=20, eval_every=10, ema=0.9)
    trainer = Trainer(averaged, RunDir(averaged.run_dir()), resume=True)
    assert trainer.progress.step == 10
    for average, weight in zip(trainer.ema, trainer.model.parameters()):
        torch.testing.assert_close(average, weight.detach())
    assert trainer.fit().step == 20


def test_unknown_eval_split_is_reported_before_training(tiny_config):
    from attntrain.errors import UserError

    cfg = tiny_config("splits", eval_splits=["dev", "validation"])
    with pytest.raises(UserError, match="train.eval_splits: unknown split 'validation'; this task has train, dev, test"):
        Trainer(cfg, RunDir(cfg.run_dir()), resume=False)
    assert not (cfg.run_dir() / "metrics.jsonl").exists()


def test_beam_is_refused_for_runs_that_do_not_search(tiny_config):
    from attntrain.errors import UserError

    cfg = tiny_config("nobeam", max_steps=2, eval_every=2)
    Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    with pytest.raises(UserError, match="--beam: only seq2seq runs search .* model.head.kind 'tagging'"):
        runs.eval_run(cfg.run_dir(), "test", beam=2)


def test_existing_run_directory_is_not_overwritten(ewt_root, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_raw(ewt_root, tmp_path / "runs", max_steps=2, eval_every=2)))
    assert fit_cli(str(config)).wait(timeout=300) == 0
    curves = tmp_path / "runs" / "tiny" / "learning_curves.png"
    assert curves.is_file() and curves.read_bytes()[:4] == b"\x89PNG"
    again = fit_cli(str(config))
    _, err = again.communicate(timeout=300)
    assert again.returncode == 2
    assert "already exists" in err and "--resume" in err


def cli(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attntrain", *args], cwd=REPO, env=cli_env(), input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_cli_eval_predict_compare_attention(trained, tmp_path):
    cfg, result = trained
    run_dir = str(cfg.run_dir())
    evaluated = cli("eval", run_dir, "--split", "dev")
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"{result.metrics['dev']['accuracy']:.2f}" in evaluated.stdout
    assert json.loads((cfg.run_dir() / "eval_dev.json").read_text())["accuracy"] == result.metrics["dev"]["accuracy"]

    lines = "The cat sat .\n\nDogs bark !\n"
    from_stdin = cli("predict", run_dir, stdin=lines)
    path = tmp_path / "in.txt"
    path.write_text(lines)
    from_file = cli("predict", run_dir, "--file", str(path))
    assert from_stdin.returncode == 0 and from_stdin.stdout == from_file.stdout
    out = from_stdin.stdout.split("\n")
    assert [len(line.split()) for line in out[:3]] == [4, 0, 3]
    assert out[0].startswith("The/") and out[2].startswith("Dogs/")

    compared = cli("compare", run_dir, "--out", str(tmp_path / "cmp"))
    assert compared.returncode == 0, compared.stderr
    assert f"{result.metrics['test']['accuracy']:.2f}" in compared.stdout
    assert (tmp_path / "cmp.csv").read_text().count("\n") >= 2

    png = tmp_path / "a.png"
    drawn = cli("attention", run_dir, "The cat sat .", "--layer", "1", "--head", "0", "--out", str(png))
    assert drawn.returncode == 0, drawn.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = cli("attention", run_dir, "The cat sat .", "--layer", "7")
    assert bad.returncode == 2 and "valid: 0..1" in bad.stderr
