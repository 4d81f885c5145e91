"""Sources: where rows come from. One `name -> reader` table; every reader gives split -> rows.

A row is a dict of named fields (`text`, `label`, `tokens`, `tags`, `path`, a language code, ...); the
input kind and the target pick the fields they need (`data.input.field`, `data.target.field`). Table
formats (csv, tsv, jsonl, parquet) and Hugging Face datasets are read by the `datasets` library;
plain-text, token-column, CoNLL-U and folder layouts are read here, each reader yielding its rows one at a
time. `read_source` collects them into lists (config tools, small data); `source_rows` gives the same rows
as memory-mapped Arrow views (attntrain/data/sources/rows.py) whose dicts still carry `_where`, which is
what the tasks train from. Files and globs: attntrain/data/sources/files.py; tables: attntrain/data/sources/tables.py.

Files are named in `data.source`: `files: {train: ..., dev: ..., test: ...}` (one file, a glob or a
list per split) or `path:` for everything at once, split later by a column or a seeded ratio
(attntrain.data.tasks.splits). Relative names resolve against the dataset folder (`data.dataset` under
the data root) when one is set, else against the current directory.
"""

from __future__ import annotations

import re
from itertools import zip_longest
from pathlib import Path
from typing import Callable, Iterator

from attntrain.data.sources.files import (MEDIA, SPLIT_ALIASES, WHERE, Rows, RowStream, base_folder, file_groups,
                                          iter_text_lines, read_text_lines)
from attntrain.choices import GRAPH_FORMATS
from attntrain.data.sources.tables import read_table
from attntrain.errors import UserError


def read_text_classes(source, files: list[Path]) -> RowStream:
    """Plain text, one example per line; the label is the file's name up to its first dot (pos.txt -> 'pos'),
    and `source.name_pattern`'s named groups over the file name are fields too (a group `label` replaces it)."""
    pattern = re.compile(source.name_pattern) if source.name_pattern else None
    for path in files:
        fields = {"label": path.name.split(".")[0], **name_fields(pattern, path)}
        for number, line in enumerate(iter_text_lines(path), 1):
            if line.strip():
                yield {"text": line, **fields, WHERE: f"{path}:{number}"}


def name_fields(pattern: re.Pattern | None, path: Path) -> dict[str, str]:
    """The named groups of `data.source.name_pattern` matched at the start of a file's name (3_theo_12.wav ->
    digit 3, speaker theo, index 12); a name that does not match is an error naming the file."""
    if pattern is None:
        return {}
    found = pattern.match(path.name)
    if found is None:
        raise UserError(f"{path}: the file name does not match data.source.name_pattern {pattern.pattern!r}")
    return found.groupdict()


def read_labeled_lines(source, files: list[Path]) -> RowStream:
    """One example per line, its label first: `<label> <text>` (fastText's `__label__pos text` too)."""
    label_field, text_field = source.columns or ["label", "text"]
    for path in files:
        for number, line in enumerate(iter_text_lines(path), 1):
            if not line.strip():
                continue
            label, _, text = line.partition(" ")
            if not label or not text.strip():
                raise UserError(f"{path}:{number}: expected '<label> <text>', got {line[:60]!r}")
            yield {label_field: label.removeprefix("__label__"), text_field: text, WHERE: f"{path}:{number}"}


def read_parallel(source, files: list[Path]) -> RowStream:
    """Line-aligned files `<stem>.<lang>[.gz]`: fields named by language (`de`, `en`, ...)."""
    languages = parallel_languages(source)
    return (dict(zip(languages, pair)) for pair in parallel_pairs(source, files))


def parallel_languages(source) -> list[str]:
    if len(source.languages) != 2:
        raise UserError("data.source.languages: parallel text needs two language suffixes, e.g. [de, en]")
    return list(source.languages)


def parallel_files(source, files: list[Path]) -> list[list[Path]]:
    """[one file per language] for every stem among `files` (train.de + train.en -> [[train.de, train.en]])."""
    languages = parallel_languages(source)
    stems = sorted({_strip_language(f, languages) for f in files
                    if not any(f.name.removesuffix(".gz").endswith(f".{other}") for other in _other_suffixes(f, languages))})
    return [[_language_file(stem, lang) for lang in languages] for stem in stems]


