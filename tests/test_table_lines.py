"""Table rows name their physical file:line after a quoted line break (and blank JSON Lines); a same-size
edit of a table with its modification time put back is read again (a whole-content digest)."""

from __future__ import annotations

import os
import pytest

from attntrain.config import build_config
from attntrain.data import build_task
from attntrain.data.sources.arrow import file_identity
from tests.test_faults_data import fit_refused, own_config, sentiment

MULTILINE = '"a long review\nover three\nlines, with a comma"'


def review_csv(row_nine: str) -> str:
    """Header + 11 rows of real SST-2 sentences; row 5 holds a quoted value over three lines, so row 9 starts on
    physical line 12 (its index would say 10)."""
    rows = [f'"{text}",{label}' for label, text in sentiment()[:11]]
    rows[4] = f"{MULTILINE},positive"
    rows[8] = row_nine
    return "text,label\n" + "\n".join(rows) + "\n"


@pytest.mark.parametrize("row_nine, needle", [
    ('"a ragged row",positive,extra', "train.csv:12: 3 fields, but the header has 2"),
    ('"a row without its label",', "train.csv:12: no label: field 'label' is empty"),
])
def test_a_row_after_a_quoted_line_break_is_named_by_its_physical_line(tmp_path, row_nine, needle):
    (tmp_path / "train.csv").write_text(review_csv(row_nine), encoding="utf-8")
    config = own_config(tmp_path, {"format": "csv", "files": {"train": str(tmp_path / "train.csv")}})
    fit_refused(tmp_path, config, needle)


def test_rows_know_their_physical_lines(tmp_path):
    """Each row's _where: csv after a quoted line break, jsonl after blank lines, tsv without either."""
    (tmp_path / "train.csv").write_text(review_csv('"row nine",positive'), encoding="utf-8")
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}\n\n\n'
                                          '{"text": "c", "label": "x"}\n', encoding="utf-8")
    (tmp_path / "train.tsv").write_text("text\tlabel\na\tx\nb\ty\n", encoding="utf-8")
    expected = {"csv": [2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14], "jsonl": [1, 3, 6], "tsv": [2, 3]}
    for fmt, lines in expected.items():
        data = {"source": {"format": fmt, "files": {"train": str(tmp_path / f"train.{fmt}")}},
                "input": {"field": "text"}, "target": {"field": "label"}, "split": {"dev": 0.0, "test": 0.0}}
        task = build_task(build_config({"data": data, "model": {"head": {"kind": "sequence"}}}, "t"))
        rows = task.read_split("train")
        assert [row["_where"] for row in rows] == [f"{tmp_path / f'train.{fmt}'}:{line}" for line in lines], fmt


def big_csv(middle: str) -> str:
    """1,500 rows, `middle`, 1,500 rows (~300 KB): the middle row lies far from both ends of the file."""
    filler = "".join(f'"{text}",{label}\n' for label, text in sentiment()[:1] * 1500)
    return f"text,label\n{filler}{middle}\n{filler}"


def test_a_same_size_edit_with_the_time_put_back_is_read_again(tmp_path):
    """The whole content is digested: an edit ~150 KB from either end of the file is read again."""
    path = tmp_path / "train.csv"
    path.write_text(big_csv('"row nine",positive'), encoding="utf-8")
    assert path.stat().st_size > 2 * 130_000
    data = {"source": {"format": "csv", "files": {"train": str(path)}}, "input": {"field": "text"},
            "target": {"field": "label"}, "split": {"dev": 0.0, "test": 0.0}}
    build = lambda: build_task(build_config({"data": data, "model": {"head": {"kind": "sequence"}}}, "t"))  # noqa: E731
    assert build().read_split("train")[1500]["text"] == "row nine"
    before, stat = file_identity(path), path.stat()
    path.write_text(big_csv('"row NINE",positive'), encoding="utf-8")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert file_identity(path) != before
    assert build().read_split("train")[1500]["text"] == "row NINE"
