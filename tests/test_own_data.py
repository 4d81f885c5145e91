"""Bring your own data: the generic layouts, built from slices of the real datasets, train from YAML alone."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from attntrain.config import build_config
from attntrain.data import build_task
from attntrain.errors import UserError
from attntrain.init import starter_config
from attntrain.runs import eval_run, predict
from attntrain.train.checkpoint import RunDir
from attntrain.train.trainer import Trainer
from tests.conftest import REPO, cli_env

spec = importlib.util.spec_from_file_location("own_data_examples", REPO / "scripts" / "own_data_examples.py")
examples = importlib.util.module_from_spec(spec)
spec.loader.exec_module(examples)

TINY_TEXT = {"embed": {"word_dim": 32, "dropout": 0.1},
             "encoder": {"num_layers": 1, "width": 64, "num_heads": 4, "ffn_dim": 128, "dropout": 0.1}}
TINY_TRAIN = {"lr": 3e-3, "warmup": 0.1, "max_steps": 30, "eval_every": 15, "log_every": 5, "progress": False,
              "threads": 1}


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    return tmp_path_factory.mktemp("own")


def config(tmp_path, data: dict, head: dict, name: str = "own", **train) -> dict:
    return {"name": name, "seed": 1, "runs_dir": str(tmp_path / "runs"), "data": data,
            "model": {**TINY_TEXT, "head": head}, "train": {**TINY_TRAIN, **train}}


def train(raw: dict):
    cfg = build_config(raw, "test")
    return cfg, Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()


def test_sst2_from_csv_trains_and_matches_the_preset_rows(own, tmp_path):
    folder = examples.write("sst2_csv", own, limit=600)
    data = {"source": {"format": "csv", "files": {s: str(folder / f"{s}.csv") for s in ("train", "dev", "test")}},
            "input": {"field": "text", "tokenizer": "whitespace"}, "target": {"field": "label"}, "max_len": 64}
    cfg, result = train(config(tmp_path, data, {"kind": "sequence"}))
    assert result.metrics["test"]["examples"] == 600
    assert json.loads((cfg.run_dir() / "task.json").read_text())["target"]["labels"]["items"] == ["negative", "positive"]
    # the CSV rows are the preset's rows: same words, same labels, same order
    preset = build_task(build_config({"data": {"task": "sst2", "dataset": "sst2", "phrases": True},
                                      "model": {"head": {"kind": "sequence"}}}, "p"))
    csv_task = build_task(build_config(config(tmp_path, data, {"kind": "sequence"}), "test"))
    ours = csv_task.read_split("test")
    theirs = preset.read_split("test")[:600]
    assert [r["text"].split() for r in ours] == [r["sentence"].split() for r in theirs]
    assert [r["label"] for r in ours] == [preset.target.value(r, "test") for r in theirs]


def test_sst2_from_pos_neg_text_files_with_a_saved_ratio_split(own, tmp_path):
    folder = examples.write("sst2_text", own, limit=800)
    data = {"source": {"format": "text", "path": str(folder / "*.txt")}, "input": {"field": "text"},
            "target": {"field": "label"}, "split": {"dev": 0.2, "test": 0.2, "seed": 3}}
    cfg, result = train(config(tmp_path, data, {"kind": "sequence"}))
    state = json.loads((cfg.run_dir() / "task.json").read_text())
    assert state["target"]["labels"]["items"] == ["neg", "pos"]
    assert sorted(len(v) for v in state["split_index"].values()) == [160, 160, 480]
    assert result.metrics["test"]["examples"] == 160
    again = eval_run(result.run_dir, "test")  # eval reads the split saved with the run
    assert again["accuracy"] == pytest.approx(result.metrics["test"]["accuracy"])


def test_hf_save_to_disk_dataset(own, tmp_path):
    folder = examples.write("sst2_hf", own, limit=300)
    data = {"source": {"format": "hf", "path": str(folder)}, "input": {"field": "sentence", "tokenizer": "whitespace"},
            "target": {"field": "label"}}
    _, result = train(config(tmp_path, data, {"kind": "sequence"}, max_steps=10, eval_every=10))
    assert result.metrics["dev"]["examples"] == 300  # "validation" is the dev split


def test_multi30k_from_plain_parallel_text_equals_the_preset(own, tmp_path):
    folder = examples.write("multi30k_text", own, limit=200)
    data = {"source": {"format": "parallel", "languages": ["de", "en"],
                       "files": {"train": str(folder / "train"), "dev": str(folder / "val"),
                                 "test": str(folder / "test")}},
            "input": {"field": "de"}, "target": {"field": "en"}, "translation": {"vocab_size": 400}}
    task = build_task(build_config(config(tmp_path, data, {"kind": "seq2seq"}), "test"))
    preset = build_task(build_config({"data": {"task": "translation", "dataset": "multi30k"},
                                      "model": {"head": {"kind": "seq2seq"}}}, "p"))
    assert task.read_split("test") == preset.read_split("test")[:200]
    raw = config(tmp_path, data, {"kind": "seq2seq", "decoder": {"num_layers": 1, "ffn_dim": 64}},
                 max_steps=6, eval_every=6, metric="bleu")
    raw["model"]["embed"] = {"dropout": 0.1}
    _, result = train(raw)
    assert "bleu" in result.metrics["test"]


def test_ewt_from_jsonl_token_lists(own, tmp_path):
    folder = examples.write("ewt_jsonl", own, limit=300)
    data = {"source": {"format": "jsonl", "files": {s: str(folder / f"{s}.jsonl") for s in ("train", "dev", "test")}},
            "input": {"field": "tokens"}, "target": {"field": "upos"}}
    raw = config(tmp_path, data, {"kind": "tagging"})
    raw["model"]["embed"].update(char_dim=16, char_filters=16)
    cfg, result = train(raw)
    assert result.metrics["test"]["accuracy"] > 30.0  # 17 tags: far above chance after 30 steps
    assert "f1" not in result.metrics["test"]  # UPOS is not a span scheme
    [line] = list(predict(result.run_dir, ["The cat sat ."]))
    assert line.split()[0].startswith("The/")


def test_fsdd_as_an_audiofolder(own, tmp_path):
    folder = examples.write("fsdd_audio", own, limit=8)  # recordings 0-7: 0-4 test, 5-7 train
    data = {"source": {"format": "audiofolder", "path": str(folder)}, "input": {"field": "path", "kind": "audio"},
            "target": {"field": "label"}, "split": {"dev": 0.2}}
    raw = config(tmp_path, data, {"kind": "sequence"}, max_steps=10, eval_every=10)
    raw["model"] = {"encoder": TINY_TEXT["encoder"], "head": {"kind": "sequence"}}
    _, result = train(raw)
    assert result.metrics["test"]["examples"] == 300  # 10 digits x 6 speakers x 5 recordings
    wav = next((folder / "test" / "7").iterdir())
    [line] = list(predict(result.run_dir, [str(wav)]))
    assert line.startswith(str(wav)) and line.split("\t")[1] in [str(d) for d in range(10)]


@pytest.mark.parametrize("layout,channels", [("mnist_png", 1), ("mnist_png_rgb", 3)])
def test_mnist_as_png_imagefolders_gray_and_rgb(own, tmp_path, layout, channels):
    folder = examples.write(layout, own, limit=20)
    data = {"source": {"format": "imagefolder", "path": str(folder)}, "input": {"field": "path", "kind": "image"},
            "target": {"field": "label"}, "image": {"size": [28, 28]}, "patch": 7, "split": {"dev": 0.1}}
    raw = config(tmp_path, data, {"kind": "sequence"}, max_steps=10, eval_every=10)
    raw["model"] = {"encoder": TINY_TEXT["encoder"], "head": {"kind": "sequence"}}
    cfg, result = train(raw)
    state = json.loads((cfg.run_dir() / "task.json").read_text())
    assert state["input"]["channels"] == channels
    assert result.metrics["test"]["examples"] == 40  # 4 test images per digit


def test_missing_field_lists_the_fields(own, tmp_path):
    folder = examples.write("sst2_csv", own, limit=600)
    data = {"source": {"format": "csv", "files": {s: str(folder / f"{s}.csv") for s in ("train", "dev", "test")}},
            "input": {"field": "sentence"}, "target": {"field": "label"}}
    task = build_task(build_config(config(tmp_path, data, {"kind": "sequence"}), "test"))
    with pytest.raises(UserError, match=r"train.csv:2: no field 'sentence' \(fields: text, label\)"):
        task.prepare()


def test_label_unseen_in_train_is_an_error_naming_the_row(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\ngood film,pos\nbad film,neg\n")
    (tmp_path / "test.csv").write_text("text,label\nfine film,neutral\n")
    data = {"source": {"format": "csv", "files": {"train": str(tmp_path / "train.csv"),
                                                  "test": str(tmp_path / "test.csv")}},
            "input": {"field": "text"}, "target": {"field": "label"}, "split": {"dev": 0.0}}
    task = build_task(build_config(config(tmp_path, data, {"kind": "sequence"}), "test"))
    with pytest.raises(UserError, match=r"test.csv:2: label 'neutral' never occurs in train"):
        task.prepare()  # before the first training step, not at the first evaluation


def test_bad_input_of_the_preset_formats_names_file_line_or_key(tmp_path):
    """labeled_lines, name_pattern, idx, target.names and the new split / image keys fail with one clear error."""
    from attntrain.data.sources.readers import read_source

    def source(**block):
        return build_config({"data": {"source": block}}, "test").data

    (tmp_path / "train.txt").write_text("1 a fine film\n0\n")
    with pytest.raises(UserError, match=r"train.txt:2: expected '<label> <text>'"):
        read_source(source(format="labeled_lines", files={"train": str(tmp_path / "train.txt")}))
    (tmp_path / "wavs").mkdir()
    (tmp_path / "wavs" / "seven.wav").write_bytes(b"")
    with pytest.raises(UserError, match=r"seven.wav: the file name does not match data.source.name_pattern"):
        read_source(source(format="audiofolder", path=str(tmp_path / "wavs"), name_pattern=r"(?P<digit>\d)_"))
    with pytest.raises(UserError, match=r"name_pattern.*no named group"):
        source(format="audiofolder", path=".", name_pattern=r"\d_")
    labels = tmp_path / "labels-idx1-ubyte"  # 3 labels for no image file
    labels.write_bytes(bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    with pytest.raises(UserError, match=r"idx: a split needs one image file .* labels-idx1-ubyte \(3,\)"):
        read_source(source(format="idx", files={"train": str(labels)}))
    with pytest.raises(UserError, match=r"split.*values: name the field"):
        build_config({"data": {"split": {"values": {"test": [0]}}}}, "test")
    with pytest.raises(UserError, match=r"split.dev.*neither a fraction"):
        build_config({"data": {"split": {"dev": 2.5}}}, "test")
    with pytest.raises(UserError, match=r"image.*mean and std: give both"):
        build_config({"data": {"image": {"mean": [0.5]}}}, "test")
    (tmp_path / "t.jsonl").write_text('{"text": "good", "label": 1}\n{"text": "odd", "label": 5}\n')
    data = {"source": {"format": "jsonl", "path": str(tmp_path / "t.jsonl")}, "input": {"field": "text"},
            "target": {"field": "label", "names": ["negative", "positive"]}, "split": {"dev": 0.0, "test": 0.0}}
    task = build_task(build_config(config(tmp_path, data, {"kind": "sequence"}), "test"))
    with pytest.raises(UserError, match=r"t.jsonl:2: label 5 has no name in data.target.names \(0..1\)"):
        task.prepare()


def test_empty_split_and_undecodable_image_are_errors(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\n")
    data = {"source": {"format": "csv", "files": {"train": str(tmp_path / "train.csv")}},
            "input": {"field": "text"}, "target": {"field": "label"}}
    with pytest.raises(UserError, match="train split is empty"):
        build_task(build_config(config(tmp_path, data, {"kind": "sequence"}), "test")).prepare()
    images = tmp_path / "img" / "train" / "a"
    images.mkdir(parents=True)
    (images / "broken.png").write_bytes(b"not a png")
    (images.parent / "b").mkdir()
    (images.parent / "b" / "other.png").write_bytes(b"not a png either")  # a second class: one is refused
    data = {"source": {"format": "imagefolder", "path": str(tmp_path / "img")}, "input": {"field": "path", "kind": "image"},
            "target": {"field": "label"}, "split": {"dev": 0.0}}
    with pytest.raises(UserError, match=r"broken.png: not a readable image"):
        build_task(build_config(config(tmp_path, data, {"kind": "sequence"}), "test")).prepare()


def _init_and_fit(data: Path, target: str, tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    out = tmp_path / "starter.yaml"
    made = subprocess.run([sys.executable, "-m", "attntrain", "init", str(data), "--target", target, "--out", str(out)],
                          capture_output=True, text=True, env=cli_env())
    assert made.returncode == 0, made.stderr
    assert yaml.safe_load(out.read_text())["data"]["target"]["field"] == target
    return subprocess.run([sys.executable, "-m", "attntrain", "fit", str(out), "--set", f"runs_dir={tmp_path / 'runs'}",
                           "--set", "train.max_steps=8", "--set", "train.threads=1", "--set", "train.progress=false",
                           *[arg for o in overrides for arg in ("--set", o)]],
                          capture_output=True, text=True, env=cli_env(), cwd=tmp_path)


def test_init_on_a_csv_writes_a_config_that_trains(own, tmp_path):
    folder = examples.write("sst2_csv", own, limit=600)
    done = _init_and_fit(folder / "train.csv", "label", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "accuracy" in done.stdout


def test_init_on_a_folder_of_wavs_writes_a_config_that_trains(own, tmp_path):
    folder = examples.write("fsdd_audio", own, limit=8)
    done = _init_and_fit(folder, "label", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "accuracy" in done.stdout


def test_init_on_node_and_edge_tables_writes_a_graph_config_that_trains(own, tmp_path):
    folder = own / "cora_tables"
    if not (folder / "nodes.csv").is_file():
        examples.cora_tables(folder, examples.data_root())
    text = starter_config(folder, "label")
    raw = yaml.safe_load(text)
    assert raw["data"]["source"]["format"] == "graph" and raw["data"]["input"]["kind"] == "graph"
    assert raw["data"]["split"] == {"column": "split"} and raw["data"]["graph"]["node_id"] == "id"
    assert raw["data"]["graph"]["edge_fields"] == ["source", "target"]
    assert starter_config(folder / "nodes.csv", "label") == text  # the node table alone finds its edges
    done = _init_and_fit(folder, "label", tmp_path, "train.max_steps=20", "train.eval_every=10")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "accuracy" in done.stdout


def test_k_fold_cross_validation_covers_every_row_once_as_test(own, tmp_path):
    from attntrain.data.tasks.splits import fold_split
    from attntrain.runs import fit

    parts = [fold_split(50, 5, k, 0.1, 0) for k in range(5)]
    tests = [i for p in parts for i in p["test"]]
    assert sorted(tests) == list(range(50))  # every row is tested exactly once
    assert all(not set(p["test"]) & set(p["train"] + p["dev"]) for p in parts)
    folder = examples.write("sst2_text", own, limit=800)
    data = {"source": {"format": "text", "path": str(folder / "*.txt")}, "input": {"field": "text"},
            "target": {"field": "label"}, "split": {"dev": 0.1, "folds": 3}}
    config_file = tmp_path / "cv.yaml"
    config_file.write_text(yaml.safe_dump(config(tmp_path, data, {"kind": "sequence"}, name="cv", max_steps=5,
                                                 eval_every=5)))
    result = fit(config_file)
    summary = json.loads((Path(result.run_dir) / "summary.json").read_text())
    assert summary["folds"] == [0, 1, 2]
    counts = [summary["runs"][f"fold-{k}"]["test"]["examples"] for k in range(3)]
    assert sum(counts) == 800 and "accuracy" in summary["summary"]["test mean"]


def test_unseen_conllu_tag_names_the_file_and_line_of_its_sentence(tmp_path):
    def sentence(number: int, word: str, tag: str) -> str:
        return f"# sent_id = {number}\n1\t{word}\t{word}\t{tag}\t_\t_\t0\troot\t_\t_\n\n"

    (tmp_path / "train.conllu").write_text(sentence(1, "dog", "NOUN") + sentence(2, "cat", "DET"))
    (tmp_path / "dev.conllu").write_text(sentence(1, "cat", "NOUN") + sentence(2, "runs", "VERB"))
    data = {"source": {"format": "conllu", "files": {"train": str(tmp_path / "train.conllu"),
                                                     "dev": str(tmp_path / "dev.conllu")}},
            "input": {"field": "words"}, "target": {"field": "upos"}, "split": {"test": 0.0}}
    task = build_task(build_config(config(tmp_path, data, {"kind": "tagging"}), "test"))
    with pytest.raises(UserError, match=r"dev.conllu:4 \(token 1\): tag 'VERB' never occurs in train "
                                        r"\(train tags: DET, NOUN\)"):
        task.prepare()  # before the first training step
    data["target"]["labels"] = ["DET", "NOUN", "VERB"]  # a tag set declared in advance (as the ud_pos preset does)
    task = build_task(build_config(config(tmp_path, data, {"kind": "tagging"}), "test"))
    task.prepare()
    assert len(task.split("dev")) == 2 and task.info()["num_labels"] == 3
    data["target"]["labels"] = ["VERB", "DET"]
    task = build_task(build_config(config(tmp_path, data, {"kind": "tagging"}), "test"))
    with pytest.raises(UserError, match=r"train.conllu:1 \(token 1\): tag 'NOUN' is not in data.target.labels "
                                        r"\(VERB, DET\)"):
        task.prepare()
