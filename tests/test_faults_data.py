"""Faults in a person's data: each ends in one `error:` line naming the file:line (or the key), exit 2, no
traceback and nothing written, or is cleaned and said once; never a silent wrong result. The files are tiny,
cut from real SST-2 and WNUT-17 lines where the content matters."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from attntrain.config import build_config
from attntrain.data import build_task
from attntrain.errors import UserError
from tests.conftest import REPO, cli_env, shared_data

TINY_MODEL = {"embed": {"word_dim": 16}, "encoder": {"num_layers": 1, "width": 16, "num_heads": 2, "ffn_dim": 16}}
TINY_TRAIN = {"max_steps": 2, "eval_every": 2, "threads": 1, "progress": False}


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "attntrain", *args], cwd=REPO, env=env or cli_env(),
                         capture_output=True, timeout=600)
    out.stdout, out.stderr = out.stdout.decode("utf-8", "replace"), out.stderr.decode("utf-8", "replace")
    return out


def refused(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, exactly one message line and it starts with `error:` and names every needle; no traceback and
    none of the table library's log lines."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "Failed to read file" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` and its bytes: what 'nothing changed on disk' compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def sst2_lines(count: int, offset: int = 0) -> list[tuple[str, str]]:
    """(label 0/1, sentence) of real SST-2 training lines."""
    lines = (shared_data() / "sst2" / "stsa_binary" / "stsa.binary.train").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split(" ", 1)) for line in lines[offset:offset + count]]


def wnut_sentences(count: int) -> str:
    """The first `count` sentences of WNUT-17 train (token<TAB>tag, blank line after each)."""
    text = (shared_data() / "wnut17" / "wnut17train.conll").read_text(encoding="utf-8")
    return "\n\n".join(re.split(r"\n[ \t]*\n", text)[:count]) + "\n\n"  # its blank lines may hold a tab


def csv_text(rows: list[tuple[str, str]]) -> str:
    return "text,label\n" + "".join(f'"{text}",{label}\n' for label, text in rows)


def sentiment(names: tuple[str, str] = ("negative", "positive")) -> list[tuple[str, str]]:
    return [(names[int(label)], text) for label, text in sst2_lines(12)]


def own_config(folder: Path, source: dict, *, head: str = "sequence", data: dict | None = None) -> Path:
    """A config in `folder` training a tiny model on `source`; runs go to folder/runs."""
    raw = {"name": "own", "seed": 1, "runs_dir": str(folder / "runs"),
           "data": {"source": source, "input": {"field": "tokens" if head == "tagging" else "text"},
                    "target": {"field": "tags" if head == "tagging" else "label"}, "split": {"dev": 0.0, "test": 0.0},
                    **(data or {})},
           "model": {**TINY_MODEL, "head": {"kind": head}}, "train": {**TINY_TRAIN, "eval_splits": ["train"]}}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def fit_refused(folder: Path, config: Path, *needles: str, env: dict | None = None) -> None:
    """`fit` refuses with one message and leaves the data as it was and no run file behind."""
    before = {name: data for name, data in snapshot(folder).items() if not name.startswith("runs")}
    refused(cli("fit", str(config), env=env), *needles)
    after = snapshot(folder)
    assert {name: data for name, data in after.items() if not name.startswith("runs")} == before
    assert not [name for name in after if name.startswith("runs")], "a failed fit wrote run files"


# ---- 1. one place cleans and checks targets -----------------------------------------------------

def _write(folder: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))


def _rows_with(rows: list[tuple[str, str]], line: int, label: str) -> list[tuple[str, str]]:
    """`rows` with the row on file line `line` (2 = the first after the header) given another label."""
    rows = list(rows)
    rows[line - 2] = (label, rows[line - 2][1])
    return rows


def _jsonl(rows: list[tuple[str, object]]) -> str:
    return "".join(json.dumps({"text": text, "label": label}) + "\n" for label, text in rows)


def _wnut_with(line: int, replacement: str) -> str:
    """The first 6 WNUT-17 sentences with physical line `line` replaced."""
    lines = wnut_sentences(6).split("\n")
    lines[line - 1] = replacement
    return "\n".join(lines)


def _iob1() -> str:
    """WNUT-17 sentences written IOB1 style: every B- that opens a span after O is an I-."""
    lines = []
    for line in wnut_sentences(30).split("\n"):
        token, _, tag = line.partition("\t")
        lines.append(f"{token}\tI-{tag[2:]}" if tag.startswith("B-") else line)
    return "\n".join(lines)


LABEL_FAULTS = {  # case -> (files, source, head, words the message holds)
    "empty label": ({"train.csv": csv_text(_rows_with(sentiment(), 4, ""))}, {"format": "csv"}, "sequence",
                    ["train.csv:4: no label: field 'label' is empty"]),
    "label of spaces": ({"train.csv": csv_text(_rows_with(sentiment(), 6, "  "))}, {"format": "csv"}, "sequence",
                        ["train.csv:6: no label: field 'label' is only spaces"]),
    "JSON null label": ({"train.jsonl": _jsonl(_rows_with(sentiment(), 4, None))}, {"format": "jsonl"}, "sequence",
                        ["train.jsonl:3: no label: field 'label' is null"]),
    "integers with one word": ({"train.csv": csv_text(_rows_with(sst2_lines(12), 5, "positive"))}, {"format": "csv"},
                               "sequence", ["train.csv:5: label 'positive' is text among integer labels",
                                            "11 of the train labels", "the first at", "train.csv:2"]),
    "one class (custrev.pos / custrev.neg)": (
        {"custrev.pos": "".join(t + "\n" for _, t in sst2_lines(5)),
         "custrev.neg": "".join(t + "\n" for _, t in sst2_lines(5, 5))},
        {"format": "text", "files": {"train": "custrev.*"}}, "sequence",
        ["custrev.neg:1: every one of the 10 train rows has label 'custrev'", "at least two classes"]),
    "Q-person in a BIO file": ({"train.txt": _wnut_with(20, "Person\tQ-person")}, {"format": "conll"}, "tagging",
                               ["train.txt:20: tag 'Q-person' is not valid IOB2", "data.target.scheme: none"]),
    "a third column": ({"train.txt": _wnut_with(12, "view\tO\tNN")}, {"format": "conll"}, "tagging",
                       ["train.txt:12: expected 2 columns (tokens, tags), found 3", "data.source.columns"]),
    "IOB1 tags": ({"train.txt": _iob1()}, {"format": "conll"}, "tagging",
                  ["train.txt:15: 'I-location' opens a span, as", "train tags do with I-", "looks like IOB1",
                   "data.target.repair: iob1"]),
}


@pytest.mark.parametrize("case", list(LABEL_FAULTS))
def test_label_and_tag_faults_are_one_error_naming_file_and_line(case, tmp_path):
    files, source, head, needles = LABEL_FAULTS[case]
    _write(tmp_path, files)
    source = {"files": {"train": str(tmp_path / next(iter(files)))}, **source}
    if "custrev" in case:
        source["files"] = {"train": str(tmp_path / "custrev.*")}
    fit_refused(tmp_path, own_config(tmp_path, source, head=head), *needles)


def test_spaces_around_labels_are_stripped_and_said_once(tmp_path, capfd):
    rows = sentiment()
    rows[0], rows[3] = ("positive ", rows[0][1]), (" negative", rows[3][1])
    (tmp_path / "train.csv").write_text(csv_text(rows))
    (tmp_path / "dev.csv").write_text(csv_text([("positive\t", "a fine film"), ("negative", "a dull film")]))
    cfg = build_config(yaml.safe_load(own_config(tmp_path, {"format": "csv", "files": {
        "train": str(tmp_path / "train.csv"), "dev": str(tmp_path / "dev.csv")}}).read_text()), "t")
    task = build_task(cfg)
    task.prepare()
    assert task.classes == ["negative", "positive"]  # two classes, not four
    assert [e["labels"].item() for e in task.split("dev")] == [1, 0]
    notes = [line for line in capfd.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: stripped the spaces around 3 value(s) of field 'label' (train 2, dev 1; the first: "
                     f"'positive ' at {tmp_path / 'train.csv'}:2)"]


def test_iob1_input_is_counted_or_repaired(tmp_path, capfd):
    lines = wnut_sentences(40).split("\n")
    number = next(i for i, line in enumerate(lines) if "\tB-" in line and lines[i - 1].endswith("\tO"))
    lines[number] = lines[number].replace("\tB-", "\tI-")  # one I- that opens a span after O
    (tmp_path / "train.txt").write_text("\n".join(lines))
    raw = yaml.safe_load(own_config(tmp_path, {"format": "conll", "files": {"train": str(tmp_path / "train.txt")}},
                                    head="tagging").read_text())
    task = build_task(build_config(raw, "t"))
    task.prepare()
    assert task.target.scheme == "iob2"
    err = capfd.readouterr().err
    assert "note: 1 tags of field 'tags' open a span with I- after O or another type (train 1; the first: " \
           f"'{lines[number].split(chr(9))[1]}' at {tmp_path / 'train.txt'}:{number + 1})" in err
    raw["data"]["target"]["repair"] = "iob1"
    task = build_task(build_config(raw, "t"))
    task.prepare()
    assert "note: converted 1 IOB1 tags" in capfd.readouterr().err
    opened = [tags for tags in (task.target.value(r, "t") for r in task.split_raw("train"))
              if any(i for i in range(len(tags)) if tags[i].startswith("I-") and tags[i - 1] == "O")]
    assert opened == []  # every span now opens with B-
    with pytest.raises(UserError, match="repair: iob1 converts IOB1 to IOB2 tags; it does not fit scheme bioes"):
        build_config({**raw, "data": {**raw["data"], "target": {**raw["data"]["target"], "scheme": "bioes"}}}, "t")


def test_tags_of_a_bio_file_are_checked_even_when_one_is_foreign(tmp_path):
    """One Q- tag among many B-/I- tags is an error, not a silent switch to plain tags (scheme none)."""
    from attntrain.data.targets.tags import detect_scheme

    tags = ["O"] * 50 + ["B-person", "I-person", "B-location"] * 5 + ["Q-person"]
    assert detect_scheme(tags) == "iob2"
    assert detect_scheme(["NN-TL", "-LRB-", "VB", "NN"]) == "none"  # dashes of plain tag sets are not spans
    assert detect_scheme(["B-x", "I-x", "E-x", "S-x", "O"]) == "bioes"


# ---- 2. dev / test labels before the first step ---------------------------------------------------

def test_unseen_dev_label_is_refused_before_training(tmp_path):
    rows = sentiment()
    (tmp_path / "train.csv").write_text(csv_text(rows))
    (tmp_path / "dev.csv").write_text(csv_text([("positive", "a fine film"), ("neutral", "a film")]))
    config = own_config(tmp_path, {"format": "csv", "files": {"train": str(tmp_path / "train.csv"),
                                                              "dev": str(tmp_path / "dev.csv")}})
    started = time.perf_counter()
    fit_refused(tmp_path, config, f"{tmp_path / 'dev.csv'}:3: label 'neutral' never occurs in train "
                                  "(train labels: negative, positive)")
    assert time.perf_counter() - started < 120


# ---- 3. table files the library cannot parse -----------------------------------------------------

def _ragged() -> str:
    rows = csv_text(sentiment()).splitlines()
    rows[2] = '"a quoted\nnewline",positive'  # one record on physical lines 3-4
    rows[4] = "a film, with a comma unquoted,negative"  # physical line 6
    return "\n".join(rows) + "\n"


TABLE_FAULTS = {  # case -> (file name, bytes, words the message holds)
    "ragged CSV row after a quoted newline": ("train.csv", _ragged().encode(),
                                               ["train.csv:6: 3 fields, but the header has 2 (text, label)"]),
    "UTF-16 CSV": ("train.csv", csv_text(sentiment()).encode("utf-16"),
                   ["train.csv: the file is UTF-16 text", "save it as UTF-8"]),
    "Latin-1 CSV": ("train.csv", csv_text(_rows_with(sentiment(), 3, "positive")).replace(
        '"', '"caf\u00e9 ', 1).encode("latin-1"), ["train.csv:2:5: not UTF-8 text (byte 0xe9", "Latin-1"]),
    "JSON Lines broken line": ("train.jsonl", (_jsonl(sentiment()[:3]) + '{"text": "x", "label": \n'
                                               + _jsonl(sentiment()[3:])).encode(),
                               ["train.jsonl:4:24: not a JSON record (Expecting value)"]),
}


@pytest.mark.parametrize("case", list(TABLE_FAULTS))
def test_table_parse_errors_are_one_line_with_the_physical_line_and_cause(case, tmp_path):
    name, data, needles = TABLE_FAULTS[case]
    (tmp_path / name).write_bytes(data)
    fmt = name.rsplit(".", 1)[1]
    config = own_config(tmp_path, {"format": fmt, "files": {"train": str(tmp_path / name)}})
    fit_refused(tmp_path, config, *needles)


# ---- 4. caches ------------------------------------------------------------------------------------

def _text_rows(folder: Path, name: str, **source) -> list[dict]:
    from attntrain.data.sources.rows import source_rows

    cfg = build_config({"data": {"source": {"format": "text", "files": {"train": str(folder / name)}, **source}}}, "t")
    return list(source_rows(cfg.data)["train"])


def test_row_cache_keys_hold_the_name_the_content_and_the_pattern(tmp_path):
    (tmp_path / "reviews.txt").write_text("".join(t + "\n" for _, t in sst2_lines(4)))
    os.symlink(tmp_path / "reviews.txt", tmp_path / "pos.txt")
    os.symlink(tmp_path / "reviews.txt", tmp_path / "neg.txt")
    assert {r["label"] for r in _text_rows(tmp_path, "pos.txt")} == {"pos"}
    assert {r["label"] for r in _text_rows(tmp_path, "neg.txt")} == {"neg"}  # not the rows cached for pos.txt
    # a same-size edit whose modification time is put back is read again
    path = tmp_path / "reviews.txt"
    stat = path.stat()
    path.write_text(path.read_text().replace("a", "e", 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert _text_rows(tmp_path, "neg.txt")[0]["text"].startswith(sst2_lines(1)[0][1].replace("a", "e", 1)[:20])
    # the name pattern is part of the key, and format text honours it
    rows = _text_rows(tmp_path, "neg.txt", name_pattern=r"(?P<polarity>[a-z]+)\.txt$")
    assert {(r["label"], r["polarity"]) for r in rows} == {("neg", "neg")}


def test_damaged_cache_files_are_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNTRAIN_CACHE", str(tmp_path / "cache"))  # its own cache: every file in it is damaged
    (tmp_path / "pos.txt").write_text("".join(t + "\n" for _, t in sst2_lines(300)))
    (tmp_path / "train.csv").write_text(csv_text(sentiment()))
    from attntrain.data.sources.root import cache_root
    from attntrain.data.sources.tables import load_table

    first = _text_rows(tmp_path, "pos.txt")
    table = load_table(tmp_path / "train.csv", "csv").to_list()
    damaged = list(cache_root().rglob("*.arrow"))
    assert len(damaged) >= 2  # the text rows and the csv table
    for path in damaged:
        data = bytearray(path.read_bytes())
        data[len(data) // 3: len(data) // 3 + 64] = bytes(range(128, 192))  # never valid UTF-8
        path.write_bytes(bytes(data))
    assert _text_rows(tmp_path, "pos.txt") == first
    assert load_table(tmp_path / "train.csv", "csv").to_list() == table


def test_a_cache_variable_that_names_a_file_is_one_message(tmp_path):
    (tmp_path / "train.csv").write_text(csv_text(sentiment()))
    config = own_config(tmp_path, {"format": "csv", "files": {"train": str(tmp_path / "train.csv")}})
    (tmp_path / "cache").write_text("not a folder")
    env = {**cli_env(), "ATTNTRAIN_CACHE": str(tmp_path / "cache")}
    fit_refused(tmp_path, config, f"$ATTNTRAIN_CACHE={tmp_path / 'cache'}: the data cache must be a folder", env=env)


# ---- 5. reader options, comments, non-finite samples -------------------------------------------

def test_an_option_the_reader_does_not_read_is_refused_by_name(tmp_path):
    (tmp_path / "train.csv").write_text(csv_text(sentiment()))
    config = own_config(tmp_path, {"format": "csv", "files": {"train": str(tmp_path / "train.csv")},
                                   "name_pattern": "(?P<x>.*)"})
    refused(cli("validate", str(config)), "data.source: name_pattern: format csv does not read it",
            "only text, audiofolder, imagefolder")
    config = own_config(tmp_path, {"format": "text", "files": {"train": str(tmp_path / "train.csv")},
                                   "columns": ["label", "text"]})
    refused(cli("validate", str(config)), "data.source: columns: format text does not read it")


def test_comment_lines_of_conll_files_are_skipped_and_hashtags_kept(tmp_path):
    from attntrain.data.sources.readers import read_source

    uner = ("# sent_id = en_ewt-ud-train-0001\n# text = Al-Zaman : American forces\n"
            "Al-Zaman\tB-ORG\n:\tO\nAmerican\tB-LOC\nforces\tO\n\n"
            "# sent_id = 2\n#\tO\n#fail\tO\n# O\nNYC\tB-LOC\n\n")
    (tmp_path / "en_ewt-ud-train.iob2").write_text(uner)
    cfg = build_config({"data": {"source": {"format": "conll", "files": {"train": str(tmp_path / "*.iob2")}}}}, "t")
    rows = read_source(cfg.data)["train"]
    assert [r["tokens"] for r in rows] == [["Al-Zaman", ":", "American", "forces"], ["#", "#fail", "#", "NYC"]]
    assert rows[1]["tags"] == ["O", "O", "O", "B-LOC"]
    assert rows[0]["_where"].endswith(".iob2:3")  # the first token's line, not the comment's


def test_nan_samples_in_a_wav_name_the_file(tmp_path):
    import numpy as np
    import soundfile

    wave, rate = soundfile.read(str(shared_data() / "fsdd" / "recordings" / "7_theo_3.wav"), dtype="float32")
    for digit in "0123":
        folder = tmp_path / "wavs" / digit
        folder.mkdir(parents=True)
        for index in range(2):
            soundfile.write(str(folder / f"{digit}_{index}.wav"), wave, rate, subtype="FLOAT")
    broken = wave.copy()
    broken[100:103] = np.nan
    soundfile.write(str(tmp_path / "wavs" / "2" / "2_1.wav"), broken, rate, subtype="FLOAT")
    config = own_config(tmp_path, {"format": "audiofolder", "path": str(tmp_path / "wavs")},
                        data={"input": {"field": "path", "kind": "audio"}})
    fit_refused(tmp_path, config, f"{tmp_path / 'wavs' / '2' / '2_1.wav'}: 3 of its {len(wave)} samples are NaN "
                                  "or infinite (the first at sample 100")


# ---- 6. validate peeks at the data -----------------------------------------------------------------

def test_validate_checks_every_field_name_against_the_first_rows(tmp_path):
    (tmp_path / "all.csv").write_text("text,label,part\n" + "".join(f'"{t}",{y},train\n' for y, t in sst2_lines(6)))
    config = own_config(tmp_path, {"format": "csv", "path": str(tmp_path / "all.csv")},
                        data={"split": {"column": "part"}})
    assert cli("validate", str(config)).returncode == 0
    from tests.test_startup import assert_light, run_cli

    results, _ = run_cli([["validate", str(config)], ["validate", str(config), "--set", "data.input.field=x"]], tmp_path)
    assert [r["code"] for r in results] == [0, 2]
    assert_light(results)  # the peek loads no data library (nor torch)
    for key, value, needle in (("data.input.field", "sentence", "data.input.field: no field 'sentence'"),
                               ("data.target.field", "labels", "no field 'labels' (did you mean 'label'?)"),
                               ("data.split.column", "split", "data.split.column: no field 'split'")):
        refused(cli("validate", str(config), "--set", f"{key}={value}"), needle, f"{tmp_path / 'all.csv'}",
                "(its fields: text, label, part)")
    refused(cli("validate", str(config), "--set", "data.split.seed=-1"), "data.split.seed")
    nodes, edges = tmp_path / "nodes.csv", tmp_path / "edges.csv"
    nodes.write_text("id,features,label\n1,0 1,a\n2,1 0,b\n")
    edges.write_text("source,target\n1,2\n")
    raw = yaml.safe_load(config.read_text())
    raw["data"] = {"source": {"format": "graph", "files": {"nodes": str(nodes), "edges": str(edges)}},
                   "input": {"field": "features", "kind": "graph"}, "target": {"field": "label"}}
    raw["model"]["head"]["kind"] = "tagging"
    config.write_text(yaml.safe_dump(raw))
    assert cli("validate", str(config)).returncode == 0, cli("validate", str(config)).stderr
    refused(cli("validate", str(config), "--set", "data.graph.node_id=node"), "data.graph.node_id: no field 'node'",
            "nodes.csv (its fields: id, features, label)")
    refused(cli("validate", str(config), "--set", "data.graph.edge_fields=[from,to]"),
            "data.graph.edge_fields: no field 'from'", "edges.csv")


# ---- 7. BLEU of languages written without spaces ---------------------------------------------------

def test_bleu_tokenizer_is_a_setting_named_in_the_signature():
    import importlib.util

    from attntrain.model.bleu import TranslationMeter, corpus_scores

    hypotheses, references = ["猫がマットの上に座った。", "今日は良い天気です。"], ["猫がマットの上に座っていた。", "今日はいい天気です。"]
    plain, _ = corpus_scores(hypotheses, references)
    by_char, signatures = corpus_scores(hypotheses, references, "char")
    assert plain["bleu"] == 0.0 and by_char["bleu"] > 50  # 13a sees each sentence as one word
    assert "tok:char" in signatures["bleu_signature"]
    meter = TranslationMeter(lambda ids: "".join(map(chr, ids)), None, tokenize="zh")
    meter.update(type("Out", (), {"tokens": [[ord(c) for c in h] for h in hypotheses], "beam": 1})(),
                 {"references": references})
    assert "tok:zh" in meter.compute()["bleu_signature"]
    assert build_config({"model": {"head": {"decoder": {"bleu_tokenize": "char"}}}}, "t").model.head.decoder.bleu_tokenize \
        == "char"
    if importlib.util.find_spec("MeCab") is None:
        with pytest.raises(UserError, match="bleu_tokenize.*ja-mecab needs the MeCab and ipadic packages"):
            build_config({"model": {"head": {"decoder": {"bleu_tokenize": "ja-mecab"}}}}, "t")


def test_a_null_input_names_file_and_line(tmp_path):
    rows = [{"text": text, "label": label} for label, text in sentiment()]
    rows[2]["text"] = None
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    task = build_task(build_config(yaml.safe_load(own_config(tmp_path, {"format": "jsonl", "files": {
        "train": str(tmp_path / "train.jsonl")}}).read_text()), "t"))
    with pytest.raises(UserError, match=r"train.jsonl:3: field 'text' must be text or a list of tokens, got null"):
        task.prepare()
