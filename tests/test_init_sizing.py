"""`attntrain init` on every source kind the README lists: the config it writes validates, is sized to the
data (budget, batch, evaluation, patience, with the figures in comments), never holds a setting the data
makes void, and trains as written (a few steps) on small slices of the real datasets."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from attntrain.config import load_config
from attntrain.errors import UserError
from attntrain.init import model_lines, starter_config
from attntrain.sizing import Profile, budget, data_lines, metric_lines, train_lines
from attntrain.train.checkpoint import RunDir
from attntrain.train.schedule import steps_per_epoch
from attntrain.train.trainer import Trainer
from tests.conftest import REPO, cli_env, head_sentences, shared_data

spec = importlib.util.spec_from_file_location("own_data_examples", REPO / "scripts" / "own_data_examples.py")
examples = importlib.util.module_from_spec(spec)
spec.loader.exec_module(examples)


def head_lines(src: Path, dst: Path, count: int) -> Path:
    with open(src, encoding="utf-8") as f:
        dst.write_text("".join(line for _, line in zip(range(count), f)), encoding="utf-8")
    return dst


def txt_folder(own: Path) -> Path:
    """pos.txt / neg.txt in one folder, no split (the issue's `[Errno 21] Is a directory` case)."""
    return examples.write("sst2_text", own, limit=400)


def label_is_extension(own: Path) -> Path:
    folder = own / "rt_polarity"
    folder.mkdir(exist_ok=True)
    source = txt_folder(own)
    for label in ("pos", "neg"):
        (folder / f"rt-polarity.{label}").write_text((source / f"{label}.txt").read_text())
    return folder


def labeled_lines(own: Path) -> Path:
    return head_lines(shared_data() / "sst2" / "stsa_binary" / "stsa.binary.train", own / "sentences.txt", 400)


def bio_txt(own: Path) -> Path:
    return head_lines(shared_data() / "wnut17" / "wnut17train.conll", own / "tweets.txt", 4000)


def conllu(own: Path) -> Path:
    folder = own / "ewt_conllu"
    folder.mkdir(exist_ok=True)
    for split, count in (("train", 200), ("dev", 60), ("test", 60)):
        head_sentences(shared_data() / "ud_en_ewt" / f"en_ewt-ud-{split}.conllu", folder / f"{split}.conllu", count)
    return folder / "train.conllu"


# (name, how to make the data, --target, what the config must say about splits)
SOURCES = [
    ("csv table", lambda own: examples.write("sst2_csv", own, limit=300) / "train.csv", "label", "given"),
    ("folder of pos.txt / neg.txt", txt_folder, "label", "ratio"),
    ("pos.txt / neg.txt in split folders", lambda own: examples.write("sst2_3k", own, limit=150), "label", "given"),
    ("a .txt of <label> <text> lines", labeled_lines, "label", "ratio"),
    ("name.pos / name.neg", label_is_extension, "label", "ratio"),
    ("BIO .txt", bio_txt, "tags", "ratio"),
    ("CoNLL-U", conllu, "upos", "given"),
    ("jsonl token lists", lambda own: examples.write("ewt_jsonl", own, limit=150) / "train.jsonl", "upos", "given"),
    ("parallel text", lambda own: examples.write("multi30k_text", own, limit=200), "en", "given"),
    ("audio folder", lambda own: examples.write("fsdd_audio", own, limit=7), "label", "dev only"),
    ("image folder", lambda own: examples.write("mnist_png", own, limit=12), "label", "dev only"),
    ("graph tables", lambda own: examples.write("cora_tables", own), "label", "column"),
    ("saved HF dataset", lambda own: examples.write("sst2_hf", own, limit=150), "label", "given"),
    ("jsonl of long reviews", lambda own: examples.write("imdb_jsonl", own, limit=150) / "train.jsonl", "label",
     "dev only"),
]


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    return tmp_path_factory.mktemp("own")


@pytest.mark.parametrize("name,make,target,splits", SOURCES, ids=[s[0] for s in SOURCES])
def test_init_writes_a_sized_config_that_trains_as_written(own, tmp_path, name, make, target, splits):
    data = make(own)
    out = tmp_path / "mine.yaml"
    text = starter_config(data, target, out=out)
    assert text.startswith(f"# attntrain fit {out} ")  # the header names the file it writes
    out.write_text(text)
    raw = yaml.safe_load(text)
    split = raw["data"].get("split", {})
    if splits == "given":
        assert "split" not in raw["data"]
    elif splits == "dev only":  # a test/ folder exists: a test fraction would be void
        assert "test" not in split or split["test"] == 0.0, split
    elif splits == "column":
        assert split == {"column": "split"}
    else:
        assert split["test"] > 0
    train = raw["train"]
    if name == "graph tables":  # one step is one epoch: max_epochs is the budget, no max_steps to be capped
        assert train["max_epochs"] == 1000 and "max_steps" not in train
    else:
        assert train["min_steps"] >= train["max_epochs"] and "patience" in train
        assert "# " in text.split("max_epochs:")[1].splitlines()[0]  # the figure behind the choice
    cfg = load_config(out, [f"runs_dir={tmp_path / 'runs'}", "train.max_steps=3", "train.threads=1",
                            "train.progress=false", "data.eval_limit=40"])
    trainer = Trainer(cfg, RunDir(cfg.run_dir()), resume=False)
    if "min_steps" in train:  # the batches init sized the budget by are the batches the run makes
        planned, made = train["min_steps"] / train["max_epochs"], steps_per_epoch(trainer.task, cfg.train)
        assert planned / 2 <= made <= planned * 2, (planned, made)
    result = trainer.fit()
    assert result.step == 3 and set(result.metrics) == {"dev", "test"}


def test_the_init_command_on_a_folder_and_on_a_txt_file(own, tmp_path):
    """The two reported failures, through the command line (this worktree's code)."""
    for data in (txt_folder(own), labeled_lines(own)):
        out = tmp_path / f"{data.stem}.yaml"
        done = subprocess.run([sys.executable, "-m", "attntrain", "init", str(data), "--target", "label",
                               "--out", str(out)], capture_output=True, text=True,
                              env={**cli_env(), "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr
        assert load_config(out).data.source.format in ("text", "labeled_lines")


def test_an_unknown_txt_and_an_unknown_suffix_are_one_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("".join(f"word{i} and some more words\n" for i in range(50)))
    with pytest.raises(UserError, match=r"notes.txt: cannot tell what this .txt holds"):
        starter_config(tmp_path / "notes.txt", "label")
    (tmp_path / "data.xyz1").write_text("x")
    with pytest.raises(UserError, match="unknown file type"):
        starter_config(tmp_path / "data.xyz1", "label")


def test_the_budget_grows_with_a_smaller_set():
    small, full, large = (budget(Profile("text", "sequence", n)) for n in (3_000, 6_920, 200_000))
    assert small == (20, 20 * 94)  # 60,000 examples seen over 94 batches of 32
    assert full[0] == 10 and large[0] == 10  # at least 10 passes
    assert budget(Profile("text", "sequence", 100))[0] == 100  # at most 100 passes
    lines = data_lines(Profile("text", "sequence", 3_000, lengths=[10] * 50 + [30] * 50))
    assert lines[0].split()[1] == "800" and "20 tokens" in lines[0]  # 32 x (20 + 2 ends) = 704, rounded up to 100


def test_a_small_text_set_labelled_as_a_whole_also_reads_characters():
    def embed(count: int, mode: str = "sequence") -> dict:
        text = "\n".join(model_lines(Profile("text", mode, count, labels=Counter(a=1, b=1))))
        return yaml.safe_load(text)["model"]["embed"]

    assert embed(3_000)["char_dim"] == 48  # 42% of sst2_3k's test word types never occur in its train
    assert "char_dim" not in embed(50_000)  # a large set sees its words; characters would only cost time
    assert embed(50_000, "tagging")["char_dim"] == 48  # taggers always read characters


def test_long_texts_labelled_as_a_whole_get_the_narrow_recipe_and_a_budget_in_tokens():
    """IMDB-like reviews (232 words on average): before, 10 passes of a 2-layer, 256-wide model."""
    reviews = Profile("text", "sequence", 22_500, lengths=[120] * 50 + [344] * 49 + [2000],
                      labels=Counter(pos=1, neg=1))
    raw = yaml.safe_load("\n".join(["data:"] + data_lines(reviews) + model_lines(reviews)))
    assert raw["model"]["encoder"]["num_layers"] == 1 and raw["model"]["encoder"]["width"] == 64
    assert raw["data"]["max_len"] == 512 and raw["data"]["truncate"] == "head_tail"  # the 2,000-word review is cut
    assert "1.0% of inputs are longer" in data_lines(reviews)[1]
    passes, steps = budget(reviews)
    assert passes == 4  # ~5.5M tokens a pass (inputs cut at 512): 25M tokens at most, not 10 passes
    assert "long inputs" in train_lines(reviews)[0]
    sentences = Profile("text", "sequence", 22_500, lengths=[20] * 100, labels=Counter(pos=1, neg=1))
    assert budget(sentences)[0] == 10 and "long inputs" not in train_lines(sentences)[0]
    assert yaml.safe_load("\n".join(model_lines(sentences)))["model"]["encoder"]["num_layers"] == 2
    assert "truncate" not in "\n".join(data_lines(sentences))
    huge = Profile("text", "sequence", 100_000, lengths=[3000] * 10)  # 51M tokens a pass: still 3 passes
    assert budget(huge)[0] == 3
    clips = Profile("audio", "sequence", 85_000, lengths=[300] * 10)  # 25.6M frames a pass, but not text: 10 passes
    assert budget(clips)[0] == 10
    tagged = Profile("text", "tagging", 100_000, lengths=[600] * 10)  # long sentences to tag: no cap, no truncate
    assert budget(tagged)[0] == 10 and "truncate" not in "\n".join(data_lines(tagged))
    few = Profile("text", "sequence", 500, lengths=[3000] * 10)  # 256k tokens a pass: the example floor rules
    assert budget(few)[0] == 97  # 120 passes for 60,000 seen, at most 100, at most 25M / 256k = 97 in tokens


def test_an_unbalanced_label_set_is_scored_by_macro_f1():
    line = metric_lines(Profile("text", "sequence", 1000, labels=Counter(spam=90, ham=910)))[0]
    assert "macro_f1" in line and "ham 91%" in line
    assert "accuracy" in metric_lines(Profile("text", "sequence", 1000, labels=Counter(a=50, b=50)))[0]


def test_name_pos_name_neg_take_the_label_from_the_extension(own):
    from attntrain.config import DataConfig
    from attntrain.data.sources.readers import read_source

    folder = label_is_extension(own)
    source = starter_config(folder, "label").split("source: ")[1].splitlines()[0]
    rows = read_source(DataConfig(source=yaml.safe_load(source)))["all"]
    assert Counter(r["label"] for r in rows).keys() == {"pos", "neg"}


def test_a_treebank_folder_as_distributed_reads_its_split_files_past_license_and_readme(own):
    """UD's own layout: en_ewt-ud-{train,dev,test}.conllu beside LICENSE.txt and README.md (init used to stop
    at the LICENSE.txt)."""
    folder = own / "UD_English-EWT"
    folder.mkdir(exist_ok=True)
    for split, count in (("train", 120), ("dev", 40), ("test", 40)):
        head_sentences(shared_data() / "ud_en_ewt" / f"en_ewt-ud-{split}.conllu",
                       folder / f"en_ewt-ud-{split}.conllu", count)
    (folder / "LICENSE.txt").write_text("Attribution-ShareAlike 4.0 International\n\nsome license words\n")
    (folder / "README.md").write_text("# Summary\n")
    files = yaml.safe_load(starter_config(folder, "upos"))["data"]["source"]["files"]
    assert files == {split: str(folder / f"en_ewt-ud-{split}.conllu") for split in ("train", "dev", "test")}


def test_wnut_names_split_words_inside_names_and_another_suffix_for_test(own):
    """wnut17train.conll, emerging.dev.conll, emerging.test.annotated: all three splits, not dev alone."""
    folder = own / "wnut"
    folder.mkdir(exist_ok=True)
    src = shared_data() / "wnut17"
    for name, count in (("wnut17train.conll", 3000), ("emerging.dev.conll", 800), ("emerging.test.annotated", 800)):
        head_lines(src / name, folder / name, count)
    raw = yaml.safe_load(starter_config(folder, None))  # --target guessed: the one tag column
    assert raw["data"]["source"]["files"] == {"train": str(folder / "wnut17train.conll"),
                                              "dev": str(folder / "emerging.dev.conll"),
                                              "test": str(folder / "emerging.test.annotated")}
    assert raw["data"]["target"]["field"] == "tags" and "split" not in raw["data"]


def test_gzipped_tables_and_a_guessed_target(own):
    """IMDB as shipped: train.jsonl.gz / test.jsonl.gz; dev is held out of train; --target is its label field."""
    import gzip

    folder = own / "imdb_gz"
    folder.mkdir(exist_ok=True)
    for split in ("train", "test"):
        with gzip.open(shared_data() / "imdb" / f"{split}.jsonl.gz", "rt", encoding="utf-8") as f:
            lines = [next(f) for _ in range(200)]
        with gzip.open(folder / f"{split}.jsonl.gz", "wt", encoding="utf-8") as f:
            f.writelines(lines)
    raw = yaml.safe_load(starter_config(folder, None))
    assert raw["data"]["source"] == {"format": "jsonl", "files": {"train": str(folder / "train.jsonl.gz"),
                                                                  "test": str(folder / "test.jsonl.gz")}}
    assert raw["data"]["target"]["field"] == "label" and raw["data"]["split"] == {"dev": 0.1, "seed": 0}
    (folder / "notes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match=r"--target: name the field to predict \(fields: a, b\)"):
        starter_config(folder / "notes.csv", None)


def test_init_with_word_vectors_starts_the_word_table_from_them(own, tmp_path):
    """--vectors: the embed line takes the file's width, path and vectors_extend, the comment its coverage, and
    the run's word table holds the file's vectors (a 16-wide file of words from the slice, seeded values)."""
    import numpy as np

    data = examples.write("sst2_3k", own, limit=150)
    words = sorted({w.lower() for line in (data / "train" / "pos.txt").read_text().splitlines() for w in line.split()})
    rng = np.random.default_rng(0)
    table = {word: rng.normal(size=16).round(4) for word in words[:200]}
    vectors = tmp_path / "vectors.txt"
    vectors.write_text(f"{len(table)} 16\n" + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in table.items()))
    out = tmp_path / "with_vectors.yaml"
    text = starter_config(data, "label", out=out, vectors=vectors)
    assert f"--vectors {vectors}" in text.splitlines()[0]
    embed = yaml.safe_load(text)["model"]["embed"]
    assert (embed["word_dim"], embed["vectors"], embed["vectors_extend"]) == (16, str(vectors), True)
    assert "200 words, 16 wide, covering" in text and "% of the training tokens" in text
    out.write_text(text)
    cfg = load_config(out, [f"runs_dir={tmp_path / 'runs'}", "train.max_steps=1", "train.threads=1",
                            "train.progress=false", "data.eval_limit=20"])
    trainer = Trainer(cfg, RunDir(cfg.run_dir()), resume=False)
    vocab = trainer.task.input_kind.text.words.items
    word = next(w for w in words[:200] if w in vocab)
    row = trainer.model.embed.words.table.weight[vocab.index(word)].detach().numpy()
    assert np.allclose(row, table[word], atol=1e-4)


@pytest.mark.parametrize("name,make,target", [
    ("audio folder", lambda own: examples.write("fsdd_audio", own, limit=3), "label"),
    ("parallel text", lambda own: examples.write("multi30k_text", own, limit=50), "en"),
    ("graph tables", lambda own: examples.write("cora_tables", own), "label")])
def test_vectors_for_data_without_a_word_table_are_one_clear_error(own, tmp_path, name, make, target):
    with pytest.raises(UserError, match="--vectors"):
        starter_config(make(own), target, vectors=tmp_path / "any.vec")


def test_a_missing_vector_file_is_named(own, tmp_path):
    with pytest.raises(UserError, match="no file .*missing.vec"):
        starter_config(examples.write("sst2_3k", own, limit=150), "label", vectors=tmp_path / "missing.vec")
