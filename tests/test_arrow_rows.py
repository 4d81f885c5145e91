"""Rows of the generic task in memory-mapped Arrow (attntrain.data.sources.rows.source_rows): every row still names
its file:line, the row cache follows the files and survives damage, splits pick the same rows as a plain list
computation, and finding a cached text encoding reads no row."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from attntrain.errors import UserError

from attntrain.config import build_config
from attntrain.data import build_task
from attntrain.data.sources.arrow import ArrowRows
from attntrain.data.tasks.splits import ratio_split
from attntrain.data.sources.readers import read_source
from attntrain.data.sources.rows import source_rows
from attntrain.data.sources.root import cache_dir
from tests.conftest import head_sentences, shared_data


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Slices of SST-2 as CSV (with a split column in all.csv) and of WNUT-17 (CoNLL)."""
    root = tmp_path_factory.mktemp("rows")
    lines = (shared_data() / "sst2" / "stsa_binary" / "stsa.binary.train").read_text(encoding="utf-8").splitlines()
    splits = ["train", "validation", "test", "train", "TRAIN"]
    with open(root / "all.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["label", "text", "part"])
        out.writerows([*line.split(" ", 1), splits[i % len(splits)]] for i, line in enumerate(lines[:300]))
    for name, part in (("a.csv", lines[:40]), ("b.csv", lines[40:70])):
        with open(root / name, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["label", "text"])
            out.writerows(line.split(" ", 1) for line in part)
    head_sentences(shared_data() / "wnut17" / "wnut17train.conll", root / "train.conll", 200)
    return root


def data_config(root: Path, source: dict, *, field: str = "text", target: str = "label", head: str = "sequence",
                **data):
    raw = {"name": "rows", "data": {"source": source, "input": {"field": field}, "target": {"field": target}, **data},
           "model": {"embed": {"word_dim": 16}, "head": {"kind": head}}}
    return build_config(raw, "test")


def test_csv_rows_are_memory_mapped_and_name_their_line(root):
    cfg = data_config(root, {"format": "csv", "files": {"train": [str(root / "a.csv"), str(root / "b.csv")]}})
    rows = source_rows(cfg.data)["train"]
    assert isinstance(rows, ArrowRows) and rows.dataset.cache_files  # the library's Arrow files, memory-mapped
    assert "_where" not in rows.dataset.column_names  # computed from the files' row counts, not stored
    assert rows[0]["_where"] == f"{root / 'a.csv'}:2" and rows[39]["_where"] == f"{root / 'a.csv'}:41"
    assert rows[40]["_where"] == f"{root / 'b.csv'}:2" and rows[-1]["_where"] == f"{root / 'b.csv'}:31"
    assert list(rows) == read_source(cfg.data)["train"]  # the same dicts as the list reader, _where included
    picked = rows.select([45, 3])
    assert [r["_where"] for r in picked] == [f"{root / 'b.csv'}:7", f"{root / 'a.csv'}:5"]
    assert picked[1:][0]["_where"] == f"{root / 'a.csv'}:5" and picked.take([1]) == [rows[3]]


def test_conll_rows_are_cached_arrow_with_their_lines(root):
    cfg = data_config(root, {"format": "conll", "files": {"train": str(root / "train.conll")}},
                      field="tokens", target="tags", head="tagging")
    rows = source_rows(cfg.data)["train"]
    cached = [Path(f["filename"]) for f in rows.dataset.cache_files]
    assert cached and all(p.parent == cache_dir() / "rows" for p in cached)
    assert list(rows) == read_source(cfg.data)["train"]
    assert rows[0]["_where"] == f"{root / 'train.conll'}:1"
    text = (root / "train.conll").read_text(encoding="utf-8").splitlines()
    line = int(rows[5]["_where"].rsplit(":", 1)[1])
    assert text[line - 1].split("\t")[0] == rows[5]["tokens"][0] and len(rows) == 200


def test_a_changed_file_gets_new_rows_and_a_damaged_cache_is_rebuilt(root, tmp_path):
    conll = tmp_path / "train.conll"
    head_sentences(root / "train.conll", conll, 20)
    cfg = data_config(root, {"format": "conll", "files": {"train": str(conll)}}, field="tokens", target="tags",
                      head="tagging")
    first = source_rows(cfg.data)["train"]
    path = Path(first.dataset.cache_files[0]["filename"])
    assert source_rows(cfg.data)["train"].dataset.cache_files[0]["filename"] == str(path)  # read again, same file

    head_sentences(root / "train.conll", conll, 25)  # more sentences: size and mtime change
    changed = source_rows(cfg.data)["train"]
    assert len(changed) == 25 and changed.dataset.cache_files[0]["filename"] != str(path)

    stamp = conll.stat().st_mtime_ns
    os.utime(conll, ns=(stamp + 10**9, stamp + 10**9))  # touched: same bytes, another file identity
    touched = source_rows(cfg.data)["train"]
    assert touched.dataset.cache_files[0]["filename"] != changed.dataset.cache_files[0]["filename"]

    damaged = Path(touched.dataset.cache_files[0]["filename"])
    expected = list(touched)
    del touched
    damaged.write_bytes(damaged.read_bytes()[:100])  # truncated
    rebuilt = source_rows(cfg.data)["train"]
    assert list(rebuilt) == expected and damaged.stat().st_size > 100


def test_split_column_and_ratio_pick_the_rows_a_list_would(root):
    source = {"format": "csv", "path": str(root / "all.csv")}
    plain = read_source(data_config(root, source).data)["all"]  # the rows as one list, computed by hand below

    task = build_task(data_config(root, source, split={"column": "part"}))
    by_hand = {name: [row for row in plain if row["part"].lower() in aliases]
               for name, aliases in (("train", ("train",)), ("dev", ("validation",)), ("test", ("test",)))}
    for name, rows in by_hand.items():
        assert isinstance(task.read_split(name), ArrowRows) and list(task.read_split(name)) == rows

    task = build_task(data_config(root, source, split={"dev": 0.2, "test": 0.1, "seed": 5}))
    task.prepare()
    index = ratio_split(len(plain), 0.2, 0.1, 5)
    assert task.state()["split_index"] == index
    for name in ("train", "dev", "test"):
        assert list(task.read_split(name)) == [plain[i] for i in index[name]]
    limited = build_task(data_config(root, source, split={"dev": 0.2, "test": 0.1, "seed": 5}, train_limit=7))
    assert list(limited.split_raw("train")) == [plain[i] for i in index["train"][:7]]


def test_a_bad_split_value_names_the_file_line(root, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("label,text,part\n1,good,train\n0,bad,holdout\n", encoding="utf-8")
    task = build_task(data_config(root, {"format": "csv", "path": str(bad)}, split={"column": "part"}))
    with pytest.raises(Exception, match=f"{bad}:3: split column 'part' holds 'holdout'"):
        task.read_split("train")


def test_a_cached_text_encoding_is_found_without_reading_rows(root, monkeypatch):
    cfg = data_config(root, {"format": "csv", "path": str(root / "all.csv")}, split={"column": "part"})
    first = build_task(cfg)
    first.prepare()
    encoded = first.split("train")
    state = first.state()

    def no_rows(*args, **kwargs):
        raise AssertionError("a row was read")

    again = build_task(cfg)
    again.prepare(state)
    train = again.split_raw("train")
    for name in ("__iter__", "take", "dicts", "__getitem__"):
        monkeypatch.setattr(ArrowRows, name, no_rows)
    monkeypatch.setattr(type(train.dataset), "map", no_rows)
    found = again._encode_text(train, cfg.data.max_len)
    assert found.dataset.cache_files == encoded.dataset.cache_files
    assert found.lengths.tolist() == encoded.lengths.tolist()


def test_a_changed_csv_gets_a_new_fingerprint_so_its_encoding_is_made_again(root, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("text,label\na b,pos\nc d,neg\n", encoding="utf-8")
    cfg = data_config(root, {"format": "csv", "files": {"train": str(table)}})
    first = source_rows(cfg.data)["train"].dataset._fingerprint
    assert source_rows(cfg.data)["train"].dataset._fingerprint == first  # unchanged file: the same key
    table.write_text("text,label\na b,neg\nc d,neg\n", encoding="utf-8")  # same size, other content and mtime
    os.utime(table, ns=(table.stat().st_atime_ns, table.stat().st_mtime_ns + 10**9))
    changed = source_rows(cfg.data)["train"]
    assert changed.dataset._fingerprint != first and changed[0]["label"] == "neg"


def test_a_saved_dataset_written_again_with_other_rows_is_encoded_again(tmp_path, monkeypatch):
    """`save_to_disk` of other rows can keep the fingerprint (it says how the data was made, not what it holds);
    the encoding cache must still see the new rows (here: every label flipped)."""
    import datasets

    from attntrain.config import build_config
    from attntrain.data import build_task

    monkeypatch.setenv("ATTNTRAIN_CACHE", str(tmp_path / "cache"))
    sentences = [line.split(" ", 1) for line in (shared_data() / "sst2" / "stsa_binary" / "stsa.binary.dev").read_text(
        encoding="utf-8").splitlines()[:40]]
    source, folder = tmp_path / "rows.tsv", tmp_path / "saved"

    def rows(path):
        for line in open(path, encoding="utf-8"):
            label, text = line.rstrip("\n").split("\t")
            yield {"text": text, "label": label}

    encoded = []
    for flip in (False, True):
        source.write_text("".join(f"{'01'[int(label) ^ flip]}\t{text}\n" for label, text in sentences), encoding="utf-8")
        saved = datasets.Dataset.from_generator(rows, gen_kwargs={"path": str(source)}, cache_dir=str(tmp_path / f"gen{flip}"))
        saved.save_to_disk(str(folder))
        cfg = build_config({"name": "hf", "data": {"source": {"format": "hf", "path": str(folder)}, "input": {"field": "text"},
                                                   "target": {"field": "label"}, "split": {"dev": 0.25, "test": 0.25}},
                            "model": {"head": {"kind": "sequence"}}}, "test")
        task = build_task(cfg)
        task.prepare()
        raw, split = task.split_raw("train"), task.split("train")
        assert [int(item["labels"]) for item in split] == [int(task.encode(row, max_len=None)["labels"]) for row in raw]
        encoded.append([task.target.labels.items[int(item["labels"])] for item in split])
    assert encoded[0] != encoded[1]


def test_rows_streamed_to_arrow_keep_every_field_and_type_or_say_which_row(tmp_path):
    from attntrain.data.sources.arrow import write_arrow
    from attntrain.errors import UserError

    def rows(*values):
        return ({**value, "_where": f"meta.jsonl:{i + 1}"} for i, value in enumerate(values))

    same = write_arrow(tmp_path / "a.arrow", None, rows({"a": 1, "b": None}, {"a": 2, "b": "x"}), batch_rows=1)
    assert same["a"] == [1, 2] and same["b"] == [None, "x"]
    with pytest.raises(UserError, match=r"meta.jsonl:2: field\(s\) c not in the first rows"):
        write_arrow(tmp_path / "b.arrow", None, rows({"a": 1}, {"a": 2, "c": 3}), batch_rows=1)
    with pytest.raises(UserError, match=r"rows from meta.jsonl:2 on: field 'a' holds values of another type"):
        write_arrow(tmp_path / "c.arrow", None, rows({"a": 1}, {"a": 1.5}), batch_rows=1)  # never truncated to 1
    assert not list(tmp_path.glob("[bc].arrow*"))  # nothing half-written left behind


def test_a_saved_split_index_beyond_the_rows_is_one_error_not_other_rows(root):
    source = {"format": "csv", "path": str(root / "all.csv")}
    task = build_task(data_config(root, source, split={"dev": 0.2, "test": 0.1, "seed": 5}))
    task.prepare()
    state = task.state()
    count = sum(len(v) for v in state["split_index"].values())
    state["split_index"]["dev"] = state["split_index"]["dev"] + [count]  # as a run whose split counted more rows
    again = build_task(data_config(root, source, split={"dev": 0.2, "test": 0.1, "seed": 5}))
    with pytest.raises(UserError, match=f"saved split indexes row {count:,}"):
        again.prepare(state)
        again.read_split("dev")
