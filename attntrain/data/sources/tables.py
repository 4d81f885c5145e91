"""Table files (csv, tsv, jsonl, parquet) through the `datasets` library: memory-mapped Arrow tables cached
by file identity, rows that know their file:line, one clear error for a file the library cannot parse."""

from __future__ import annotations

from pathlib import Path

from attntrain.data.sources.files import WHERE, Rows, RowStream
from attntrain.errors import UserError


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
    for row, where in zip(rows, TableLines([(str(path), len(rows), row_lines(path, fmt, len(rows)))]).many(
            range(len(rows)))):
        row[WHERE] = where
    return rows


FIRST_LINE = {"csv": 2, "tsv": 2, "jsonl": 1}  # line of a table file's first row (after a header); parquet has none


def row_lines(path: Path, fmt: str, rows: int):
    """Where a table file's rows start: the first row's line when they follow one per line (one count of the
    file's line breaks says so), else each row's physical line (a quoted value holding a line break, blank
    lines), found with the standard library's csv reader; None for parquet, or when that count disagrees
    with the library's (rows are then named by index rather than by a wrong line)."""
    import csv
    import gzip
    import io

    import numpy as np

    first = FIRST_LINE.get(fmt)
    if first is None:
        return None
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        data = f.read()
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    if lines == rows + first - 1:
        return first
    text = data.decode("utf-8-sig", errors="replace")
    if fmt == "jsonl":
        starts = [number for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    else:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",")
        starts, start = [], 1
        for record in reader:
            if record and start > 1:  # the header is line 1; blank lines hold no row
                starts.append(start)
            start = reader.line_num + 1
    return np.array(starts, dtype=np.int64) if len(starts) == rows else None


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