def parallel_pairs(source, files: list[Path]) -> Iterator[tuple[str, str]]:
    """The sentence pairs of line-aligned files, one at a time (memory stays flat whatever the corpus size)."""
    for sides in parallel_files(source, files):
        first, second = (iter_text_lines(p) for p in sides)
        count = 0
        for pair in zip_longest(first, second):
            if None in pair:  # one side ended first: count what is left on the other for the message
                counts = [count + (line is not None) + sum(1 for _ in rest) for line, rest in zip(pair, (first, second))]
                raise UserError(f"{sides[1]}: {counts[1]} lines, but {sides[0]} has {counts[0]}; "
                                "the two sides must be line-aligned")
            count += 1
            yield pair


def _other_suffixes(path: Path, languages: list[str]) -> list[str]:
    """The language-like suffix of a file that is not one of ours (train.fr.gz beside train.de / train.en)."""
    parts = path.name.removesuffix(".gz").split(".")
    return [parts[-1]] if len(parts) > 1 and parts[-1] not in languages else []


def _strip_language(path: Path, languages: list[str]) -> Path:
    name = path.name.removesuffix(".gz")
    for lang in languages:
        if name.endswith(f".{lang}"):
            return path.with_name(name.removesuffix(f".{lang}"))
    return path  # a bare stem (files: {train: train}) names both sides


def _language_file(stem: Path, lang: str) -> Path:
    for candidate in (stem.with_name(f"{stem.name}.{lang}"), stem.with_name(f"{stem.name}.{lang}.gz")):
        if candidate.is_file():
            return candidate
    raise UserError(f"parallel text: neither {stem}.{lang} nor {stem}.{lang}.gz exists")


def read_columns(source, files: list[Path]) -> RowStream:
    """CoNLL-style token files: whitespace/tab columns, a blank line ends a sentence, -DOCSTART- skipped, and
    comment lines (`# sent_id = 1`, as Universal NER's .iob2 files have) skipped.

    `data.source.columns` names the columns (default [tokens, tags]); every named column becomes a list field.
    A line with more or fewer columns is an error naming it (a dropped column would be a silent loss).
    """
    names = source.columns or ["tokens", "tags"]
    for path in files:
        current: dict[str, list] = {n: [] for n in names}
        for number, line in enumerate(iter_text_lines(path), 1):
            cols = line.split("\t") if "\t" in line else line.split()
            if not line.strip():
                if current[names[0]]:
                    yield current
                current = {n: [] for n in names}
                continue
            if cols[0] == "-DOCSTART-" or is_comment(line, cols, len(names)):
                continue
            if not current[names[0]]:
                current[WHERE] = f"{path}:{number}"  # errors about this sentence name its first token's line
            if len(cols) != len(names):
                more = "; name every column in data.source.columns" if len(cols) > len(names) else ""
                raise UserError(f"{path}:{number}: expected {len(names)} columns ({', '.join(names)}), "
                                f"found {len(cols)}: {line[:60]!r}{more}")
            for name, value in zip(names, cols):
                current[name].append(value.strip())
        if current[names[0]]:
            yield current


def is_comment(line: str, cols: list[str], expected: int) -> bool:
    """`# key = value` or a `#` line of another column count without tabs: a comment, not the token `#` (or a
    hashtag: `#fail<TAB>O`, `# O`)."""
    return line.startswith("#") and "\t" not in line and (" = " in line or len(cols) != expected)


def read_conllu_rows(source, files: list[Path]) -> RowStream:
    """CoNLL-U through the `conllu` package (attntrain.data.sources.conll): tokens + every tag column."""
    from attntrain.data.sources.arrow import row_dicts
    from attntrain.data.sources.conll import load_conllu_dataset

    for path in files:
        for batch in load_conllu_dataset(path).iter(batch_size=1000):
            for row in row_dicts(batch):
                row[WHERE] = f"{path}:{row.pop('line')}"  # where the sentence starts, for messages about it
                yield row


def read_folder(source, files: list[Path]) -> RowStream:
    """audiofolder / imagefolder: one sub-folder per class, or a metadata.csv/jsonl (file_name + label).

    `files` are folders; a file's label is its parent folder's name unless metadata says otherwise.
    """
    suffixes = MEDIA[source.format]
    pattern = re.compile(source.name_pattern) if source.name_pattern else None
    for folder in files:
        if not folder.is_dir():
            raise UserError(f"{folder}: {source.format} needs a folder")
        metadata = _folder_metadata(folder)
        media = sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)
        if not media:
            raise UserError(f"{folder}: no {'/'.join(suffixes)} files")
        for path in media:
            row = {"path": str(path), "label": path.parent.name if path.parent != folder else None, WHERE: str(path)}
            row.update(name_fields(pattern, path))
            if metadata is not None:
                extra = metadata.get(str(path.relative_to(folder)))
                if extra is None:
                    continue  # not listed in the metadata: not part of the dataset
                row.update(extra)
            yield row


