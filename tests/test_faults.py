"""Faults a user (or the machine) causes: each ends in one message naming the culprit, a known exit
code and no traceback. The concurrent-fit, NaN and resume-loss cases are real short runs."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from attntrain.config import build_config
from attntrain.train.checkpoint import RunDir
from attntrain.train.lock import RunLock
from attntrain.train.trainer import Trainer
from tests.conftest import REPO, cli_env, shared_data, tiny_raw


def cli(*args, stdin: bytes | None = None, env=None, prefix=()) -> subprocess.CompletedProcess:
    out = subprocess.run([*prefix, sys.executable, "-m", "attntrain", *args], cwd=REPO, env=env or cli_env(),
                         input=stdin, capture_output=True, timeout=600)
    out.stdout, out.stderr = out.stdout.decode("utf-8", "replace"), out.stderr.decode("utf-8", "replace")
    return out


def refused(result: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    """Exit code `code`, one error naming every needle, no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr[-2000:])


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def write_config(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def trained(ewt_root, tmp_path_factory) -> Path:
    """A finished tiny tagging run; tests damage copies of it."""
    cfg = build_config(tiny_raw(ewt_root, tmp_path_factory.mktemp("runs"), "done", max_steps=10, eval_every=5), "t")
    Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    return cfg.run_dir()


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    copy = tmp_path / "runs" / "copy"
    shutil.copytree(trained, copy)
    return copy


# ---- one run per directory ------------------------------------------------------------------

def test_second_fit_on_a_locked_run_stops_at_once_naming_the_holder(ewt_root, tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_raw(ewt_root, tmp_path / "runs", "same", max_steps=400,
                                                        eval_every=400))
    first = subprocess.Popen([sys.executable, "-m", "attntrain", "fit", str(config)], cwd=REPO, env=cli_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "runs" / "same" / ".lock"
    try:
        deadline = __import__("time").time() + 120
        while not (lock.is_file() and f"pid={first.pid}" in lock.read_text()):
            assert first.poll() is None and __import__("time").time() < deadline, first.stderr.read()
        second = cli("fit", str(config))
        refused(second, 2, "runs/same is in use by another attntrain process", f"PID {first.pid}")
        metrics = tmp_path / "runs" / "same" / "metrics.jsonl"
        while not (metrics.is_file() and '"start"' in metrics.read_text()):  # training (and its signal handler) began
            assert first.poll() is None and __import__("time").time() < deadline, first.stderr.read()
    finally:
        first.terminate()
        first.communicate(timeout=120)
    assert first.returncode == 130  # SIGTERM: saved and stopped; the second process never wrote a line
    assert [r["kind"] for r in records(tmp_path / "runs" / "same")].count("start") == 1
    assert not lock.exists()  # released on exit


def test_lock_of_a_dead_process_is_taken_over_and_a_live_one_refused(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_text("pid=999999999\nhost=elsewhere\n")  # left behind by a killed process
    with RunLock(folder):
        assert f"pid={os.getpid()}" in (folder / ".lock").read_text()
        with pytest.raises(Exception, match=f"in use by another attntrain process \\(PID {os.getpid()}"):
            RunLock(folder).acquire()
    assert not (folder / ".lock").exists()


# ---- non-finite loss --------------------------------------------------------------------------

def test_nan_loss_stops_with_exit_3_and_keeps_finite_best(ewt_root, tmp_path):
    raw = tiny_raw(ewt_root, tmp_path / "runs", "nan", max_steps=60, eval_every=1, log_every=1, lr=1e6,
                   warmup_steps=0, max_nonfinite=3)
    result = cli("fit", str(write_config(tmp_path / "nan.yaml", raw)))
    refused(result, 3, "training diverged: 3 consecutive steps with a non-finite loss", "lower train.lr")
    run = tmp_path / "runs" / "nan"
    strict = [json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.jsonl"))
              for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert strict[-1]["kind"] == "stop" and strict[-1]["skipped"] >= 3
    logged = [r["skipped"] for r in strict if r["kind"] == "train"]
    assert 0 < sum(logged) < strict[-1]["skipped"]  # the stopping step's window is not logged as train
    if (run / "best.safetensors").is_file():
        assert "best.safetensors keeps the best finite weights" in result.stderr
        assert all(torch.isfinite(t).all() for t in load_file(str(run / "best.safetensors")).values())
    else:
        assert "there is no best.safetensors" in result.stderr


def test_nonfinite_steps_are_skipped_not_applied(tiny_config, monkeypatch):
    """Two NaN losses in a row (below train.max_nonfinite) change no weight; training goes on."""
    cfg = tiny_config("skip", max_steps=8, eval_every=8, log_every=4, max_nonfinite=3)
    trainer = Trainer(cfg, RunDir(cfg.run_dir()), resume=False)
    forward, seen = trainer.model.forward, {}

    def poisoned(batch):
        out = forward(batch)
        step = trainer.progress.step
        if trainer.model.training and step in (4, 5):
            seen.setdefault(step, [p.detach().clone() for p in trainer.model.parameters()])
            out = {**out, "loss": out["loss"] * float("nan")}
        if trainer.model.training and step == 6:
            seen.setdefault(step, [p.detach().clone() for p in trainer.model.parameters()])
        return out

    monkeypatch.setattr(trainer.model, "forward", poisoned)
    result = trainer.fit()
    assert result.stopped == "finished" and trainer.progress.skipped == 2
    for before, after in zip(seen[4], seen[6]):
        assert torch.equal(before, after)
    train = [r for r in records(cfg.run_dir()) if r["kind"] == "train"]
    assert [(r["step"], r["skipped"]) for r in train] == [(4, 0), (8, 2)]
    assert all(r["loss"] is not None for r in train)


# ---- resume: the logged loss of the window the resume falls in ----------------------------------

def test_resumed_window_logs_the_same_loss_as_uninterrupted(tiny_config, monkeypatch):
    import attntrain.train.trainer as trainer_module

    straight = tiny_config("straight", max_steps=12, eval_every=5, log_every=4)
    Trainer(straight, RunDir(straight.run_dir()), resume=False).fit()

    class StopAtStep6(trainer_module.StopFlag):  # as SIGTERM after step 6, inside the window 5..8
        @property
        def requested(self):
            return "SIGTERM" if current.progress.step == 6 else None

        @requested.setter
        def requested(self, value):
            pass

    broken = tiny_config("broken", max_steps=12, eval_every=5, log_every=4)
    monkeypatch.setattr(trainer_module, "StopFlag", StopAtStep6)
    current = Trainer(broken, RunDir(broken.run_dir()), resume=False)
    assert current.fit().stopped == "SIGTERM"
    monkeypatch.undo()
    current = Trainer(broken, RunDir(broken.run_dir()), resume=True)
    assert current.progress.step == 6 and current.progress.window_steps == 2
    current.fit()
    pick = lambda run: [(r["step"], r["loss"]) for r in records(run) if r["kind"] == "train"]  # noqa: E731
    assert [s for s, _ in pick(broken.run_dir())] == [4, 8, 12]
    assert pick(broken.run_dir()) == pick(straight.run_dir())  # exact, also the window 5..8


# ---- the command line ---------------------------------------------------------------------------

@pytest.mark.parametrize("args, needle", [(["fit", "--nosuch"], "No such option: --nosuch"),
                                          (["eval"], "Missing argument")])
def test_usage_errors_print_one_message(args, needle):
    refused(cli(*args), 2, needle)


def test_non_utf8_text_names_file_line_and_column(run_copy, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_bytes(b"name: x\nseed: \xff1\n")
    refused(cli("validate", str(config)), 2, f"{config}:2:7: not UTF-8 text (byte 0xff)")
    inputs = tmp_path / "in.txt"
    inputs.write_bytes(b"fine line\nbad \xe9t\xe9\n")
    refused(cli("predict", str(run_copy), "--file", str(inputs)), 2, f"{inputs}:2:5: not UTF-8")
    refused(cli("predict", str(run_copy), stdin=b"ok\n\xc3(\n"), 2, "<stdin>:2:1: not UTF-8")
    metrics = run_copy / "metrics.jsonl"
    lines = metrics.read_bytes().splitlines(keepends=True)
    metrics.write_bytes(b"".join(lines[:2] + [b'{"kind": "train", "lo\n'] + lines[2:]))
    refused(cli("compare", str(run_copy), "--out", str(tmp_path / "cmp")), 2, f"{metrics}:3: not a JSON record")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _foreign_weights(path: Path) -> None:
    save_file({"something.else": torch.zeros(3)}, str(path))


def _narrower_config(run: Path) -> None:
    raw = yaml.safe_load((run / "config.yaml").read_text())
    raw["model"]["encoder"]["ffn_dim"] = 96
    (run / "config.yaml").write_text(yaml.safe_dump(raw))


DAMAGE = {  # case -> (damage(run), command, words the message must hold)
    "truncated best": (lambda r: _truncate(r / "best.safetensors"), "eval",
                       ["best.safetensors: not a readable safetensors file", "--checkpoint"]),
    "foreign best": (lambda r: _foreign_weights(r / "best.safetensors"), "eval",
                     ["best.safetensors: these weights do not fit the model", "--checkpoint"]),
    "config edited": (_narrower_config, "eval", ["do not fit the model built from config.yaml", "--overwrite"]),
    "truncated task.json": (lambda r: _truncate(r / "task.json"), "eval", ["task.json: not a readable JSON file"]),
    "foreign task.json": (lambda r: (r / "task.json").write_text('{"classes": [1, 2]}'), "eval",
                          ["task.json: does not fit this run's config.yaml"]),
    "truncated checkpoint weights": (lambda r: _truncate(RunDir(r).latest() / "model.safetensors"), "resume",
                                     ["model.safetensors: not a readable safetensors", "attntrain eval {run}`"]),
    "truncated trainer.pt": (lambda r: _truncate(RunDir(r).latest() / "trainer.pt"), "resume",
                             ["trainer.pt: not a readable trainer state", "--overwrite"]),
    "foreign trainer.pt": (lambda r: torch.save({"x": 1}, RunDir(r).latest() / "trainer.pt"), "resume",
                           ["trainer.pt: not a readable trainer state (not a trainer state: expected"]),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_run_files_name_the_file_and_what_to_do(run_copy, case):
    damage, command, needles = DAMAGE[case]
    damage(run_copy)
    args = ["eval", str(run_copy)] if command == "eval" else ["fit", "--resume", str(run_copy),
                                                               "--set", "train.max_steps=12"]
    refused(cli(*args), 2, *(needle.format(run=run_copy) for needle in needles))


def mount_namespace(script: str) -> list[str] | None:
    """A command prefix that runs the command after `script` (mounts) in a private mount namespace."""
    if shutil.which("unshare") is None:
        return None
    flags = ["-m"] if os.geteuid() == 0 else ["-rm"]
    probe = subprocess.run(["unshare", *flags, "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    return ["unshare", *flags, "sh", "-c", script + ' && exec "$@"', "sh"]


def test_read_only_run_directory_fails_before_evaluating(run_copy):
    prefix = mount_namespace(f"mount --bind -o ro '{run_copy}' '{run_copy}'")
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare)")
    result = cli("eval", str(run_copy), "--split", "dev", prefix=prefix)
    refused(result, 2, f"{run_copy}: cannot write here (Read-only file system)")
    assert "eval dev" not in result.stderr  # no progress bar: nothing was computed


def test_full_disk_says_no_space(ewt_root, tmp_path):
    runs = tmp_path / "small"
    runs.mkdir()
    prefix = mount_namespace(f"mount -t tmpfs -o size=300k tmpfs '{runs}'")
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare)")
    config = write_config(tmp_path / "c.yaml", tiny_raw(ewt_root, runs, "full", max_steps=4, eval_every=2))
    refused(cli("fit", str(config), prefix=prefix), 2, "No space left on device", "no space left: free some space")


def test_disk_full_in_process_is_one_line(monkeypatch, capsys, tmp_path):
    import attntrain.cli as cli_module

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "runs" / "x" / "config.yaml"))

    monkeypatch.setattr(cli_module, "app", full)
    with pytest.raises(SystemExit) as exit_:
        cli_module.main()
    assert exit_.value.code == 2
    assert "config.yaml: No space left on device (no space left" in capsys.readouterr().err


def test_validate_checks_data_choices_and_refuses_an_empty_config(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    refused(cli("validate", str(empty)), 2, f"{empty}: empty config")
    pos, fsdd, mt = (str(REPO / "configs" / n) for n in ("pos_ewt.yaml", "fsdd_digit.yaml", "multi30k_quick.yaml"))
    refused(cli("validate", pos, "--set", "data.dataset=ud_en_ewtt"), 2, "data.dataset: dataset 'ud_en_ewtt' not found")
    refused(cli("validate", pos, "--set", "train.metric=f1"), 2, "train.metric: 'f1'", "accuracy, oov_accuracy, loss")
    refused(cli("validate", pos, "--set", "data.label=upos"), 2, "data.label: task ud_pos has a single label")
    refused(cli("validate", fsdd, "--set", "data.label=digits"), 2, "data.label: 'digits' (did you mean 'digit'?)")
    refused(cli("validate", fsdd, "--set", "train.metric=bleu"), 2, "sequence head", "accuracy, macro_f1, loss")
    refused(cli("validate", mt, "--set", "data.translation.target=english"), 2,
            "data.translation.target: no '*.english.gz' files", "languages there: de, en, fr")
    refused(cli("validate", mt, "--set", "train.metric=accuracy"), 2, "bleu, bleu_lc, chrf, loss")


def test_truncated_wav_is_refused(tmp_path):
    from attntrain.data.inputs.audio import read_wav
    from attntrain.errors import UserError

    wav = tmp_path / "7_theo_3.wav"
    whole = (shared_data() / "fsdd" / "recordings" / "7_theo_3.wav").read_bytes()
    wav.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError, match=f"{wav}: truncated WAV file \\({len(whole) // 2} of the {len(whole)} bytes"):
        read_wav(wav, 8000)
    assert read_wav(shared_data() / "fsdd" / "recordings" / "7_theo_3.wav", 8000).shape[0] > 0


def test_predict_tags_every_word_of_a_very_long_line(run_copy, tmp_path):
    words = ("The cat sat on the mat . " * 2000).split()  # 14,000 words: 55 windows of data.max_len 256
    line = tmp_path / "long.txt"
    line.write_text(" ".join(words) + "\nDogs bark .\n")
    result = cli("predict", str(run_copy), "--file", str(line))
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert len(out) == 2 and len(out[1].split()) == 3
    tagged = out[0].split()
    assert [pair.rsplit("/", 1)[0] for pair in tagged] == words  # every word, none cut off
