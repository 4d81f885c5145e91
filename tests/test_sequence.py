"""Whole-sequence labels: pooling, metrics, every input kind, and short real runs on SST-2, FSDD, MNIST."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attntrain import runs
from attntrain.config import build_config, load_config
from attntrain.data.inputs.audio import frame_count
from attntrain.model import build_model
from attntrain.model.heads import POOLINGS, SequenceHead, SequenceMeter
from attntrain.train.checkpoint import RunDir
from attntrain.train.trainer import Trainer
from tests.conftest import REPO, cli_env, shared_data

CONFIGS = ["sst2", "imdb", "fsdd_digit", "fsdd_speaker", "mnist_patches", "mnist_pixels"]


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_config_validates(name):
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.model.head.kind == "sequence"


# ---- shapes: every input kind x pooling -----------------------------------------------------

def synthetic_batch(kind: str, lengths: list[int]) -> tuple[dict, dict]:
    """Shape-only inputs (random values) for one input kind; returns (info, batch)."""
    torch.manual_seed(0)
    B, T = len(lengths), max(lengths)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    labels = torch.tensor([i % 3 for i in range(B)])
    if kind == "text":
        info = {"input": "text", "num_words": 40, "num_chars": 10}
        batch = {"words": torch.randint(2, 40, (B, T)) * mask, "chars": torch.randint(1, 10, (B, T, 5)) * mask[..., None]}
    elif kind == "audio":
        info = {"input": "audio", "num_features": 12}
        batch = {"features": torch.randn(B, T, 12) * mask[..., None]}
    else:  # image: 8x8 images in 2x2 patches of 4x4 -> 4 vectors
        info = {"input": "image", "patch": 4, "grid": [2, 2]}
        batch = {"images": torch.randn(B, 8, 8)}
        mask = torch.ones(B, 4, dtype=torch.bool)
    return {**info, "num_labels": 3}, {**batch, "mask": mask, "labels": labels}


@pytest.mark.parametrize("kind,pooling", list(itertools.product(["text", "audio", "image"], POOLINGS)))
def test_every_input_kind_and_pooling_runs_forward_and_backward(kind, pooling):
    info, batch = synthetic_batch(kind, [5, 3])
    raw = {"model": {"embed": {"word_dim": 8, "char_dim": 4, "char_filters": 8, "shift": 1},
                     "encoder": {"num_layers": 2, "width": 16, "num_heads": 2, "ffn_dim": 32, "position": "learned"},
                     "head": {"kind": "sequence", "pooling": pooling}}}
    model = build_model(build_config(raw, "test"), info).train()
    out = model(batch)
    out["loss"].backward()
    assert out["logits"].shape == (2, 3)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooling_ignores_padding(pooling):
    torch.manual_seed(0)
    head = SequenceHead(8, 3, pooling=pooling, dropout=0.0, label_smoothing=0.0).eval()
    features = torch.randn(1, 4, 8)
    alone = head(features, {"mask": torch.ones(1, 4, dtype=torch.bool)})
    padded = torch.cat([features, 100 * torch.randn(1, 3, 8)], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    torch.testing.assert_close(head(padded, {"mask": mask}), alone)


def test_cls_vector_is_prepended_and_summarises():
    head = SequenceHead(8, 3, pooling="cls", dropout=0.0, label_smoothing=0.0)
    x, mask = head.prefix(torch.zeros(2, 4, 8), torch.tensor([[True] * 4, [True, True, False, False]]))
    assert x.shape == (2, 5, 8) and mask[:, 0].all() and mask[1].tolist() == [True, True, True, False, False]
    torch.testing.assert_close(x[:, 0], head.cls[0].expand(2, 8))


def test_meter_accuracy_macro_f1_and_confusion():
    meter = SequenceMeter(3)
    logits = torch.eye(3)[[0, 0, 1, 2, 2, 2]]  # predicted: 0 0 1 2 2 2
    meter.update(logits, {"labels": torch.tensor([0, 1, 1, 2, 2, 0])})
    assert meter.confusion.tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 2]]
    out = meter.compute()
    # per-class F1: 2*1/(2+2)=0.5, 2*1/(2+1)=2/3, 2*2/(2+3)=0.8
    assert out["accuracy"] == pytest.approx(400 / 6)
    assert out["macro_f1"] == pytest.approx(100 * (0.5 + 2 / 3 + 0.8) / 3)


# ---- short real runs ---------------------------------------------------------------------------

def small(name: str, runs_dir: Path, **overrides) -> "Config":  # noqa: F821
    """A shipped config shrunk to seconds: tiny model, few steps, slices of the real data."""
    sets = [f"runs_dir={runs_dir}", "train.progress=false", "train.threads=1", "train.log_every=5",
            "model.encoder.num_layers=1", "model.encoder.width=32", "model.encoder.num_heads=2",
            "model.encoder.ffn_dim=64", "train.warmup_steps=5", "train.lr=0.003",
            *(f"{k}={v}" for k, v in overrides.items())]
    return load_config(REPO / "configs" / f"{name}.yaml", sets)


def train_losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]


@pytest.fixture(scope="module")
def fsdd_root(tmp_path_factory) -> Path:
    """Two speakers, digits 0-4, recordings 0-19: 100 train / 50 dev / 50 test wavs (links to the real files)."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    for path in sorted((shared_data() / "fsdd" / "recordings").glob("*.wav")):
        digit, speaker, index = path.stem.split("_")
        if int(digit) < 5 and speaker in ("jackson", "theo") and int(index) < 20:
            (folder / path.name).symlink_to(path)
    return root


