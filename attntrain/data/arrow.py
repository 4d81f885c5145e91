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
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np


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


def file_identity(path: Path) -> list:
    """What says a file changed: its resolved path, size and modification time."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


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
            return file_identity(Path(value))
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
        return datasets.Dataset.from_file(str(path))
    except Exception:  # truncated or foreign: it is computed again
        path.unlink(missing_ok=True)
        return None


def cached_map(dataset, function: Callable[[dict], dict], *, features: dict, key: str, path: Path | None,
               batch_size: int, remove_columns: Sequence[str] = ()):
    """`dataset.map(function)` (batched) written once to the Arrow file `path` and read from it later;
    `path` None keeps the result in memory (rows with no file behind them cannot be found again)."""
    import datasets

    found = read_cached(path)
    if found is not None:
        return found
    datasets.disable_progress_bars()
    where = {"keep_in_memory": True}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        where = {"cache_file_name": str(path)}
    return dataset.map(function, batched=True, batch_size=batch_size, remove_columns=list(remove_columns),
                       features=datasets.Features(features), new_fingerprint=key, **where)


def write_arrow(path: Path, columns: list[str], rows: Iterable[tuple], *, batch_rows: int = 20_000):
    """Stream rows (tuples of strings, in `columns` order) into the Arrow file `path`; return it memory-mapped.

    Written under a temporary name and renamed, so a crash or a concurrent writer never leaves half a
    file under the final name. At most `batch_rows` rows are held in memory at a time.
    """
    import datasets
    import pyarrow as pa

    schema = pa.schema([(name, pa.string()) for name in columns])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            buffer: list[tuple] = []
            for row in rows:
                buffer.append(row)
                if len(buffer) == batch_rows:
                    writer.write_batch(_record_batch(buffer, schema))
                    buffer = []
            if buffer or not writer.stats.num_record_batches:
                writer.write_batch(_record_batch(buffer, schema))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return datasets.Dataset.from_file(str(path))


def _record_batch(rows: list[tuple], schema):
    import pyarrow as pa

    columns = list(zip(*rows)) if rows else [[] for _ in schema.names]
    return pa.record_batch([pa.array(col, type=pa.string()) for col in columns], schema=schema)


def row_dicts(columns: dict[str, list]) -> Iterator[dict]:
    """A batch as `datasets` gives it (column -> values) as one dict per row."""
    return (dict(zip(columns, values)) for values in zip(*columns.values()))


class ArrowRows(Sequence):
    """The rows of a `datasets.Dataset` as dicts, read from the (memory-mapped) table when asked for.

    Behaves like the list of dicts it stands for: len, index, slice (another view, no copy), iteration
    (in batches), and == against a list.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ArrowRows(self.dataset.select(range(len(self))[index]))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.dataset[int(index)]

    def take(self, indices: list[int]) -> list[dict]:
        """The rows at `indices`, in that order (one query of the table)."""
        return list(row_dicts(self.dataset[list(indices)]))

    def __iter__(self) -> Iterator[dict]:
        for batch in self.dataset.iter(batch_size=1000):
            yield from row_dicts(batch)

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
