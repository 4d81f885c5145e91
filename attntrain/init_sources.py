"""Which `data.source` a file or folder is, for `attntrain init` (every layout the README lists).

A folder: a saved Hugging Face dataset, an audio or image folder, parallel text (`train.de` / `train.en`),
.txt files whose names are the labels (`pos.txt` / `neg.txt`, in split sub-folders or not), the
`name.pos` / `name.neg` layout (the extension is the label), or table files. A file: a table (csv, tsv,
jsonl, parquet), CoNLL-U, a BIO file, a .txt file of `<label> <text>` lines or of token/tag columns.
Files named train / dev (validation, val) / test become `files:` per split.
"""

from __future__ import annotations

import re
from pathlib import Path

from attntrain.data.sources.files import MEDIA, SPLIT_ALIASES
from attntrain.errors import UserError

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet",
                  ".conll": "conll", ".conllu": "conllu", ".bio": "conll", ".iob": "conll"}
TABLES = ("csv", "tsv", "jsonl", "parquet")
EDGE_WORDS = ("edge", "link", "cite", "arc")  # a table whose name holds one of these lists a graph's edges
LANGUAGE = re.compile(r"[a-z]{2,3}")  # a file suffix that names a language (de, en, fr, ...)
LABEL_IS_EXTENSION = r".*\.(?P<label>[^.]+)$"  # name.pos / name.neg: the extension is the label
SPLITS = ("train", "dev", "test")  # the order files: lists them in
SPLIT_WORD = re.compile(r"(?<![a-z])(train|dev|validation|valid|val|test)(?![a-z])")  # en_ewt-ud-train, wnut17train
DOCS = re.compile(r"(readme|license|licence|copying|citation|changelog|notice|sha\d*sums?|md5sums?)([._-].*)?$", re.I)


def data_files(folder: Path, recursive: bool = True) -> list[Path]:
    """The files of FOLDER that may hold data: not hidden, not a README, LICENSE, checksum list or .md."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return [p for p in sorted(found) if p.is_file() and not p.name.startswith(".")
            and not DOCS.match(p.name) and p.suffix.lower() != ".md"]


def data_suffix(path: Path) -> str:
    """The suffix that names the format, under a .gz: train.jsonl.gz -> .jsonl."""
    return path.with_suffix("").suffix if path.suffix == ".gz" else path.suffix


def find_graph(data: Path) -> tuple[Path, Path] | None:
    """(node table, edge table) when DATA is a folder of two tables, or a table with an edge table beside it."""
    folder = data if data.is_dir() else data.parent
    tables = [p for p in data_files(folder, recursive=False) if TABLE_SUFFIXES.get(data_suffix(p)) in TABLES]
    edges = [p for p in tables if any(word in p.stem.lower() for word in EDGE_WORDS)]
    nodes = [p for p in tables if p not in edges]
    if data.is_file():
        return (data, edges[0]) if len(edges) == 1 and data not in edges else None
    return (nodes[0], edges[0]) if len(edges) == 1 and len(nodes) == 1 else None


def detect(data: Path) -> dict:
    """The data.source block (a dict) for a file or a folder."""
    return folder_source(data) if data.is_dir() else file_source(data)


def split_of(path: Path) -> str | None:
    """The split a file's name gives: train.csv, en_ewt-ud-dev.conllu, emerging.test.annotated, wnut17train.conll."""
    found = SPLIT_WORD.search(path.name.lower())
    return SPLIT_ALIASES[found.group(1)] if found else None


def folder_source(folder: Path) -> dict:
    if (folder / "dataset_dict.json").is_file() or (folder / "dataset_info.json").is_file():
        return {"format": "hf", "path": str(folder)}
    files = data_files(folder)
    for fmt, suffixes in MEDIA.items():
        if any(p.suffix.lower() in suffixes for p in files):
            return {"format": fmt, "path": str(folder)}
    parallel = parallel_source(folder, [p for p in files if p.parent == folder])
    if parallel is not None:
        return parallel
    if files and all(p.suffix == ".txt" for p in files):
        parts = {SPLIT_ALIASES[p.name]: p for p in folder.iterdir() if p.is_dir() and p.name in SPLIT_ALIASES}
        if "train" in parts:  # train/pos.txt, dev/pos.txt, ...: the splits are given
            return {"format": "text", "files": {split: str(parts[split] / "*.txt") for split in SPLITS if split in parts}}
        return {"format": "text", "path": str(folder / "*.txt")}
    stems = {p.name.split(".")[0] for p in files}
    if len(stems) == 1 and len(files) >= 2 and not any(data_suffix(p) in TABLE_SUFFIXES for p in files):
        return {"format": "text", "path": str(folder / f"{stems.pop()}.*"), "name_pattern": LABEL_IS_EXTENSION}
    known = [p for p in files if p.parent == folder and data_suffix(p) in (*TABLE_SUFFIXES, ".txt")]
    if known:
        return file_source(next((p for p in known if split_of(p) == "train"), known[0]))
    raise UserError(f"{folder}: cannot tell the format of this folder (no audio, images, .txt classes, parallel "
                    "text, tables or saved Hugging Face dataset); write data.source by hand (README: Your own data)")