@pytest.fixture(scope="module")
def fsdd_run(fsdd_root, tmp_path_factory):
    cfg = small("fsdd_speaker", tmp_path_factory.mktemp("runs"), **{
        "data.root": fsdd_root, "train.max_steps": 40, "train.eval_every": 20, "data.max_tokens": 1500})
    result = Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    return cfg, result


def test_fsdd_speaker_loss_falls_and_stats_come_from_train(fsdd_run):
    cfg, result = fsdd_run
    losses = train_losses(cfg.run_dir())
    assert losses[-1] < 0.6 * losses[0]
    assert result.metrics["test"]["examples"] == 50
    assert result.metrics["test"]["accuracy"] > 70.0  # two speakers, chance is 50
    state = json.loads((cfg.run_dir() / "task.json").read_text())
    assert state["target"]["labels"]["items"] == ["jackson", "theo"]
    assert len(state["input"]["mean"]) == cfg.data.audio.n_mels
    confusion = json.loads((cfg.run_dir() / "confusion_test.json").read_text())
    assert sum(map(sum, confusion["matrix"])) == 50
    # The trainer writes counts only; the picture is drawn by plots (runs.fit / eval_run call it).
    assert not (cfg.run_dir() / "confusion_test.png").exists()
    from attntrain.plots import confusion_pictures

    assert cfg.run_dir() / "confusion_test.png" in confusion_pictures(cfg.run_dir())
    assert (cfg.run_dir() / "confusion_test.png").read_bytes()[:4] == b"\x89PNG"


def test_fsdd_save_load_same_predictions_and_raw_wav_predict(fsdd_run, fsdd_root):
    cfg, result = fsdd_run
    again = runs.eval_run(cfg.run_dir(), "test")
    assert again["accuracy"] == result.metrics["test"]["accuracy"]
    assert again["loss"] == pytest.approx(result.metrics["test"]["loss"], rel=1e-6)
    wav = sorted((fsdd_root / "fsdd" / "recordings").glob("*_theo_0.wav"))[0]
    out = list(runs.predict(cfg.run_dir(), [str(wav), ""]))
    name, label, prob = out[0].split("\t")
    assert name == str(wav) and label in ("jackson", "theo") and 0.5 <= float(prob) <= 1.0
    assert out[1] == ""


