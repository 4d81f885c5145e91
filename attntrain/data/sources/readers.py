"""Sources: where rows come from. One `name -> reader` table; every reader gives split -> rows.

A row is a dict of named fields (`text`, `label`, `tokens`, `tags`, `path`, a language code, ...); the
input kind and the target pick the fields they need (`data.input.field`, `data.target.field`). Table
formats (csv, tsv, jsonl, parquet) and Hugging Face datasets are read by the `datasets` library;
plain-text, token-column, CoNLL-U and folder layouts are read here, each reader yielding its rows one at a
time. `read_source` collects them into lists (config tools, small data); `source_rows` gives the same rows
as memory-mapped Arrow views (attntrain.data.sources.arrow.ArrowRows) whose dicts still carry `_where`, which is
what the tasks train from.

Files are named in `data.source`: `files: {train: ..., dev: ..., test: ...}` (one file, a glob or a
list per split) or `path:` for everything at once, split later by a column or a seeded ratio
(attntrain.data.splits). Relative names resolve against the dataset folder (`data.dataset` under
the data root) when one is set, else against the current directory.
"""

from __future__ import annotations

import glob as globlib
import gzip
import re
from itertools import zip_longest
from pathlib import Path
from typing import Callable, Iterator

from attntrain.data.sources.root import dataset_dir
from attntrain.errors import UserError

Rows = list[dict]
RowStream = Iterator[dict]  # a reader's rows one at a time (read_source collects them, source_rows streams them)
WHERE = "_where"  # a row's origin (file:line) for error messages; readers that know it set it
SPLIT_ALIASES = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev", "val": "dev", "test": "test"}


# ---- files --------------------------------------------------------------------------------------
def base_folder(data_cfg) -> Path:
    """Where relative file names point: the dataset folder under the data root, or the current directory."""
    if data_cfg.dataset:
        return dataset_dir(data_cfg.root, data_cfg.dataset)
    return Path.cwd()


def expand(base: Path, names: str | list[str], *, what: str) -> list[Path]:
    """File names or globs (relative to base) -> existing paths, in a stable order."""
    found: list[Path] = []
    for name in [names] if isinstance(names, str) else names:
        pattern = str(Path(name).expanduser() if Path(name).expanduser().is_absolute() else base / name)
        matches = sorted(Path(p) for p in globlib.glob(pattern)) or sorted(Path(p) for p in globlib.glob(pattern + ".*"))
        if not matches:
            raise UserError(f"{what}: no file matches {pattern}")
        found.extend(matches)
    return found


def read_text_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file, gunzipped when it ends in .gz; errors name the file (and line)."""
    return list(iter_text_lines(path))


def iter_text_lines(path: Path) -> Iterator[str]:
    """The lines of `read_text_lines` one at a time, for files of any size; a bad byte names file:line:column."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise UserError(f"{path}:{number}:{e.start + 1}: not UTF-8 text ({e.reason})") from None
                yield line.removesuffix("\n").rstrip("\r")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None


def file_groups(source, base: Path) -> dict[str, list[Path]]:
    """split -> files from `files:`, or {"all": files} from `path:` (split later)."""
    if source.files:
        groups = {}
        for split, names in source.files.items():
            if split not in SPLIT_ALIASES:
                raise UserError(f"data.source.files: unknown split '{split}'; use train, dev (or validation), test")
            groups[SPLIT_ALIASES[split]] = expand(base, names, what=f"data.source.files.{split}")
        if "train" not in groups:
            raise UserError("data.source.files: needs a 'train' entry")
        return groups
    if source.path:
        found = expand(base, source.path, what="data.source.path")
        if source.format in MEDIA and len(found) == 1 and found[0].is_dir():
            # the audiofolder / imagefolder convention: split sub-folders (train/, test/, ...) when present
            splits = {SPLIT_ALIASES[p.name]: [p] for p in found[0].iterdir() if p.is_dir() and p.name in SPLIT_ALIASES}
            if "train" in splits:
                return splits
        return {"all": found}
    raise UserError(f"data.source: format '{source.format}' needs `files:` (one per split) or `path:`")