def parallel_source(folder: Path, files: list[Path]) -> dict | None:
    """Line-aligned `<stem>.<lang>` files in two languages (gzip'd or not)."""
    names = [p.name.removesuffix(".gz").rsplit(".", 1) for p in files]
    pairs = [(stem, lang) for stem, lang in (n for n in names if len(n) == 2) if LANGUAGE.fullmatch(lang)]
    languages = sorted({lang for _, lang in pairs})
    stems = {stem for stem, _ in pairs}
    if len(languages) != 2 or not stems or any((stem, lang) not in pairs for stem in stems for lang in languages):
        return None
    first = min(stems)
    if len({line_count(folder / f"{first}.{lang}") for lang in languages}) > 1:
        return None  # not line-aligned: name.pos / name.neg, where the extension is the label
    split_stems = {SPLIT_ALIASES[s.lower()]: s for s in stems if s.lower() in SPLIT_ALIASES}
    if "train" in split_stems:
        return {"format": "parallel", "languages": languages,
                "files": {split: str(folder / split_stems[split]) for split in SPLITS if split in split_stems}}
    return {"format": "parallel", "languages": languages, "path": str(folder / "*")}


def line_count(path: Path) -> int | None:
    """Lines of a plain file (None for a gzip'd one: not counted, taken as aligned)."""
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def file_source(path: Path) -> dict:
    suffix = data_suffix(path)
    siblings = [p for p in path.parent.iterdir() if p.is_file() and p.name.split(".")[0] == path.name.split(".")[0]]
    if suffix.lstrip(".") and LANGUAGE.fullmatch(suffix.lstrip(".")) and suffix not in TABLE_SUFFIXES:
        found = parallel_source(path.parent, [p for p in path.parent.iterdir() if p.is_file()])
        if found is not None:
            return found
        if len(siblings) >= 2:  # name.pos / name.neg
            return {"format": "text", "path": str(path.parent / f"{path.name.split('.')[0]}.*"),
                    "name_pattern": LABEL_IS_EXTENSION}
    if suffix == ".txt":
        fmt = sniff_text(path)
        if fmt is None:
            return folder_source(path.parent)  # pos.txt beside neg.txt: the folder is the data set
        return per_split(path, {"format": fmt, **({"columns": ["tokens", "tags"]} if fmt == "conll" else {})})
    fmt = TABLE_SUFFIXES.get(suffix)
    if fmt is None:
        raise UserError(f"{path}: unknown file type '{path.suffix}'; known: {', '.join([*TABLE_SUFFIXES, '.txt'])}, "
                        "or a folder (audio, images, .txt files named by label, parallel text)")
    return per_split(path, {"format": fmt})


def per_split(path: Path, source: dict) -> dict:
    """files per split when the names say so (train/dev/test), else one path split by ratio.

    A sibling of the same suffix is preferred; a split only found under another suffix (WNUT-17's
    `emerging.test.annotated` beside `emerging.dev.conll`) is taken when it is the only file of that split.
    """
    siblings = [p for p in data_files(path.parent, recursive=False) if split_of(p)]
    found: dict[str, str] = {}
    for p in sorted(siblings, key=lambda p: data_suffix(p) != data_suffix(path)):
        others = [q for q in siblings if split_of(q) == split_of(p)]
        if data_suffix(p) == data_suffix(path) or len(others) == 1:
            found.setdefault(split_of(p), str(p))
    files = {split: found[split] for split in SPLITS if split in found}
    if "train" in files and split_of(path):
        return {**source, "files": files}
    return {**source, "path": str(path)}


def sniff_text(path: Path, lines: int = 400) -> str | None:
    """labeled_lines (`<label> <text>`), conll (token<TAB>tag, blank lines between sentences), or None."""
    from attntrain.data.sources.files import iter_text_lines

    head = []
    for line in iter_text_lines(path):
        head.append(line)
        if len(head) >= lines:
            break
    filled = [line for line in head if line.strip()]
    if not filled:
        raise UserError(f"{path}: no text")
    columns = {len(line.split("\t") if "\t" in line else line.split()) for line in filled}
    if len(filled) < len(head) and max(columns) <= 4 and min(columns) >= 2:
        return "conll"
    firsts = [line.split(" ", 1)[0] for line in filled]
    distinct = set(firsts)
    if all(" " in line for line in filled) and (len(distinct) <= max(2, len(filled) // 10)
                                                or all(f.startswith("__label__") for f in firsts)):
        return "labeled_lines"
    if len(list(path.parent.glob("*.txt"))) >= 2:
        return None
    raise UserError(f"{path}: cannot tell what this .txt holds: expected '<label> <text>' lines (a label "
                    "first), token/tag columns with blank lines between sentences, or a folder of files "
                    "named by label (pos.txt, neg.txt: run init on the folder)")