def test_a_run_saved_before_fsdd_was_a_preset_still_evaluates(fsdd_run, tmp_path):
    """task.json of the old FSDD reader ({classes, mean, std}) loads into the preset's task unchanged."""
    import shutil

    cfg, result = fsdd_run
    old = tmp_path / "old_run"
    shutil.copytree(cfg.run_dir(), old)
    state = json.loads((old / "task.json").read_text())
    legacy = {"classes": state["target"]["labels"]["items"], **state["input"]}
    (old / "task.json").write_text(json.dumps(legacy))
    again = runs.eval_run(old, "test")
    assert again["accuracy"] == result.metrics["test"]["accuracy"]
    assert again["loss"] == pytest.approx(result.metrics["test"]["loss"], rel=1e-6)


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attntrain", *args], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=300)


def test_predict_rejects_non_audio_with_a_clear_error(fsdd_run, tmp_path):
    cfg, _ = fsdd_run
    bogus = tmp_path / "notes.wav"
    bogus.write_text("not audio at all")
    done = cli("predict", str(cfg.run_dir()), str(bogus))
    assert done.returncode == 2 and "notes.wav: not a readable audio file" in done.stderr
    missing = cli("predict", str(cfg.run_dir()), str(tmp_path / "gone.wav"))
    assert missing.returncode == 2 and "gone.wav" in missing.stderr


def test_wav_at_another_rate_is_resampled(fsdd_run, tmp_path):
    import soundfile

    cfg, _ = fsdd_run
    wave, rate = soundfile.read(str(sorted((shared_data() / "fsdd" / "recordings").glob("3_theo_1.wav"))[0]))
    up = torch.nn.functional.interpolate(torch.tensor(wave)[None, None], scale_factor=2, mode="linear")[0, 0]
    path = tmp_path / "16k.wav"
    soundfile.write(str(path), up.numpy(), rate * 2)
    out = list(runs.predict(cfg.run_dir(), [str(path)]))
    assert out[0].split("\t")[1] in ("jackson", "theo")


def test_attention_maps_over_audio_frames_and_image_patches(fsdd_run, tmp_path):
    from attntrain import plots
    from attntrain.data import build_task
    from attntrain.data.inputs.audio import read_wav

    cfg, _ = fsdd_run
    _, task, model, device = runs.load_run(cfg.run_dir())
    wav = sorted((shared_data() / "fsdd" / "recordings").glob("3_theo_1.wav"))[0]
    labels, layers = plots.attention_weights(model, task, str(wav), device)
    frames = frame_count(len(read_wav(str(wav), 8000)), 8000, 25, 10)
    assert labels[:2] == ["0.00s", "0.01s"] and len(labels) == frames  # mean pooling: no [CLS] row
    assert [w.shape for w in layers] == [(2, frames, frames)] * cfg.model.encoder.num_layers
    torch.testing.assert_close(layers[0].sum(-1), torch.ones(2, frames))

    image_cfg = small("mnist_patches", tmp_path, **{"model.head.pooling": "cls", "data.eval_limit": 10})
    image_task = build_task(image_cfg)
    image_task.prepare()
    torch.manual_seed(0)
    image_model = build_model(image_cfg, image_task.info()).eval()
    labels, layers = plots.attention_weights(image_model, image_task, "7")
    assert labels[:3] == ["[CLS]", "r0c0", "r0c1"] and labels[-1] == "r3c3" and len(labels) == 17
    assert layers[0].shape == (2, 17, 17)


def test_attention_maps_refuse_graph_input(tmp_path):
    from attntrain import plots
    from attntrain.data import build_task
    from attntrain.errors import UserError

    cfg = load_config(REPO / "configs" / "cora_full_attention.yaml", [f"runs_dir={tmp_path}"])
    task = build_task(cfg)
    with pytest.raises(UserError, match="attention maps are drawn over .*; this run's task has 'graph' input"):
        plots.attention_weights(None, task, "0")


