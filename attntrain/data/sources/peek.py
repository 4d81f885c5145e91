"""The field names a source's first rows have, read from the head of one file per split (no data library).

`attntrain validate` (attntrain.checks) checks every field name `data:` uses against them: the input and
target fields, the split column, a graph's node id, features and edge fields. A name the data lacks is an
error naming the key, the file and the fields it has, found in milliseconds instead of after `fit` has loaded
torch and read the data. Formats whose fields cannot be read cheaply (parquet, a named Hugging Face dataset)
and files that cannot be opened are skipped here: reading the data reports them.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

from attntrain.data.sources.files import MEDIA, base_folder, expand, file_groups
from attntrain.errors import UserError

FIXED = {"conllu": ["words", "upos", "xpos", "lemma", "deprel"], "idx": ["image", "label"]}
DEFAULT_COLUMNS = {"conll": ["tokens", "tags"], "labeled_lines": ["label", "text"]}
TABLES = {"csv": ",", "tsv": "\t", "jsonl": None}
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


def head_line(path: Path) -> str | None:
    """The first non-blank line of a (gzip'd) UTF-8 file, or None when it cannot be read."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8-sig", newline="") as f:
            for line in f:
                if line.strip():
                    return line
    except (OSError, EOFError, UnicodeError):
        return None
    return None


def table_fields(path: Path, fmt: str) -> list[str] | None:
    """A csv / tsv file's header, or the keys of a JSON Lines file's first record."""
    line = head_line(path)
    if line is None:
        return None
    if TABLES[fmt] is not None:
        return next(csv.reader([line], delimiter=TABLES[fmt]), None)
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return list(record) if isinstance(record, dict) else None


def folder_fields(folder: Path, pattern: str | None) -> list[str]:
    """path + label, a name pattern's groups and a metadata table's columns (file_name aside)."""
    fields = ["path", "label", *(re.compile(pattern).groupindex if pattern else [])]
    for name, fmt in (("metadata.csv", "csv"), ("metadata.jsonl", "jsonl")):
        if (folder / name).is_file():
            fields += [f for f in table_fields(folder / name, fmt) or [] if f != "file_name"]
            break
    return fields


def hf_fields(folder: Path) -> list[str] | None:
    """The features of a `save_to_disk` folder (a Dataset, or the first split of a DatasetDict)."""
    try:
        if (folder / "dataset_dict.json").is_file():
            split = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"][0]
            folder = folder / split
        info = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))
        return list(info["features"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def source_fields(data_cfg) -> list[tuple[str, str, list[str]]]:
    """(split, a file or folder, the fields of its rows) for the first file of each split (`all`: rows split
    later); empty when not cheap to know."""
    source = data_cfg.source
    fmt = source.format
    if fmt == "hf":
        if not source.path:
            return []
        folder = Path(source.path).expanduser()
        folder = folder if folder.is_absolute() else base_folder(data_cfg) / folder
        fields = hf_fields(folder)
        return [("train", str(folder), fields)] if fields is not None else []
    try:
        groups = file_groups(source, base_folder(data_cfg))
    except UserError:  # a missing file: reading the data says so, with the whole message
        return []
    out = []
    for split, files in groups.items():
        first = files[0]
        if fmt in TABLES:
            fields = table_fields(first, fmt)
        elif fmt in MEDIA:
            fields = folder_fields(first, source.name_pattern) if first.is_dir() else None
        elif fmt == "text":
            fields = ["text", "label", *(re.compile(source.name_pattern).groupindex if source.name_pattern else [])]
        elif fmt == "parallel":
            fields = list(source.languages)
        else:
            fields = source.columns or DEFAULT_COLUMNS.get(fmt) or FIXED.get(fmt)
        if fields is not None:
            out.append((split, str(first), fields))
    return out


def graph_fields(data_cfg) -> dict[str, tuple[str, list[str]]]:
    """nodes / edges -> (the first file, its fields) of a graph source's tables (csv, tsv, jsonl)."""
    out = {}
    for role, names in (data_cfg.source.files or {}).items():
        try:
            paths = expand(base_folder(data_cfg), names, what=f"data.source.files.{role}")
        except UserError:
            continue
        fmt = TABLE_SUFFIXES.get(Path(paths[0].name.removesuffix(".gz")).suffix.lower())
        fields = table_fields(paths[0], fmt) if fmt else None
        if fields is not None:
            out[role] = (str(paths[0]), fields)
    return out