# ---- readers: (source config, files) -> rows --------------------------------------------------
def read_table(source, files: list[Path]) -> RowStream:
    """CSV / TSV / JSON Lines / Parquet through `datasets` (gzip'd files allowed where it allows them)."""
    for path in files:
        yield from table_rows(path, source.format)  # every row knows its file and line


def table_rows(path: Path, fmt: str) -> Rows:
    """The rows of one csv / tsv / jsonl / parquet file, each with its file:line in `_where`."""
    table = load_table(path, fmt)
    if table is None:
        return []
    from attntrain.data.sources.arrow import TableLines

    rows = table.to_list()
    for row, where in zip(rows, TableLines([(str(path), len(rows), FIRST_LINE.get(fmt))]).many(range(len(rows)))):
        row[WHERE] = where
    return rows


FIRST_LINE = {"csv": 2, "tsv": 2, "jsonl": 1}  # line of a table file's first row (after a header); parquet has none


def load_table(path: Path, fmt: str):
    """One csv / tsv / jsonl / parquet file as the library's memory-mapped Arrow table (None when it has no rows).

    The library's cache of it lives under a folder keyed by the file's identity (path, size, time, a digest of
    its content), so an edit is read again; a file it cannot parse is one error naming the physical file:line
    and the cause (attntrain.data.sources.table_faults); a damaged cache is parsed again."""
    import datasets

    from attntrain.data.sources.arrow import cache_key, file_identity, intact
    from attntrain.data.sources.root import cache_dir
    from attntrain.data.sources.table_faults import quiet_library, table_fault

    builder = {"csv": "csv", "tsv": "csv", "jsonl": "json", "parquet": "parquet"}[fmt]
    kwargs = {"keep_default_na": False} if fmt in ("csv", "tsv") else {}  # "NA" and "null" stay text
    if fmt == "tsv":
        kwargs["delimiter"] = "\t"
    datasets.disable_progress_bars()
    try:
        folder = cache_dir() / "tables" / cache_key(file_identity(path))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    load = lambda **more: datasets.load_dataset(builder, data_files=[str(path)], split="train",  # noqa: E731
                                                cache_dir=str(folder), **kwargs, **more)
    with quiet_library():
        try:
            table = load()
            return table if intact(table) else load(download_mode="force_redownload")  # damaged cache: parse again
        except Exception as e:  # an empty file, a fault of the file, or of the cache
            if "corresponds to no data" in str(e) or isinstance(e, datasets.exceptions.DatasetGenerationError) \
                    and path.stat().st_size <= len(path.read_bytes().split(b"\n", 1)[0]) + 1:
                return None  # a header-only (or empty) file: no rows; an empty split is reported by the task
            fault = table_fault(path, fmt)
            if fault is not None:
                raise UserError(fault) from None
            try:
                return load(download_mode="force_redownload")  # the file is fine: its cache is parsed again
            except Exception:
                raise UserError(f"{path}: cannot read as {fmt}: {str(e).splitlines()[0][:300]}") from None


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


