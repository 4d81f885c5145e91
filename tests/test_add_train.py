"""data.source.add_train: one source or a list of them, each in its own format, folder and input field, joined
to train after the split; dev/test duplicates dropped; errors naming the source's index and key. Small files
written from real lines of IMDB, UD English-EWT, WNUT-17 and Multi30k."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from itertools import islice
from pathlib import Path

import pytest
import yaml

from attntrain.config import build_config
from attntrain.data import build_task
from attntrain.data.inputs.kinds import tokenize
from attntrain.errors import UserError
from tests.conftest import REPO, cli_env, head_sentences, shared_data

SENTIMENT = {0: "neg", 1: "pos"}


def reviews(split: str, count: int, *, skip: int = 0) -> list[dict]:
    """Real IMDB reviews without HTML breaks (so a review's tokens are its text's), labels as neg / pos: the
    first `count` / 2 of each label (the files hold the negative reviews first) after `skip` of each."""
    with gzip.open(shared_data() / "imdb" / f"{split}.jsonl.gz", "rt", encoding="utf-8") as f:
        found = (json.loads(line) for line in f)
        plain = [row for row in found if "<br" not in row["text"]]
    half = [[row for row in plain if row["label"] == label][skip:skip + count // 2] for label in (0, 1)]
    return [{"text": row["text"], "label": SENTIMENT[row["label"]]} for pair in zip(*half) for row in pair]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A data root: main/ (40 train + 10 test reviews), ewt/ (30 sentences), wnut/ (20 sentences and one
    test review as tokens), m30k/ (25 captions and one test review as a line)."""
    root = tmp_path_factory.mktemp("sources")
    for name in ("main", "ewt", "wnut", "m30k"):
        (root / name).mkdir()
    test = reviews("test", 10)
    write_jsonl(root / "main" / "train.jsonl", reviews("train", 40))
    write_jsonl(root / "main" / "test.jsonl", test)
    data = shared_data()
    head_sentences(data / "ud_en_ewt" / "en_ewt-ud-train.conllu", root / "ewt" / "train.conllu", 30)
    head_sentences(data / "wnut17" / "wnut17train.conll", root / "wnut" / "train.conll", 20)
    with open(root / "wnut" / "train.conll", "a", encoding="utf-8") as f:  # test review 1, already split
        f.write("".join(f"{token}\tO\n" for token in tokenize(test[1]["text"], "english")) + "\n")
    with gzip.open(data / "multi30k" / "raw" / "train.en.gz", "rt", encoding="utf-8") as f:
        captions = [line for line in islice(f, 25)]
    (root / "m30k" / "train.en").write_text("".join(captions) + test[0]["text"] + "\n", encoding="utf-8")
    return root


SOURCES = [{"format": "conllu", "dataset": "ewt", "files": {"train": "train.conllu"}, "field": "words"},
           {"format": "conll", "dataset": "wnut", "files": {"train": "train.conll"}, "field": "tokens"},
           {"format": "text", "dataset": "m30k", "files": {"train": "train.en"}}]


def raw_config(root: Path, tmp_path: Path, add_train, *, head: str = "pretrain", **data) -> dict:
    source = {"format": "jsonl", "files": {"train": "train.jsonl", "test": "test.jsonl"}}
    if add_train is not None:
        source["add_train"] = add_train
    return {"name": "added", "runs_dir": str(tmp_path / "runs"),
            "data": {"root": str(root), "dataset": "main", "source": source, "split": {"dev": 5},
                     "input": {"field": "text", "tokenizer": "english"}, **data},
            "model": {"head": {"kind": head}, "embed": {"word_dim": 16, "min_freq": 1},
                      "encoder": {"num_layers": 1, "width": 16, "num_heads": 2, "ffn_dim": 32}},
            "train": {"max_steps": 2, "eval_every": 2, "threads": 1, "progress": False}}


def task_of(raw: dict):
    return build_task(build_config(raw, "test"))


def test_listed_sources_join_train_after_the_split_with_counts(root, tmp_path, capsys):
    task = task_of(raw_config(root, tmp_path, SOURCES))
    train, dev = task.read_split("train"), task.read_split("dev")
    counts = [(c["rows"], c["dropped_dev_test"]) for c in task.added_train["sources"]]
    assert counts == [(30, 0), (20, 1), (25, 1)]  # the test review as tokens (wnut) and as a line (m30k) dropped
    assert len(train) == 35 + 75 and len(dev) == 5  # dev held out from the 40 main reviews, before the join
    alone = task_of(raw_config(root, tmp_path, None))
    assert [row["_where"] for row in dev] == [row["_where"] for row in alone.read_split("dev")]
    assert [row["_where"] for row in train[:35]] == [row["_where"] for row in alone.read_split("train")]
    line = next(text for text in capsys.readouterr().err.splitlines() if text.startswith("data.source.add_train:"))
    assert "35 train rows + 75 added = 110" in line
    assert "[0] conllu ewt/train.conllu: 30 rows (0 dropped" in line and "[1] conll wnut/train.conll: 20 rows (1" in line
    assert "[2] text m30k/train.en: 25 rows (1 dropped" in line


