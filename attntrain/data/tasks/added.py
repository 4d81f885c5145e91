"""data.source.add_train: more training rows from other sources, each in any format the readers know, joined
to the train split after the dev / test split is made (a dev set held out from train holds none of them).

Each source's relative files resolve under its own `dataset:` folder (default data.dataset); its input field
(`field:`, default data.input.field) is renamed to data.input.field, so a CoNLL-U `words` list, a CoNLL
`tokens` list and a JSONL `text` string all train as the one input. A row whose input equals a dev or test
input is dropped. A problem names the source's key (`data.source.add_train[2].field: ...`), and one line says
what each source gave.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any, Callable

from attntrain.data.sources.files import WHERE
from attntrain.data.sources.readers import read_source
from attntrain.errors import UserError

KEY = "data.source.add_train"
_SOURCE_KEY = re.compile(r"^data\.source(?=[.:\s])")  # a reader's message about `data.source...` keys


def ptb_spelling(text: str) -> str:
    """Text as PTB-tokenised files spell it: lowercased, ( ) as -lrb- -rrb-, / as \\/ (GLUE SST-2 -> Kim 2014 files)."""
    return text.strip().lower().replace("(", "-lrb-").replace(")", "-rrb-").replace("/", "\\/")


@dataclass
class AddedSource:
    """One add_train source's rows (input already renamed to data.input.field) and how to name it."""

    key: str  # data.source.add_train[i]
    described: str  # format and files, for the log line
    rows: list[dict]


def source_key(index: int) -> str:
    return f"{KEY}[{index}]"


def describe(extra) -> str:
    """`conllu ud_en_ewt/en_ewt-ud-train.conllu`: the source's format and the files it names."""
    named = extra.path if extra.path else ", ".join(str(v) for v in (extra.files or {}).values())
    return f"{extra.format} {extra.dataset + '/' if extra.dataset else ''}{named}"


def read_added(data_cfg, *, target_field: str | None) -> list[AddedSource]:
    """Every add_train source's rows, in the order listed; target_field: a field every row must also hold (the
    label or tags of a fit; None when pretraining)."""
    return [AddedSource(source_key(index), describe(extra), _source_rows(data_cfg, index, extra, target_field))
            for index, extra in enumerate(data_cfg.source.add_train or [])]


def rekeyed(message: str, key: str) -> str:
    """A reader's message about `data.source.files.train` (or any message) as one about the added source's key."""
    if message.startswith(KEY):
        return message
    return _SOURCE_KEY.sub(key, message, count=1) if _SOURCE_KEY.match(message) else f"{key}: {message}"


def source_view(data_cfg, index: int, extra):
    """data_cfg as the added source reads it: that source, and its dataset folder (checked: an error names it)."""
    from attntrain.data.sources.root import dataset_dir

    if extra.dataset:
        try:
            dataset_dir(data_cfg.root, extra.dataset)
        except UserError as error:
            raise UserError(f"{source_key(index)}.dataset: {error}") from None
    return data_cfg.model_copy(update={"source": extra, "dataset": extra.dataset or data_cfg.dataset})


def _source_rows(data_cfg, index: int, extra, target_field: str | None) -> list[dict]:
    key = source_key(index)
    view = source_view(data_cfg, index, extra)
    try:
        rows = [row for part in read_source(view, extra).values() for row in part]
    except UserError as error:
        raise UserError(rekeyed(str(error), key)) from None
    field, main = extra.field or data_cfg.input.field, data_cfg.input.field
    for number, row in enumerate(rows, 1):
        where = row.get(WHERE, f"{describe(extra)} row {number}")
        if row.get(field) is None:  # absent, or null in a table whose other rows have it
            what = f"field '{field}' is null" if field in row else f"no field '{field}'"
            hint = "" if extra.field else f"; name this source's input field in {key}.field"
            raise UserError(f"{key}.field: {where}: {what} (fields: {_names(row)}){hint}")
        if target_field is not None and row.get(target_field) is None:
            raise UserError(f"{key}: {where}: no field '{target_field}' (data.target.field; fields: {_names(row)}): "
                            "rows added to train need the target too")
        row[main] = _respelt(row.pop(field)) if extra.ptb_escapes else row.pop(field)
    return rows


def _names(row: dict) -> str:
    return ", ".join(name for name in map(str, row) if not name.startswith("_"))


def _respelt(value: Any) -> Any:
    """ptb_escapes: a text, or each token of a token list."""
    return [ptb_spelling(str(token)) for token in value] if isinstance(value, (list, tuple)) else ptb_spelling(str(value))


def join_added(splits: dict, sources: list[AddedSource], tokens: Callable[[dict], list]) -> tuple[list[dict], dict]:
    """(train + the added rows whose tokens are no dev / test input's, counts); says what each source gave."""
    held_out = {tuple(tokens(row)) for split in ("dev", "test") for row in splits.get(split) or []}
    joined = list(splits["train"])  # rows from several sources, held in Python: a list
    counts = []
    for source in sources:
        kept = [row for row in source.rows if tuple(tokens(row)) not in held_out]
        joined.extend(kept)
        counts.append({"source": source.key, "described": source.described, "rows": len(kept),
                       "dropped_dev_test": len(source.rows) - len(kept)})
    parts = "; ".join(f"[{n}] {c['described']}: {c['rows']:,} rows ({c['dropped_dev_test']:,} dropped: equal to a "
                      "dev/test input)" for n, c in enumerate(counts))
    print(f"{KEY}: {len(splits['train']):,} train rows + {sum(c['rows'] for c in counts):,} added = "
          f"{len(joined):,}; {parts}", file=sys.stderr, flush=True)
    totals = {"rows": sum(c["rows"] for c in counts), "dropped_dev_test": sum(c["dropped_dev_test"] for c in counts)}
    return joined, {**totals, "sources": counts}
