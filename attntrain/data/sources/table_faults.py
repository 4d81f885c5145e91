"""Why a table file (csv / tsv / jsonl) cannot be read, as one line naming its physical file:line and the cause.

The `datasets` library's parse errors name a record of its parser (wrong after a quoted newline), say
nothing of the encoding, and come with repeated log lines. When it fails, the file is read again here with
the standard library to find the first line at fault: a byte-order mark or bytes that are not UTF-8 (with a
guess at the encoding), a row with another number of fields than the header, a line that is no JSON object.
Only the failure path reads the file this way.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import json
from pathlib import Path
from typing import Iterator

BOMS = [(codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16")]  # longest first: UTF-32 LE starts with UTF-16 LE's mark
DELIMITERS = {"csv": ",", "tsv": "\t"}


def table_fault(path: Path, fmt: str) -> str | None:
    """The first fault of a csv / tsv / jsonl file as one message, or None when none is found here."""
    if fmt not in (*DELIMITERS, "jsonl"):
        return None
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        return f"{path}: cannot read ({e})"
    fault = encoding_fault(path, data)
    if fault is None:
        text = data.decode("utf-8").removeprefix("\ufeff")
        fault = fields_fault(path, text, DELIMITERS[fmt]) if fmt in DELIMITERS else json_fault(path, text)
    return fault


def encoding_fault(path: Path, data: bytes) -> str | None:
    """A byte-order mark of UTF-16/32, NUL bytes of UTF-16 without one, or the first byte that is not UTF-8."""
    for mark, name in BOMS:
        if data.startswith(mark):
            return f"{path}: the file is {name} text (it starts with a {name} byte-order mark); save it as UTF-8"
    head = data[:4000]
    if head and head.count(b"\x00") * 3 > len(head):
        return f"{path}: the file looks like UTF-16 text (every other byte is 0); save it as UTF-8"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        return (f"{path}:{line}:{column}: not UTF-8 text (byte 0x{data[e.start]:02x}; the file looks like "
                f"{legacy_encoding(data)}); save it as UTF-8")
    return None


def legacy_encoding(data: bytes) -> str:
    """A guess at a one-byte encoding: Windows-1252 when its punctuation bytes (0x80-0x9f) occur, else Latin-1."""
    return "Windows-1252" if any(0x80 <= byte <= 0x9F for byte in data) else "Latin-1 (ISO-8859-1)"


def fields_fault(path: Path, text: str, delimiter: str) -> str | None:
    """The first row whose field count differs from the header's, at the physical line where it starts."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            return None
        start = reader.line_num + 1
        for record in reader:
            if record and len(record) != len(header):
                sign = "tab" if delimiter == "\t" else f"'{delimiter}'"
                return (f"{path}:{start}: {len(record)} fields, but the header has {len(header)} "
                        f"({', '.join(header)[:80]}); quote a value that holds a {sign}")
            start = reader.line_num + 1
    except csv.Error as e:
        return f"{path}:{reader.line_num}: not a {'TSV' if delimiter == chr(9) else 'CSV'} row ({e})"
    return None


def json_fault(path: Path, text: str) -> str | None:
    """The first line that is not one JSON object (a blank line is allowed)."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            return f"{path}:{number}:{e.colno}: not a JSON record ({e.msg}); JSON Lines holds one object per line"
        if not isinstance(record, dict):
            return f"{path}:{number}: a JSON {type(record).__name__}, not an object with named fields"
    return None


@contextlib.contextmanager
def quiet_library() -> Iterator[None]:
    """The `datasets` library's log lines (a failed file is logged once per attempt) silenced meanwhile."""
    from datasets.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity(logging.CRITICAL + 10)
    try:
        yield
    finally:
        logging.set_verbosity(level)