def test_each_source_field_is_renamed_to_the_input_field(root, tmp_path):
    task = task_of(raw_config(root, tmp_path, SOURCES))
    train = task.read_split("train")
    ewt, wnut, m30k = train[35], train[65], train[85]
    first = (root / "ewt" / "train.conllu").read_text(encoding="utf-8").split("\n\n")[0]
    words = [line.split("\t")[1] for line in first.splitlines() if line[:1].isdigit() and "-" not in line.split("\t")[0]]
    assert ewt["text"] == words and "words" not in ewt and ewt["upos"]  # other fields stay, unread
    assert wnut["text"][:3] == ["@paulwalk", "It", "'s"] and "tokens" not in wnut
    with gzip.open(shared_data() / "multi30k" / "raw" / "train.en.gz", "rt", encoding="utf-8") as f:
        assert m30k["text"] == f.readline().rstrip("\n")


def test_token_lists_stay_whole_and_text_gets_the_tokenizer(root, tmp_path):
    """A CoNLL token `can't` stays one token; the same words as text are cut by the tokenizer (english: ca n't)."""
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "tokens.conll").write_text("I\tO\ncan't\tO\ngo\tO\n\n", encoding="utf-8")
    (tmp_path / "mixed" / "lines.txt").write_text("I can't go\n", encoding="utf-8")
    mixed = [{"format": "conll", "dataset": str(tmp_path / "mixed"), "files": {"train": "tokens.conll"},
              "field": "tokens"},
             {"format": "text", "dataset": str(tmp_path / "mixed"), "files": {"train": "lines.txt"}}]
    task = task_of(raw_config(root, tmp_path, mixed))
    task.prepare()
    as_tokens, as_text = task.read_split("train")[-2:]
    assert task.input_kind.tokens(as_tokens["text"]) == ["I", "can't", "go"]
    assert task.input_kind.tokens(as_text["text"]) == ["I", "ca", "n't", "go"]
    assert [task.encode(row, max_len=None)["length"] for row in (as_tokens, as_text)] == [3, 4]
    words = task.input_kind.text.words.index
    assert {"can't", "ca", "n't"} <= set(words)  # each counted as the rows gave it

    auto = task_of(raw_config(root, tmp_path, mixed, input={"field": "text", "tokenizer": "auto"}))
    auto.prepare()
    assert auto.input_kind.learned is None  # not every input is a token list: text is cut by english
    learned = task_of(raw_config(root, tmp_path, mixed, input={"field": "text", "tokenizer": "learned"}))
    learned.prepare()  # learns from the token lists, and cuts the text inputs with what it learned
    cut = learned.input_kind.learned.split("I can't go")
    assert learned.input_kind.tokens(learned.read_split("train")[-1]["text"]) == cut
    assert learned.input_kind.tokens(learned.read_split("train")[-2]["text"]) == ["I", "can't", "go"]
    alone = task_of(raw_config(root, tmp_path, None, input={"field": "text", "tokenizer": "learned"}))
    with pytest.raises(UserError, match="learned learns the token boundaries"):
        alone.prepare()  # no token list at all: nothing to learn from


def test_one_source_reads_as_a_list_of_one_and_saved_configs_load(root, tmp_path):
    one = task_of(raw_config(root, tmp_path, SOURCES[0]))
    listed = task_of(raw_config(root, tmp_path, SOURCES[:1]))
    assert one.cfg.data.source.add_train == listed.cfg.data.source.add_train
    assert [r["_where"] for r in one.read_split("train")] == [r["_where"] for r in listed.read_split("train")]
    assert one.added_train["rows"] == 30 and one.added_train["dropped_dev_test"] == 0
    saved = yaml.safe_load(yaml.safe_dump(one.cfg.to_dict()))  # a run's config.yaml reads back the same
    assert build_config(saved, "saved").data.source.add_train == one.cfg.data.source.add_train
    fixture = yaml.safe_load((REPO / "tests" / "fixtures" / "run_78c2cec" / "config.yaml").read_text())
    assert build_config(fixture, "old run").data.source.add_train is None
    sst2 = build_config({"data": {"task": "sst2", "phrases": True}}, "sst2")
    from attntrain.data.tasks.presets import expand_preset

    expand_preset(sst2)
    assert [s.files for s in sst2.data.source.add_train] == [{"train": "glue_sst2/train.tsv"}]


