"""The rows of a `data.source` as memory-mapped Arrow views (what the tasks train from): table files as the
library's own Arrow files, other readers' rows streamed once into a cached Arrow file with a `_where` column."""

from __future__ import annotations

from pathlib import Path

from attntrain.data.sources.files import base_folder, file_groups
from attntrain.data.sources.readers import READERS, load_hf, parallel_files, parallel_languages, parallel_pairs, read_source
from attntrain.data.sources.tables import load_table, row_lines
from attntrain.errors import UserError

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
            lines.append((str(path), len(table), row_lines(path, fmt, len(table))))
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
