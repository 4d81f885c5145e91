"""Examples kept in memory-mapped Arrow files instead of Python lists: rows, encoded splits, cache keys.

A split's rows live in an Arrow file (written once from the source files, or the table library's own
cache) and are read on demand; a split is encoded once with `datasets.Dataset.map` into another cached
Arrow file whose name is a hash of everything the encoding depends on (the rows, the vocabulary, a
version), so a changed setting never reads a stale file. Batches turn a few rows into tensors when the
trainer asks for them; the only per-example array held in memory is the length column used to bucket.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from itertools import chain
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from attntrain.errors import UserError


def cache_key(*parts: Any) -> str:
    """A short hash of JSON-serialisable parts (settings, file identities, versions)."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def rows_digest(rows: Iterable[dict], fields: Sequence[str]) -> str:
    """A hash of the named fields of every row (what encoding the rows reads), taken one row at a time."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps([row.get(name) for name in fields], default=str, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:20]


DIGEST_CHUNK = 1 << 20  # bytes read at a time for a file's content digest


def file_identity(path: Path, *, digest: bool = True) -> list:
    """What says a file's rows changed: its path as named (a symlink's own name can carry a label) and resolved,
    size, modification time and (`digest`, for a file) a hash of its whole content, so a same-size edit whose
    modification time was restored is seen too. Media files go without (`digest=False`): reading every one on
    each start costs ~10% of a cached load and grows with the bytes, where the load reads its cache lazily."""
    stat = path.stat()
    identity = [str(path.absolute()), str(path.resolve()), stat.st_size, stat.st_mtime_ns]
    if digest and path.is_file():
        identity.append(content_digest(path, stat.st_size))
    return identity


def content_digest(path: Path, size: int) -> str:
    """BLAKE2b of a file's whole content (42 ms for IMDB's 26 MB, 1% of its cached load; measured 2026-12-07)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(DIGEST_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_identity(dataset) -> list:
    """What says a file-backed dataset's rows are unchanged: its fingerprint and the identity of every Arrow
    file behind it. The fingerprint alone is not enough: a `save_to_disk` folder written again with other
    rows can keep it (the library derives it from how the data was made, not from the rows)."""
    return [dataset._fingerprint, [file_identity(Path(f["filename"]), digest=False) for f in dataset.cache_files]]


def media_digest(rows: Iterable[dict], field: str, others: Sequence[str]) -> str | None:
    """A hash of what an audio or image field stands for in every row, and of the other named fields: a file
    path by its `file_identity` (an edited file changes it), decoded pixels or samples by their bytes. None
    when a value is neither (or a file is missing): such rows are encoded again each time, never cached."""
    digest = hashlib.sha256()
    for row in rows:
        identity = media_identity(row.get(field))
        if identity is None:
            return None
        digest.update(json.dumps([identity, [row.get(name) for name in others]], default=str,
                                 ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:20]


def media_identity(value: Any) -> list | None:
    """One audio / image value's identity (see `media_digest`): never str() of an array, which abbreviates."""
    if isinstance(value, dict):  # a Hugging Face Audio / Image value
        if value.get("array") is not None:
            return [media_identity(np.asarray(value["array"])), value.get("sampling_rate")]
        if value.get("bytes") is not None:
            return ["bytes", hashlib.sha256(value["bytes"]).hexdigest()]
        value = value.get("path")
    if isinstance(value, (str, Path)):
        try:
            return file_identity(Path(value), digest=False)  # a media file: no read of every file on a warm run
        except OSError:  # missing: decoding says so, naming the row
            return None
    if hasattr(value, "numpy") or isinstance(value, np.ndarray):  # a tensor or an array: its bytes, exactly
        array = np.ascontiguousarray(value.numpy() if hasattr(value, "numpy") else value)
        return ["array", array.dtype.str, list(array.shape), hashlib.sha256(array.tobytes()).hexdigest()]
    if hasattr(value, "tobytes") and hasattr(value, "mode"):  # a PIL image
        return ["image", value.mode, list(value.size), hashlib.sha256(value.tobytes()).hexdigest()]
    return None


def read_cached(path: Path | None):
    """The Arrow file at `path` memory-mapped, or None when there is none; a damaged file is deleted, never trusted."""
    import datasets

    if path is None or not path.is_file():
        return None
    try:
        found = datasets.Dataset.from_file(str(path))
        if intact(found):
            return found
    except Exception:  # truncated or foreign: it is computed again
        pass
    path.unlink(missing_ok=True)
    return None


def intact(dataset) -> bool:
    """Whether a memory-mapped dataset's Arrow data is whole: offsets in range and text valid UTF-8 (bytes damaged
    inside a cached file would otherwise surface as a decode error mid-run). One pass in Arrow's C++ code."""
    import pyarrow as pa

    try:
        dataset.data.table.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowException):
        return False
    return True


def cached_map(dataset, function: Callable, *, features: dict, key: str, path: Path | None,
               batch_size: int, remove_columns: Sequence[str] = (), with_indices: bool = False, arrow: bool = False):
    """`dataset.map(function)` (batched) written once to the Arrow file `path` and read from it later;
    `path` None keeps the result in memory (rows with no file behind them cannot be found again).
    `with_indices`: `function` also gets the rows' indices; `arrow`: it takes and returns `pyarrow.Table`s (no
    Python lists in between)."""
    import datasets

    found = read_cached(path)
    if found is not None:
        return found
    datasets.disable_progress_bars()
    where = {"keep_in_memory": True}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        where = {"cache_file_name": str(path)}
    mapped = (dataset.with_format("arrow") if arrow else dataset).map(
        function, batched=True, batch_size=batch_size, remove_columns=list(remove_columns), with_indices=with_indices,
        features=datasets.Features(features), new_fingerprint=key, **where)
    return mapped.with_format(None)


def write_arrow(path: Path, columns, rows: Iterable, *, batch_rows: int = 20_000):
    """Stream rows into the Arrow file `path`; return it memory-mapped.

    `columns`: a list of names of text columns (rows are tuples in that order), a `pyarrow.Schema` (rows are
    dicts), or None (dicts; the column types are those of the first batch, a column of only None is text).
    A numpy array value (an image) is stored as nested fixed-size lists. Written under a temporary name and
    renamed, so a crash, an error in the rows or a concurrent writer never leaves half a file under the final
    name. At most `batch_rows` rows are held in memory at a time.
    """
    import datasets
    import pyarrow as pa

    schema = pa.schema([(name, pa.string()) for name in columns]) if isinstance(columns, list) else columns
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    writer = None
    try:
        with pa.OSFile(str(tmp), "wb") as sink:
            buffer: list = []
            for row in chain(rows, [None]):  # None: the end, to write what is left
                if row is not None:
                    buffer.append(row)
                    if len(buffer) < batch_rows:
                        continue
                elif writer is not None and not buffer:
                    break
                batch = _record_batch(buffer, schema)
                if writer is None:
                    schema = batch.schema
                    writer = pa.ipc.new_stream(sink, schema)
                writer.write_batch(batch)
                buffer = []
            writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return datasets.Dataset.from_file(str(path))


def _record_batch(rows: list, schema):
    import pyarrow as pa

    if schema is None and not rows:
        schema = pa.schema([])
    if rows and isinstance(rows[0], dict):
        names = schema.names if schema is not None else list(rows[0])
        known = set(names)
        for row in rows:  # a field the first rows lack would be lost: say where it appears instead
            if not known.issuperset(row):
                extra = ", ".join(sorted(set(row) - known))
                raise UserError(f"{row.get(WHERE, 'a row')}: field(s) {extra} not in the first rows "
                                f"(which have {', '.join(n for n in names if n != WHERE)}); give every row the same fields")
        columns = [[row.get(name) for row in rows] for name in names]
    else:
        names = schema.names
        columns = list(zip(*rows)) if rows else [[] for _ in names]
    arrays = []
    for i, values in enumerate(columns):
        try:
            arrays.append(_arrow_column(values, schema.field(i).type if schema is not None else None))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            where = rows[0].get(WHERE, "a row") if isinstance(rows[0], dict) else "a row"
            raise UserError(f"rows from {where} on: field '{names[i]}' holds values of another type than in the first "
                            f"rows ({str(e).splitlines()[0][:200]})") from None
    if schema is None:
        return pa.record_batch(arrays, names=names)
    return pa.record_batch(arrays, schema=schema)


def _arrow_column(values, kind):
    """One column of a batch as an Arrow array: numpy arrays as nested fixed-size lists, None-only as text."""
    import pyarrow as pa

    if values and hasattr(values[0], "__array__"):  # numpy arrays or tensors
        stacked = np.stack([np.asarray(value) for value in values])  # (N, ...) one array per row, all of one shape
        array = pa.array(stacked.reshape(-1))
        for size in reversed(stacked.shape[1:]):
            array = pa.FixedSizeListArray.from_arrays(array, size)
        return array if kind is None else array.cast(kind)
    array = pa.array(list(values))
    if kind is None:
        return array.cast(pa.string()) if pa.types.is_null(array.type) else array
    return array.cast(kind)  # a safe cast: 1.5 into an integer column is an error, never 1


def row_dicts(columns: dict[str, list]) -> Iterator[dict]:
    """A batch as `datasets` gives it (column -> values) as one dict per row."""
    return (dict(zip(columns, values)) for values in zip(*columns.values()))


def pa_fixed_size(kind) -> bool:
    import pyarrow as pa

    return isinstance(kind, pa.FixedSizeListType)


class TableLines:
    """Where row i of files read one after another lies: `file:line` (a header line skipped), or `file: row i`.

    Computed from the files' row counts when asked for, so no per-row string is kept.
    """

    def __init__(self, files: list[tuple[str, int, int | np.ndarray | None]]):
        # (path, rows, line of the first row, or each row's line (quoted line breaks), or None: no lines)
        self.files = files
        self.starts = np.cumsum([0] + [count for _, count, _ in files])

    def __call__(self, position: int) -> str:
        return self.many([position])[0]

    def many(self, positions) -> list[str]:
        """The places of several rows (one search for all of them)."""
        positions = np.asarray(positions, dtype=np.int64)
        numbers = np.searchsorted(self.starts, positions, side="right") - 1
        out = []
        for number, index in zip(numbers.tolist(), (positions - self.starts[numbers]).tolist()):
            path, _, first = self.files[number]
            if first is None:
                out.append(f"{path}: row {index}")
            else:
                out.append(f"{path}:{first[index] if isinstance(first, np.ndarray) else index + first}")
        return out


WHERE = "_where"  # the key of a row's origin (file:line) in the dicts a view yields (as attntrain.data.sources.files)


class ArrowRows(Sequence):
    """The rows of a `datasets.Dataset` as dicts, read from the (memory-mapped) table when asked for.

    Behaves like the list of dicts it stands for: len, index, slice and `select` (other views, no copy),
    iteration (in batches), and == against a list. With `lines` (rows of table files), each dict also gets
    its `_where` (file:line) from its position in the files; `positions` maps this view's rows to those.
    """

    def __init__(self, dataset, *, lines: TableLines | None = None, positions: np.ndarray | None = None):
        self.dataset, self.lines, self.positions = dataset, lines, positions
        # columns of fixed-size lists (IDX images) come back as numpy arrays, read from Arrow in one piece
        self.arrays = [f.name for f in dataset.data.schema if pa_fixed_size(f.type)] if len(dataset.features) else []

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def column_names(self) -> list[str]:
        return self.dataset.column_names + ([WHERE] if self.lines is not None else [])

    def select(self, indices) -> "ArrowRows":
        """The rows at `indices` (in that order) as another view."""
        positions = None
        if self.lines is not None:
            every = np.arange(len(self)) if self.positions is None else self.positions
            positions = every[np.asarray(indices, dtype=np.int64)]
        return ArrowRows(self.dataset.select(indices), lines=self.lines, positions=positions)

    def where(self, index: int) -> str | None:
        """Row `index`'s file:line, when the rows know it."""
        if self.lines is not None:
            return self.lines(int(index if self.positions is None else self.positions[index]))
        if WHERE in self.dataset.column_names:
            return self.dataset[int(index)][WHERE]
        return None

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.select(range(len(self))[index])
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.take([index])[0]

    def take(self, indices) -> list[dict]:
        """The rows at `indices`, in that order (one query of the table)."""
        indices = [int(i) + (len(self) if int(i) < 0 else 0) for i in indices]
        if self.arrays:
            return self.dicts(self._columns(self.dataset.with_format("arrow")[indices]), indices)
        return self.dicts(self.dataset[indices], indices)

    def _columns(self, table) -> dict[str, list]:
        """An Arrow batch as column -> values; fixed-size list columns as one numpy array (N, ...) each."""
        out = {}
        for name in table.column_names:
            column = table.column(name).combine_chunks()
            if name in self.arrays:
                shape = []
                while pa_fixed_size(column.type):
                    shape.append(column.type.list_size)
                    column = column.flatten()
                out[name] = list(np.array(column.to_numpy(zero_copy_only=False)).reshape(len(table), *shape))  # writable
            else:
                out[name] = column.to_pylist()
        return out

    def dicts(self, batch: dict[str, list], indices: list[int]) -> list[dict]:
        """A batch of this view's dataset (its rows at `indices`) as row dicts, with `_where` when known."""
        rows = list(row_dicts(batch))
        if self.lines is not None:
            indices = np.asarray(indices, dtype=np.int64)
            positions = indices if self.positions is None else self.positions[indices]
            for row, where in zip(rows, self.lines.many(positions)):
                row[WHERE] = where
        return rows

    def __iter__(self) -> Iterator[dict]:
        for start in range(0, len(self), 1000):
            yield from self.take(range(start, min(start + 1000, len(self))))

    def column_batches(self, name: str, size: int = 10_000) -> Iterator[list]:
        """One column in lists of `size` values (for passes over a whole split)."""
        for batch in self.dataset.select_columns([name]).iter(batch_size=size):
            yield batch[name]

    def __eq__(self, other) -> bool:
        return isinstance(other, (list, ArrowRows)) and len(self) == len(other) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


class ArrowExamples(Sequence):
    """An encoded split: an Arrow table of ids (encoded once, cached), made into tensors per request.

    `make(row, index)` turns one encoded row (a dict of Python values) and its index into the example
    dict the task's `collate` takes; `lengths` (numpy, one per example) is what batching sorts by.
    """

    def __init__(self, dataset, lengths: np.ndarray, make: Callable[[dict, int], dict]):
        self.dataset, self.lengths, self.make = dataset, lengths, make

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        return self.make(self.dataset[int(index)], int(index))

    def take(self, indices: list[int]) -> list[dict]:
        rows = row_dicts(self.dataset[[int(i) for i in indices]])
        return [self.make(row, int(i)) for i, row in zip(indices, rows)]

    def __iter__(self) -> Iterator[dict]:
        for start in range(0, len(self), 1000):
            yield from self.take(range(start, min(start + 1000, len(self))))
