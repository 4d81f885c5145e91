"""`attntrain pretrain` (masked words, frames, patches) and starting a run from it (model.init, train.freeze,
train.layer_decay), on small slices of the real datasets."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from attntrain.config import build_config
from attntrain.data import build_task
from attntrain.data.tasks.pretrain import MASK_TOKEN, choose_positions, mask_patches, mask_words
from attntrain.model.heads import IGNORE
from attntrain.train import distributed
from attntrain.train.checkpoint import RunDir, read_run_json
from attntrain.train.loop import build_optimizer
from attntrain.train.pretrain import pretrain_overrides
from attntrain.train.schedule import resolve as resolve_schedule
from attntrain.train.trainer import Trainer
from tests.conftest import REPO, cli_env, shared_data, tiny_raw


def pretrain_config(raw: dict, tmp_path, overrides: list[str] = ()):
    """The config `attntrain pretrain` runs: the raw config with pretrain_overrides applied."""
    path = tmp_path / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return build_config(raw, str(path), pretrain_overrides(path, list(overrides)))


def pretrain_raw(ewt_root, runs, name="pre", **train) -> dict:
    raw = tiny_raw(ewt_root, runs, name, **{"max_steps": 12, "eval_every": 6, **train})
    raw["model"]["embed"]["word_dropout"] = 0.0
    return raw


@pytest.fixture(scope="module")
def pretrained(ewt_root, tmp_path_factory):
    """A text pretraining run on the EWT slice (12 steps): its directory."""
    tmp = tmp_path_factory.mktemp("pre")
    cfg = pretrain_config(pretrain_raw(ewt_root, tmp / "runs"), tmp)
    Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    return cfg.run_dir()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attntrain", *args], cwd=REPO, env=cli_env(), capture_output=True,
                          text=True, timeout=600)


def refused(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2 and one `error:` line naming every needle, no traceback."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


# ---- masking ---------------------------------------------------------------------------------------

def test_masking_chooses_15_percent_and_splits_them_80_10_10():
    generator = torch.Generator().manual_seed(0)
    B, T, V, mask_id = 200, 500, 1000, 999
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[:, 400:] = False  # padding is never chosen
    words = torch.randint(2, V - 1, (B, T)) * mask
    chosen = choose_positions(mask, 0.15, 1, generator)
    assert not chosen[:, 400:].any()
    assert float(chosen[:, :400].float().mean()) == pytest.approx(0.15, abs=0.003)
    batch = mask_words({"words": words, "mask": mask}, chosen, mask_id=mask_id, num_words=V, mask_share=0.8,
                       random_share=0.1, generator=generator)
    out = batch["words"][chosen]
    masked, kept = (out == mask_id).float().mean(), (out == words[chosen]).float().mean()
    tolerance = 4 * (0.8 * 0.2 / len(out)) ** 0.5  # 4 standard deviations of a share of ~12,000 draws (0.015)
    assert float(masked) == pytest.approx(0.8, abs=tolerance)
    assert float(kept) == pytest.approx(0.1 + 0.1 / V, abs=tolerance)  # unchanged, or a random draw of the same word
    assert float(1 - masked - kept) == pytest.approx(0.1, abs=tolerance)
    assert bool(((out >= 2) & (out <= mask_id)).all())  # random words: never <pad> or <unk>
    assert torch.equal(batch["words"][~chosen], words[~chosen])
    assert torch.equal(batch["labels"][chosen], words[chosen])
    assert bool((batch["labels"][~chosen] == IGNORE).all())


def test_spans_cover_about_the_share_and_every_sequence_gets_a_target():
    generator = torch.Generator().manual_seed(1)
    mask = torch.ones(100, 300, dtype=torch.bool)
    chosen = choose_positions(mask, 0.4, 10, generator)
    assert 0.3 < float(chosen.float().mean()) <= 0.4  # overlapping spans merge
    runs = [len(run) for row in chosen.tolist() for run in "".join("x" if c else " " for c in row).rstrip("x").split()]
    assert min(runs) >= 10  # every run of chosen frames (but one cut by the end) is a whole span or more
    short = torch.zeros(3, 5, dtype=torch.bool)
    short[:, :2] = True
    assert choose_positions(short, 0.01, 1, generator)[:, :2].sum(1).tolist() == [1, 1, 1]


def test_masked_patches_are_zeroed_and_only_they_are_targets():
    images = torch.randn(2, 1, 4, 4)
    chosen = torch.tensor([[True, False, False, True], [False, False, False, False]])
    out = mask_patches({"images": images, "mask": torch.ones(2, 4, dtype=torch.bool)}, chosen, 2, (2, 2))
    assert bool((out["images"][0, 0, :2, :2] == 0).all()) and bool((out["images"][0, 0, 2:, 2:] == 0).all())
    assert torch.equal(out["images"][1], images[1])
    assert torch.equal(out["labels"][0, 0], images[0, 0, :2, :2].reshape(-1))
    assert bool((out["labels"][0, 1] == IGNORE).all())


def test_dev_masks_repeat_and_train_masks_change(ewt_root, tmp_path):
    cfg = pretrain_config(pretrain_raw(ewt_root, tmp_path / "runs"), tmp_path)
    task = build_task(cfg)
    task.prepare()
    assert MASK_TOKEN in task.input_kind.text.words
    dev = task.batches("dev", shuffle=False)[0]
    assert torch.equal(task.batch("dev", dev)["masked"], task.batch("dev", dev)["masked"])
    train = task.batches("train", shuffle=True)[0]
    assert not torch.equal(task.batch("train", train)["masked"], task.batch("train", train)["masked"])


# ---- pretraining runs -------------------------------------------------------------------------------

def test_pretrain_learns_and_reports_a_dev_loss(pretrained):
    records = [yaml.safe_load(line) for line in (pretrained / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "eval"]
    assert len(losses) == 2 and losses[-1] < losses[0]
    assert set(read_run_json(pretrained / "eval_dev.json")) >= {"loss", "accuracy", "masked"}
    assert not (pretrained / "eval_test.json").exists()  # a pretraining run evaluates dev only


def test_pretrain_resumed_equals_uninterrupted(ewt_root, tmp_path, monkeypatch):
    straight = pretrain_config(pretrain_raw(ewt_root, tmp_path / "runs", "straight", max_steps=8, eval_every=4),
                               tmp_path)
    Trainer(straight, RunDir(straight.run_dir()), resume=False).fit()
    broken = pretrain_config(pretrain_raw(ewt_root, tmp_path / "runs", "broken", max_steps=8, eval_every=4), tmp_path)
    trainer = Trainer(broken, RunDir(broken.run_dir()), resume=False)
    monkeypatch.setattr(distributed, "any_stop", lambda requested: "SIGTERM" if trainer.progress.step == 3 else None)
    assert trainer.fit().stopped == "SIGTERM"
    monkeypatch.undo()
    Trainer(broken, RunDir(broken.run_dir()), resume=True).fit()
    a = load_file(str(RunDir(straight.run_dir()).latest() / "model.safetensors"))
    b = load_file(str(RunDir(broken.run_dir()).latest() / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)


def media_pretrain(raw_data: dict, tmp_path, name: str) -> dict:
    raw = {"name": name, "seed": 1, "runs_dir": str(tmp_path / "runs"), "data": raw_data,
           "model": {"encoder": {"num_layers": 1, "width": 32, "num_heads": 2, "ffn_dim": 64}},
           "train": {"lr": 3e-3, "warmup_steps": 2, "max_steps": 6, "eval_every": 3, "progress": False,
                     "threads": 1}}
    cfg = pretrain_config(raw, tmp_path)
    Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    return read_run_json(cfg.run_dir() / "eval_dev.json")


def test_audio_masked_frames_on_real_recordings(tmp_path):
    folder = tmp_path / "wavs"
    folder.mkdir()
    for path in sorted((shared_data() / "fsdd" / "recordings").glob("*_jackson_1*.wav"))[:40]:
        shutil.copy(path, folder / path.name)
    metrics = media_pretrain({"source": {"format": "audiofolder", "path": str(folder)},
                              "input": {"field": "path", "kind": "audio"}, "split": {"dev": 0.25, "test": 0.0},
                              "max_tokens": 2000}, tmp_path, "audio")
    assert metrics["masked"] > 0 and 0 < metrics["loss"] < 10


def test_image_masked_patches_on_real_digits(tmp_path):
    metrics = media_pretrain({"task": "mnist", "root": str(shared_data()), "dataset": "mnist", "train_limit": 128,
                              "eval_limit": 32, "dev_size": 100, "max_tokens": 1024}, tmp_path, "image")
    assert metrics["masked"] > 0 and 0 < metrics["loss"] < 10


# ---- fine-tuning from a pretrained run ---------------------------------------------------------------

def fine_tune_config(ewt_root, tmp_path, init, name="tuned", **train):
    raw = tiny_raw(ewt_root, tmp_path / "runs", name, **{"max_steps": 4, "eval_every": 4, **train})
    raw["model"]["init"] = str(init)
    return build_config(raw, "test")


def test_fine_tune_loads_the_pretrained_tensors_and_vocabulary(ewt_root, tmp_path, pretrained):
    cfg = fine_tune_config(ewt_root, tmp_path, pretrained)
    trainer = Trainer(cfg, RunDir(cfg.run_dir()), resume=False)
    saved = load_file(str(pretrained / "best.safetensors"))
    own = trainer.model.state_dict()
    for key in ("embed.words.table.weight", "embed.chars.embed.weight", "encoder.blocks.1.attention.query.weight"):
        assert torch.equal(own[key], saved[key]), key
    assert not any(key.startswith("head.output") for key in saved)  # the tagging head is new
    pretrained_words = read_run_json(pretrained / "task.json")["input"]["words"]
    assert read_run_json(cfg.run_dir() / "task.json")["input"]["words"] == pretrained_words
    assert MASK_TOKEN in pretrained_words["items"]


def test_fine_tuned_run_works_without_the_pretrained_run(ewt_root, tmp_path, pretrained):
    from attntrain import runs

    copy = tmp_path / "copy_of_pretrained"
    shutil.copytree(pretrained, copy)
    cfg = fine_tune_config(ewt_root, tmp_path, copy)
    Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    shutil.rmtree(copy)
    assert runs.eval_run(cfg.run_dir(), "dev")["accuracy"] >= 0
    assert len(list(runs.predict(cfg.run_dir(), ["The cat sat ."]))) == 1


def test_frozen_parameters_do_not_change(ewt_root, tmp_path, pretrained):
    cfg = fine_tune_config(ewt_root, tmp_path, pretrained, freeze=["embed", "encoder.0"], max_steps=3)
    trainer = Trainer(cfg, RunDir(cfg.run_dir()), resume=False)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.fit()
    after = dict(trainer.model.named_parameters())
    for name, value in before.items():
        frozen = name.startswith("embed.") or name.startswith("encoder.blocks.0.")
        assert torch.equal(value, after[name]) == frozen, name


def test_layer_decay_gives_each_depth_its_learning_rate(ewt_root, tmp_path):
    cfg = build_config(tiny_raw(ewt_root, tmp_path / "runs", "decay", layer_decay=0.5), "test")
    trainer = Trainer(cfg, RunDir(cfg.run_dir()), resume=False)
    trainer.schedule = resolve_schedule(cfg.train, 40)
    trainer.progress.step = 10  # past warm-up (5 steps)
    peak = trainer._set_lr(40)
    lr = {id(p): group["lr"] for group in trainer.optimizer.param_groups for p in group["params"]}
    expected = {"embed.": 0.125, "encoder.blocks.0.": 0.25, "encoder.blocks.1.": 0.5, "encoder.norm": 0.5,
                "head.": 1.0}
    for name, parameter in trainer.model.named_parameters():
        scale = next(v for prefix, v in expected.items() if name.startswith(prefix))
        assert lr[id(parameter)] == pytest.approx(peak * scale), name
    plain = build_optimizer(trainer.model, cfg.train.model_copy(update={"layer_decay": None}))
    assert [g["weight_decay"] for g in plain.param_groups] == [cfg.train.weight_decay, 0.0]  # as before layer_decay


# ---- bad input: one line, exit 2 ----------------------------------------------------------------------

def test_missing_init_run_is_refused_before_training(ewt_root, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_raw(ewt_root, tmp_path / "runs")))
    refused(cli("fit", str(path), "--set", f"model.init={tmp_path / 'nope'}"), "model.init", "no such run directory")


def test_init_of_another_input_kind_or_width_is_refused(ewt_root, tmp_path, pretrained):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_raw(ewt_root, tmp_path / "runs")))
    refused(cli("fit", str(path), "--set", f"model.init={pretrained}", "--set", "model.encoder.width=32"),
            "model.init", "model width 64, this config 32")
    mnist = tmp_path / "mnist.yaml"
    mnist.write_text(yaml.safe_dump({"data": {"task": "mnist", "dataset": "mnist"}, "runs_dir": str(tmp_path / "runs"),
                                     "model": {"init": str(pretrained), "head": {"kind": "sequence"}}}))
    refused(cli("fit", str(mnist)), "was trained on text input; this run reads image")


def test_pretrain_refuses_graphs_and_accuracy_for_audio(tmp_path):
    refused(cli("pretrain", str(REPO / "configs" / "cora_gat.yaml")), "pretraining has objectives for text")
    refused(cli("pretrain", str(REPO / "configs" / "fsdd_digit.yaml"), "--set", "train.metric=accuracy"),
            "accuracy (masked words) is reported for text only")