MEDIA = {"audiofolder": (".wav", ".flac", ".ogg", ".aiff", ".aif"),
         "imagefolder": (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")}


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
FORMATS = (*READERS, "hf", "graph")  # graph: node + edge tables, read by attntrain.data.tasks.graph_tables


def read_source(data_cfg, source=None) -> dict[str, Rows]:
    """split -> rows (or {"all": rows} when the split is made later); every problem is a UserError."""
    source = source or data_cfg.source
    base = base_folder(data_cfg)
    if source.format == "hf":
        return read_hf(source, base)
    if source.format == "graph":
        raise UserError("data.source.format graph: a node table and an edge table are one graph task, not rows "
                        "(needs data.input.kind graph)")
    if source.format not in READERS:
        raise UserError(f"data.source.format: unknown '{source.format}'; valid: {', '.join(FORMATS)}")
    reader = READERS[source.format]
    return {split: list(reader(source, files)) for split, files in file_groups(source, base).items()}


# ---- the same rows as memory-mapped Arrow (for data larger than memory wants) --------------------
ROWS_VERSION = 2  # bump when a streamed reader's rows change, so row files cached by older code are not read
TABLES = ("csv", "tsv", "jsonl", "parquet")


def source_datasets(data_cfg) -> dict:
    """split -> the rows of `read_source` as a memory-mapped `datasets.Dataset` (the datasets of `source_rows`)."""
    return {split: view.dataset for split, view in source_rows(data_cfg).items()}


def parallel_dataset(source, files: list[Path]):
    """Line-aligned files as an Arrow file under the cache (one column per language), written once."""
    from attntrain.data.sources.arrow import cache_key, file_identity, read_cached, write_arrow
    from attntrain.data.sources.root import cache_dir

    languages = parallel_languages(source)
    sides = parallel_files(source, files)
    key = cache_key("parallel", ROWS_VERSION, languages, [[file_identity(p) for p in pair] for pair in sides])
    path = cache_dir() / "rows" / f"parallel-{key}.arrow"
    found = read_cached(path)
    return found if found is not None else write_arrow(path, languages, parallel_pairs(source, files))


def source_rows(data_cfg, source=None) -> dict:
    """split -> the rows of `read_source` as an `ArrowRows` view of a memory-mapped `datasets.Dataset`.

    Table files are the library's own Arrow files (their `_where` computed from each file's row count);
    parallel text is streamed into a cached Arrow file of one column per language; the other readers' rows
    are streamed once into a cached Arrow file with a `_where` column, keyed by the reader's settings and the
    files' identities; Hugging Face datasets are used as they are.
    """
    from attntrain.data.sources.arrow import ArrowRows

    source = source or data_cfg.source
    base = base_folder(data_cfg)
    if source.format == "hf":
        return {split: ArrowRows(part) for split, part in load_hf(source, base).items()}
    if source.format not in READERS:
        read_source(data_cfg, source)  # the same error for graph and unknown formats
    out = {}
    for split, files in file_groups(source, base).items():
        if source.format in TABLES:
            out[split] = table_view(files, source.format)
        elif source.format == "parallel":
            out[split] = ArrowRows(parallel_dataset(source, files))
        else:
            out[split] = ArrowRows(streamed_rows(source, files))
    return out


def table_view(files: list[Path], fmt: str):
    """Table files read one after another, as one view whose rows know their file and line."""
    import datasets

    from attntrain.data.sources.arrow import ArrowRows, TableLines

    tables, lines = [], []
    for path in files:
        table = load_table(path, fmt)
        if table is not None:
            tables.append(table)
            lines.append((str(path), len(table), FIRST_LINE.get(fmt)))
    if not tables:
        return ArrowRows(datasets.Dataset.from_dict({}))
    try:
        dataset = datasets.concatenate_datasets(tables) if len(tables) > 1 else tables[0]
    except ValueError as e:
        raise UserError(f"{', '.join(map(str, files))}: the files' columns differ "
                        f"({str(e).splitlines()[0][:200]})") from None
    return ArrowRows(dataset, lines=TableLines(lines))


def streamed_rows(source, files: list[Path]):
    """A reader's rows written once to an Arrow file under the cache (read again while the files are unchanged)."""
    from attntrain.data.sources.arrow import cache_key, file_identity, read_cached, write_arrow
    from attntrain.data.sources.root import cache_dir

    settings = {name: getattr(source, name) for name in ("format", "columns", "name_pattern")}
    found = [p for folder in files if folder.is_dir() for p in sorted(folder.rglob("*")) if p.is_file()]
    # a folder's rows come from its files' names (and a metadata table), not from what the media files hold
    identities = [file_identity(p, digest=p in files or p.name.startswith("metadata."))
                  for p in [*files, *found] if p.exists()]
    key = cache_key("rows", ROWS_VERSION, settings, identities)
    path = cache_dir() / "rows" / f"{source.format}-{key}.arrow"
    dataset = read_cached(path)
    if dataset is None:
        dataset = write_arrow(path, None, READERS[source.format](source, files), batch_rows=5_000)
    return dataset
