"""Word-vector files (model.embed.vectors): word2vec text and binary, GloVe .txt, fastText .vec, any of them gzipped.

    word2vec text, fastText .vec:  a header line "COUNT WIDTH", then "word v1 ... vWIDTH" per line
    GloVe .txt:                    the same lines without a header (WIDTH from the first line)
    word2vec binary (.bin):        the header line, then per word: the word, a space, WIDTH float32, [newline]

A gzipped file is recognised by its first bytes, a binary one by a first entry that is not a text line.
Only the vectors of the words asked for are parsed, so a file of millions of words costs one pass of splitting.
A file whose lines do not all have WIDTH numbers is one error naming the file and line.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional

import numpy as np

from attntrain.errors import UserError

_HEADER = re.compile(rb"^\s*(\d+)\s+(\d+)\s*$")


def open_bytes(path: Path) -> BinaryIO:
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _text_entry(line: bytes, width: Optional[int], where: str) -> tuple[str, list[str]]:
    """One text line -> (word, its WIDTH number strings); a word may hold spaces (GloVe 840B has a few)."""
    parts = line.decode("utf-8", errors="replace").rstrip("\r\n").rstrip(" ").split(" ")
    if width is None:  # the first line of a file without a header sets the width
        width = len(parts) - 1
    if len(parts) == width + 1 and width > 0:  # the common line: its values are parsed only if its word is wanted
        return parts[0], parts[1:]
    numbers = 0
    while numbers < len(parts) - 1 and _is_number(parts[len(parts) - 1 - numbers]):
        numbers += 1
    # the word is what precedes the last `width` values: a word may be a number, never end in one
    if width < 1 or numbers != width:
        raise UserError(f"{where}: {numbers} numbers where the file's vectors have {width} "
                        "(every line must be a word and the same number of values)")
    return " ".join(parts[:-width]), parts[-width:]


def _parse(numbers: list[str], where: str) -> np.ndarray:
    try:
        return np.asarray(numbers, dtype=np.float32)
    except ValueError:
        raise UserError(f"{where}: a value is not a number ({' '.join(numbers[:3])} ...)") from None


def _is_text(line: bytes, width: int) -> bool:
    try:
        parts = line.decode("utf-8").split()
    except UnicodeDecodeError:
        return False
    return len(parts) >= width + 1 and all(map(_is_number, parts[-width:]))


def _binary_entries(stream: BinaryIO, width: int, path: Path) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    size = 4 * width
    number = 0
    while True:
        word = bytearray()
        while True:
            byte = stream.read(1)
            if not byte:
                if word.strip():
                    raise UserError(f"{path}: entry {number + 1} ('{word.decode(errors='replace')}') has no vector")
                return
            if byte == b" ":
                break
            word += byte
        data = stream.read(size)
        number += 1
        if len(data) < size:
            raise UserError(f"{path}: entry {number} has {len(data) // 4} of {width} values (the file ends)")
        yield word.strip().decode("utf-8", errors="replace"), (lambda data=data: np.frombuffer(data, "<f4").copy())


def vector_entries(path: str | Path) -> tuple[int, Iterator[tuple[str, Callable[[], np.ndarray]]]]:
    """(width, entries): each entry is (word, a function parsing its vector as float32 (width,))."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model.embed.vectors: no file {path}")
    stream = open_bytes(path)
    first = stream.readline()
    if not first.strip():
        raise UserError(f"{path}: no vectors (the first line is empty)")
    header = _HEADER.match(first)
    width = int(header.group(2)) if header else None
    if header:
        second = stream.readline()
        if second and not _is_text(second, width):  # word2vec binary: reread the entries as bytes
            stream.close()
            stream = open_bytes(path)
            stream.readline()
            return width, _binary_entries(stream, width, path)
        lines, first_number = [second], 2
    else:
        width = len(_text_entry(first, None, f"{path}:1")[1])
        lines, first_number = [first], 1

    def entries() -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
        with stream:
            for number, line in enumerate(_chain(lines, stream), first_number):
                if not line.strip():
                    continue
                word, numbers = _text_entry(line, width, f"{path}:{number}")
                yield word, (lambda numbers=numbers, where=f"{path}:{number}": _parse(numbers, where))

    return width, entries()


def _chain(first: list[bytes], rest: BinaryIO) -> Iterator[bytes]:
    yield from first
    yield from rest


def vector_words(path: str | Path) -> list[str]:
    """Every word of a vector file, in file order (for model.embed.vectors_extend)."""
    _, entries = vector_entries(path)
    return [word for word, _ in entries]
