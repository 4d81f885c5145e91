"""CoNLL-U -> Hugging Face `datasets.Dataset` of {"words", "upos", "xpos", "lemma", "deprel"} lists, cached on disk.

Parsing is done by the `conllu` package, one sentence block at a time, so a malformed line is
reported with its file and line number. Only syntactic words (integer IDs) are kept: multiword
ranges (`1-2`) and empty nodes (`8.1`) are skipped, as the UD guidelines prescribe for tagging.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import conllu
import datasets

from attntrain.data.tagsets import UPOS
from attntrain.data.sources.root import cache_dir
from attntrain.errors import UserError

PARSER_VERSION = 3  # bump when the parsed columns change, to invalidate caches


def _blocks(path: Path):
    """Yield (first line number, sentence text) for each blank-line separated block."""
    start, lines = None, []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                if start is None:
                    start = number
                lines.append(line)
            elif lines:
                yield start, "".join(lines)
                start, lines = None, []
    if lines:
        yield start, "".join(lines)


def _check_block(path: Path, start: int, text: str) -> None:
    """Column count and UPOS checks that conllu itself is lenient about."""
    for offset, line in enumerate(text.splitlines()):
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        where = f"{path}:{start + offset}"
        if len(cols) != 10:
            raise UserError(f"{where}: expected 10 tab-separated CoNLL-U columns, found {len(cols)}")
        head = cols[0]
        if head.isdigit() and cols[3] not in UPOS:
            raise UserError(f"{where}: unknown UPOS tag '{cols[3]}' (valid: {', '.join(UPOS)})")
        if not (head.isdigit() or "-" in head or "." in head):
            raise UserError(f"{where}: invalid token ID '{head}'")


def read_conllu(path: str | Path) -> list[dict]:
    """Parse a CoNLL-U file into [{"words": [...], "upos": [...], ..., "line": first line}]; errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"CoNLL-U file not found: {path}")
    sentences = []
    try:
        for start, text in _blocks(path):
            _check_block(path, start, text)
            try:
                parsed = conllu.parse(text)
            except conllu.exceptions.ParseException as e:
                raise UserError(f"{path}:{start}: malformed CoNLL-U sentence: {e}") from None
            for sentence in parsed:
                words = [t for t in sentence if isinstance(t["id"], int)]
                if words:
                    sentences.append({"words": [t["form"] for t in words], "upos": [t["upos"] for t in words],
                                      "xpos": [t["xpos"] or "_" for t in words],
                                      "lemma": [t["lemma"] or "_" for t in words],
                                      "deprel": [t["deprel"] or "_" for t in words], "line": start})
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return sentences


def load_conllu_dataset(path: str | Path) -> datasets.Dataset:
    """`read_conllu` as a `datasets.Dataset`, cached under the cache dir keyed by file identity."""
    from attntrain.data.sources.arrow import cache_key, file_identity, intact

    path = Path(path)
    if not path.is_file():
        raise UserError(f"CoNLL-U file not found: {path}")
    key = cache_key(file_identity(path), PARSER_VERSION)[:16]
    target = cache_dir() / "conllu" / f"{path.stem}-{key}"
    if target.is_dir():
        try:
            found = datasets.load_from_disk(str(target))
            if intact(found):
                return found
        except Exception:  # a damaged cache is rebuilt, never trusted
            pass
        shutil.rmtree(target, ignore_errors=True)
    dataset = datasets.Dataset.from_list(read_conllu(path))
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    datasets.disable_progress_bars()
    dataset.save_to_disk(str(tmp))
    try:
        os.rename(tmp, target)
    except OSError:  # another process cached it first
        shutil.rmtree(tmp, ignore_errors=True)
    return dataset