def _folder_metadata(folder: Path) -> dict[str, dict] | None:
    """file_name -> other columns, from metadata.csv or metadata.jsonl when the folder has one."""
    import csv
    import json

    for name in ("metadata.csv", "metadata.jsonl"):
        path = folder / name
        if not path.is_file():
            continue
        lines = read_text_lines(path)
        records = (list(csv.DictReader(lines)) if name.endswith(".csv")
                   else [json.loads(line) for line in lines if line.strip()])
        table = {}
        for number, record in enumerate(records, 2):
            if "file_name" not in record:
                raise UserError(f"{path}:{number}: needs a file_name column (has {', '.join(record)})")
            table[record.pop("file_name")] = record
        return table
    return None


def read_idx_files(source, files: list[Path]) -> RowStream:
    """IDX arrays (MNIST and its kin): a split's files are an image array (N,H,W[,C]) and a label vector (N,).

    The two are told apart by their shapes, so `files: {train: "train-*-ubyte.gz"}` names both.
    """
    from attntrain.data.inputs.images import read_idx

    arrays = {path: read_idx(path) for path in files}
    images = [p for p, a in arrays.items() if a.dim() in (3, 4)]
    labels = [p for p, a in arrays.items() if a.dim() == 1]
    if len(images) != 1 or len(labels) != 1:
        shapes = ", ".join(f"{p.name} {tuple(a.shape)}" for p, a in arrays.items())
        raise UserError(f"idx: a split needs one image file (N,H,W) and one label file (N,); got {shapes or 'no files'}")
    pixels, classes = arrays[images[0]], arrays[labels[0]]
    if len(classes) != len(pixels):
        raise UserError(f"{labels[0]}: {len(classes)} labels for {len(pixels)} images in {images[0]}")
    return ({"image": pixels[i], "label": int(classes[i]), WHERE: f"{images[0]}: image {i}"}
            for i in range(len(pixels)))


def read_hf(source, base: Path) -> dict[str, Rows]:
    """A Hugging Face dataset: a `save_to_disk` folder (`path:`), or `name` (+ `config`) from the local cache."""
    return {split: part.to_list() for split, part in load_hf(source, base).items()}


def load_hf(source, base: Path) -> dict:
    """split -> `datasets.Dataset` of a saved folder or a cached named dataset ({"all": ...} without splits)."""
    import datasets

    datasets.disable_progress_bars()
    try:
        if source.path:
            folder = Path(source.path).expanduser()
            folder = folder if folder.is_absolute() else base / folder
            loaded = datasets.load_from_disk(str(folder))
        elif source.name:
            loaded = datasets.load_dataset(source.name, source.config)
        else:
            raise UserError("data.source: format hf needs `path:` (a save_to_disk folder) or `name:`")
    except UserError:
        raise
    except Exception as e:
        where = source.path or source.name
        raise UserError(f"{where}: cannot load as a Hugging Face dataset ({str(e).splitlines()[0][:300]}); "
                        "offline, only datasets in the local cache or saved with save_to_disk can be read") from None
    if isinstance(loaded, datasets.Dataset):
        return {"all": loaded}
    out = {SPLIT_ALIASES[name]: part for name, part in loaded.items() if name in SPLIT_ALIASES}
    if "train" not in out:
        raise UserError(f"{source.path or source.name}: no train split (has {', '.join(loaded)})")
    return out


READERS: dict[str, Callable] = {
    "csv": read_table, "tsv": read_table, "jsonl": read_table, "parquet": read_table,
    "text": read_text_classes, "labeled_lines": read_labeled_lines, "parallel": read_parallel, "conll": read_columns, "conllu": read_conllu_rows,
    "audiofolder": read_folder, "imagefolder": read_folder, "idx": read_idx_files,
}
FORMATS = (*READERS, "hf", *GRAPH_FORMATS)  # graphs: read by attntrain.data.tasks.graph / graph_tables


def read_source(data_cfg, source=None) -> dict[str, Rows]:
    """split -> rows (or {"all": rows} when the split is made later); every problem is a UserError."""
    source = source or data_cfg.source
    base = base_folder(data_cfg)
    if source.format == "hf":
        return read_hf(source, base)
    if source.format in GRAPH_FORMATS:
        raise UserError(f"data.source.format {source.format}: a graph is one graph task, not rows "
                        "(needs data.input.kind graph)")
    if source.format not in READERS:
        raise UserError(f"data.source.format: unknown '{source.format}'; valid: {', '.join(FORMATS)}")
    reader = READERS[source.format]
    return {split: list(reader(source, files)) for split, files in file_groups(source, base).items()}