def test_fit_joins_labelled_text_files_and_trains(root, tmp_path):
    """A table of reviews + pos.txt / neg.txt lines (the label is the file's name) trains a classifier."""
    from attntrain.train.checkpoint import RunDir
    from attntrain.train.trainer import Trainer

    (tmp_path / "lines").mkdir()
    for label in ("pos", "neg"):
        lines = [row["text"] for row in reviews("train", 12, skip=20) if row["label"] == label]
        (tmp_path / "lines" / f"{label}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    extra = {"format": "text", "dataset": str(tmp_path / "lines"), "files": {"train": "*.txt"}}
    cfg = build_config(raw_config(root, tmp_path, [extra], head="sequence"), "test")
    task = build_task(cfg)
    task.prepare()
    assert task.added_train["rows"] == 12 and len(task.read_split("train")) == 35 + 12
    assert sorted(task.classes) == ["neg", "pos"]
    Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    assert (cfg.run_dir() / "metrics.jsonl").is_file()
    unlabelled = task_of(raw_config(root, tmp_path, SOURCES[:1], head="sequence"))
    with pytest.raises(UserError, match=r"^data\.source\.add_train\[0\]: .*no field 'label'.*need the target"):
        unlabelled.read_split("train")


def test_bad_sources_name_their_index_and_key(root, tmp_path):
    missing = [*SOURCES[:1], {"format": "text", "dataset": "m30k", "files": {"train": "nosuch.en"}}]
    with pytest.raises(UserError, match=r"^data\.source\.add_train\[1\]\.files\.train: no file matches .*nosuch"):
        task_of(raw_config(root, tmp_path, missing)).read_split("train")
    no_folder = [{**SOURCES[0], "dataset": "nosuch"}]
    with pytest.raises(UserError, match=r"^data\.source\.add_train\[0\]\.dataset: dataset 'nosuch' not found"):
        task_of(raw_config(root, tmp_path, no_folder)).read_split("train")
    unnamed = [*SOURCES[:2], {**SOURCES[2], "field": "sentence"}]
    with pytest.raises(UserError, match=r"^data\.source\.add_train\[2\]\.field: .*train\.en:1: no field 'sentence'"):
        task_of(raw_config(root, tmp_path, unnamed)).read_split("train")
    with pytest.raises(UserError, match=r"add_train\[1\]\.feld' \(did you mean 'field'\?\)"):
        build_config(raw_config(root, tmp_path, [SOURCES[0], {**SOURCES[1], "feld": "x"}]), "test")
    main_field = raw_config(root, tmp_path, None)
    main_field["data"]["source"]["field"] = "text"
    with pytest.raises(UserError, match="source.field: read for add_train rows only"):
        build_config(main_field, "test")


def test_tasks_that_would_ignore_added_rows_refuse_them(root, tmp_path):
    """A graph and a seq2seq run read data.source alone: add_train there is refused, never silently unread."""
    from attntrain.checks import check_config

    graph = raw_config(root, tmp_path, SOURCES[:1], head="tagging")
    graph["data"]["source"] = {"format": "graph", "files": {"nodes": "n.csv", "edges": "e.csv"},
                               "add_train": SOURCES[:1]}
    graph["data"]["input"] = {"field": ["x"], "kind": "graph"}
    with pytest.raises(UserError, match="source.add_train: a graph"):
        build_config(graph, "test")
    pairs = raw_config(root, tmp_path, SOURCES[:1], head="seq2seq")
    pairs["data"]["source"] = {"format": "parallel", "languages": ["de", "en"], "files": {"train": "train"},
                               "add_train": SOURCES[:1]}
    pairs["data"]["input"], pairs["data"]["target"] = {"field": "de"}, {"field": "en"}
    pairs["train"]["metric"] = "bleu"
    with pytest.raises(UserError, match="data.source.add_train: a seq2seq run reads its sentence pairs"):
        check_config(build_config(pairs, "test"), "test")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attntrain", *args], cwd=REPO, env=cli_env(), capture_output=True,
                          text=True, timeout=600)


def one_error(result: subprocess.CompletedProcess) -> str:
    """Exit 2, no traceback, one `error:` line: that line."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


def test_cli_refuses_a_source_without_its_field(root, tmp_path):
    """validate peeks each source's first row; pretrain reads every row (the 3rd row of a table lacks it)."""
    unnamed = [*SOURCES[:2], {**SOURCES[2], "field": "sentence"}]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw_config(root, tmp_path, unnamed)))
    line = one_error(cli("validate", str(path)))
    assert "data.source.add_train[2].field: no field 'sentence'" in line and "train.en" in line
    table = tmp_path / "m30k_table"
    table.mkdir()
    write_jsonl(table / "train.jsonl", [{"caption": "Two dogs run ."}, {"caption": "A man sings ."}, {"text": "x"}])
    late = [SOURCES[0], {"format": "jsonl", "dataset": str(table), "files": {"train": "train.jsonl"}, "field": "caption"}]
    path.write_text(yaml.safe_dump(raw_config(root, tmp_path, late)))
    assert cli("validate", str(path)).returncode == 0  # the first row has it
    line = one_error(cli("pretrain", str(path)))
    assert line.startswith("error: data.source.add_train[1].field: ") and "train.jsonl:3: field 'caption' is null" in line
