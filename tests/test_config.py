"""Config loading: every user mistake is one clear message naming the key, and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from attntrain.config import load_config
from attntrain.errors import UserError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def validate(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attntrain", "validate", str(path), *extra],
                          capture_output=True, text=True, cwd=REPO)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert cfg.name == path.stem or cfg.name
    first = path.read_text().splitlines()[0]
    runs = (f"attntrain {command} {path.relative_to(REPO)}" for command in ("fit", "pretrain", "tune"))
    assert first.startswith("# ") and any(run in first for run in runs), \
        f"{path.name} must open with the command that runs it"


def test_configs_exist():
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize(
    "text, expected",
    [
        ("model:\n  encoder:\n    num_haeds: 4\n", "unknown key 'model.encoder.num_haeds' (did you mean 'num_heads'?)"),
        ("trian:\n  lr: 0.1\n", "unknown key 'trian' (did you mean 'train'?)"),
        ("model:\n  encoder:\n    num_layers: two\n", "model.encoder.num_layers: Input should be a valid integer"),
        ("train:\n  lr: -1\n", "train.lr: Input should be greater than 0"),
        ("model:\n  encoder:\n    num_heads: 3\n", "model.encoder.num_heads: must divide width=256"),
        ("model:\n  encoder:\n    attention:\n      score: dott\n",
         "model.encoder.attention.score: unknown choice 'dott' (did you mean 'dot'?); valid: additive, dot"),
        ("model:\n  encoder:\n    position: rotery\n", "did you mean 'rotary'?"),
        ("data: [1, 2]\n", "'data' must be a mapping"),
        ("model:\n  encoder: {num_layers: 2\n", "c.yaml:3: invalid YAML"),
    ],
)
def test_config_errors_are_one_clear_message_and_exit_2(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_config(path)
    assert expected in str(err.value)
    result = validate(path)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_config_file(tmp_path):
    result = validate(tmp_path / "nope.yaml")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: config file not found: {tmp_path / 'nope.yaml'}"


def test_overrides_set_typed_values_and_reject_unknown_keys(tmp_path):
    path = write(tmp_path, "model:\n  encoder:\n    num_layers: 3\n")
    cfg = load_config(path, ["model.encoder.num_layers=1", "train.lr=2e-4", "name=trial2", "train.patience=null"])
    assert cfg.model.encoder.num_layers == 1 and cfg.train.lr == 2e-4 and cfg.name == "trial2"
    assert cfg.train.patience is None
    with pytest.raises(UserError, match=r"unknown key 'model.encodr' \(did you mean 'encoder'\?\)"):
        load_config(path, ["model.encodr.num_layers=1"])
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        load_config(path, ["model.encoder.num_layers"])
    result = validate(path, "--set", "train.max_epochs=0")
    assert result.returncode == 2 and "train.max_epochs: Input should be greater than or equal to 1" in result.stderr


def test_name_defaults_to_file_stem(tmp_path):
    path = tmp_path / "my_trial.yaml"
    path.write_text("seed: 2\n")
    assert load_config(path).name == "my_trial"


@pytest.mark.parametrize("name,warmup,every", [("pos_ewt", 300, 250), ("pos_ewt_quick", 50, 100)])
def test_schedule_fractions_land_on_the_steps_of_the_published_runs(name, warmup, every):
    """The shipped fractions resolve, on the real EWT training split, to the absolute steps the README runs used."""
    from attntrain.data import build_task
    from attntrain.train.schedule import budget, resolve, steps_per_epoch

    cfg = load_config(str(Path(__file__).parents[1] / "configs" / f"{name}.yaml"))
    task = build_task(cfg)
    task.prepare()
    run = budget(cfg.train, steps_per_epoch(task, cfg.train))
    assert run.limit == "max_epochs"  # the recipe's min_steps (for smaller sets) leaves its own run as it was
    schedule = resolve(cfg.train, run.total)
    assert (schedule.warmup, schedule.eval_every) == (warmup, every)