def test_frames_per_second_follow_window_and_hop():
    assert frame_count(8000, 8000, 25, 10) == 99  # one second -> ~100 vectors
    assert frame_count(16000, 16000, 25, 10) == 99
    assert frame_count(4000, 8000, 25, 10) == 49


def test_sst2_slice_loss_falls_and_phrases_exclude_dev_test(tmp_path):
    cfg = small("sst2", tmp_path, **{"data.train_limit": 800, "data.eval_limit": 200, "data.phrases": False,
                                     "train.max_steps": 40, "train.eval_every": 40, "model.embed.word_dim": 32})
    Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    losses = train_losses(cfg.run_dir())
    assert losses[-1] < losses[0]

    from attntrain.data import build_task

    task = build_task(load_config(REPO / "configs" / "sst2.yaml"))
    train = task.read_split("train")
    phrases = train[len(train) - task.added_train["rows"]:]
    held_out = {" ".join(task._tokens(ex)) for s in ("dev", "test") for ex in task.read_split(s)}
    assert len(train) - len(phrases) == 6920 and len(phrases) > 60000  # Kim's training sentences, then GLUE's phrases
    assert task.added_train["dropped_dev_test"] >= 1  # "what 's next ?" is also a test sentence
    assert not any(" ".join(task._tokens(ex)) in held_out for ex in phrases)
    assert {ex["sentence"] for ex in phrases[:2000]} >= {"the greatest musicians"}  # GLUE's phrases, PTB-spelled


def test_predict_truncates_long_text_as_evaluation_does(tmp_path):
    """A review over data.max_len is cut the same way (start + end) in predict and attention maps as in dev/test."""
    from attntrain.data.inputs.text import truncate

    cfg = small("sst2", tmp_path, **{"data.train_limit": 200, "data.eval_limit": 50, "data.phrases": False,
                                     "data.max_len": 9, "data.truncate": "head_tail", "train.max_steps": 5,
                                     "train.eval_every": 5, "model.embed.word_dim": 16})
    Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    words = "the film starts slowly , the middle drags on and on , but the ending is wonderful and moving".split()
    kept = truncate(words, 9, "head_tail")
    assert len(kept) == 9 and kept[:3] == words[:3] and kept[-6:] == words[-6:]
    whole, cut = runs.predict(cfg.run_dir(), [" ".join(words), " ".join(kept)])
    assert whole == cut
    _, task, _, _ = runs.load_run(cfg.run_dir())
    example = task.parse_inputs([" ".join(words)])[0]
    item = task.encode(example, max_len=task.eval_max_len())
    assert item["length"] == 9 and task.position_labels(example, item) == kept


def test_mnist_slice_learns_and_predicts_png_and_index(tmp_path):
    from PIL import Image

    from attntrain.data.inputs.images import read_idx

    cfg = small("mnist_patches", tmp_path, **{"data.train_limit": 1024, "data.eval_limit": 300,
                                              "data.dev_size": 300, "train.max_steps": 100, "train.eval_every": 50,
                                              "data.max_tokens": 1024, "model.embed.shift": 0, "train.lr": 0.005})
    result = Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    losses = train_losses(cfg.run_dir())
    assert losses[-1] < 0.6 * losses[0]
    assert result.metrics["test"]["accuracy"] > 40.0  # 10 classes, chance is 10

    images = read_idx(shared_data() / "mnist" / "t10k-images-idx3-ubyte.gz")
    png = tmp_path / "digit.png"
    Image.fromarray(images[7].numpy()).save(png)
    by_file, by_index = list(runs.predict(cfg.run_dir(), [str(png), "7"]))
    assert by_file.split("\t")[1:] == by_index.split("\t")[1:]  # same pixels -> same label and probability
    assert by_index.startswith("test[7] (true ")

    bad = tmp_path / "x.png"
    bad.write_text("no image here")
    done = cli("predict", str(cfg.run_dir()), str(bad))
    assert done.returncode == 2 and "x.png: not a readable image" in done.stderr
