"""Splits of a `DataTask` (attntrain/data/tasks/generic.py) in cached Arrow files: a text split encoded once
(ids), an audio / image split decoded once (frames, 8-bit pixels) and made into examples on request.

A file's name hashes what it was made from (the rows' dataset fingerprint or files, the vocabularies, the
settings), so a later run with the same key reads it instead of encoding again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from attntrain.data.sources.arrow import (ArrowExamples, ArrowRows, cache_key, cached_map, dataset_identity,
                                          media_digest, rows_digest)
from attntrain.data.sources.files import WHERE

ENCODING_VERSION = 1  # bump when what an encoded text split holds changes: older cached encodings are then not read
TEXT_COLUMNS = {"words": torch.long, "oov": torch.bool, "shapes": torch.long, "chars": torch.long,
                "labels": torch.long,
                "word_starts": torch.long}  # an encoded text example's tensors, stored in Arrow as (nested) lists
MEDIA_INPUTS = ("audio", "image")  # input kinds whose splits are decoded once into a cached Arrow file
MEDIA_VERSION = 1  # bump when what a decoded audio / image split holds changes


def _plain(value: Any) -> Any:
    """A tensor of an encoded example as (nested) Python lists, for an Arrow column."""
    return value.tolist() if torch.is_tensor(value) else value


def _text_item(row: dict, index: int) -> dict:
    """One row of an encoded text split -> the example `DataTask.encode` made (same tensors, same dtypes)."""
    item = {"length": row["length"]}
    for name, dtype in TEXT_COLUMNS.items():
        if row.get(name) is not None:
            item[name] = torch.tensor(row[name], dtype=dtype)
    if "chars" in item and not row["length"]:
        item["chars"] = torch.zeros(0, 1, dtype=torch.long)  # (T,C) of no words, as TextVocab.encode makes it
    return item


def _decoded_tensor(row: dict) -> torch.Tensor:
    """A decoded audio / image row's tensor, as `decode` gave it (same dtype, shape and bytes)."""
    array = np.frombuffer(row["data"], dtype=np.dtype(row["dtype"])).reshape(row["shape"])
    return torch.from_numpy(array.copy())  # a writable copy: the bytes belong to the Arrow row


class CachedSplits:
    """The Arrow side of `DataTask`: its text splits encoded and its audio / image splits decoded into cached
    files (it reads the task's cfg, input_kind, target, input, split_raw, info, encode and _input_value)."""

    def _encode_text(self, rows, max_len: int | None) -> ArrowExamples:
        """A text split encoded once (by `encode`, row by row) into an Arrow file of ids cached under a hash of
        the rows, the vocabularies and every setting the encoding reads; a later run with the same key reads it.

        Rows in Arrow files are named by their dataset's fingerprint and files (`dataset_identity`), so finding
        the cache reads no row; rows held only in memory (a list) are hashed one by one."""
        import datasets

        from attntrain.data.sources.root import cache_dir

        data, embed = self.cfg.data, self.cfg.model.embed
        on_disk = isinstance(rows, ArrowRows) and bool(rows.dataset.cache_files)
        rows_key = (["arrow", dataset_identity(rows.dataset)] if on_disk
                    else rows_digest(rows, (data.input.field, data.target.field)))
        key = cache_key("text", ENCODING_VERSION, rows_key,
                        self.input_kind.state(), self.target.state(), data.input.model_dump(mode="json"),
                        data.target.model_dump(mode="json"), data.truncate, max_len, self.target.head,
                        [embed.lowercase, embed.max_word_chars, bool(embed.char_dim), bool(embed.shape_dim)])
        ids = datasets.List(datasets.Value("int64"))
        features = {"length": datasets.Value("int64"), "words": ids, "oov": datasets.List(datasets.Value("bool"))}
        if embed.shape_dim:
            features["shapes"] = ids
        if embed.char_dim:
            features["chars"] = datasets.List(ids)
        features["labels"] = ids if self.target.head == "tagging" else datasets.Value("int64")
        if getattr(self.input_kind, "tagging", False):  # pieces: each word's first piece
            features["word_starts"] = ids

        def encode_rows(batch: dict, indices: list[int]) -> dict:
            examples = rows.dicts(batch, indices) if on_disk else [rows[i] for i in batch["index"]]
            items = [self.encode(example, max_len=max_len) for example in examples]
            return {name: [_plain(item.get(name)) for item in items] for name in features}

        dataset = rows.dataset if on_disk else datasets.Dataset.from_dict({"index": list(range(len(rows)))})
        encoded = cached_map(dataset, encode_rows, features=features, key=key, with_indices=True,
                             path=cache_dir() / "encoded" / f"text-{key}.arrow", batch_size=1000,
                             remove_columns=dataset.column_names)
        return ArrowExamples(encoded, encoded.data.column("length").to_numpy().astype(np.int64), _text_item)

    # ---- audio and image splits in Arrow -----------------------------------------------------------
    def _media_rows_identity(self, rows) -> str | None:
        """What says a split's rows are the same as when its cache was written (None: rows that cannot be
        cached): each media file's identity (path, size, modification time) or an in-row array's bytes, so an
        edited file is decoded again even when the rows come from a table that did not change."""
        data = self.cfg.data
        return media_digest(rows, data.input.field, [data.target.field])

    def _decode_media(self, name: str):
        """The split decoded once (`input_kind.decode`, then the target's label) into an Arrow file of raw bytes
        cached under a hash of the rows (their files' identities or pixel bytes), the decode settings and the
        label set. It holds nothing the train statistics or max_len change: `_media_examples` applies those."""
        import datasets

        from attntrain.data.sources.root import cache_dir

        if name in self._decoded:
            return self._decoded[name]
        rows, data = self.split_raw(name), self.cfg.data
        identity = self._media_rows_identity(rows)
        settings = (data.audio.model_dump(mode="json") if self.input == "audio"
                    else [data.image.size, self.input_kind.channels])
        key = cache_key("media", self.input, MEDIA_VERSION, identity, settings, self.target.state(), self.target.head,
                        data.input.model_dump(mode="json"), data.target.model_dump(mode="json"))
        ids = datasets.List(datasets.Value("int64"))
        features = {"data": datasets.Value("binary"), "dtype": datasets.Value("string"), "shape": ids,
                    "labels": ids if self.target.head == "tagging" else datasets.Value("int64")}

        def decode_rows(batch: dict) -> dict:
            out: dict[str, list] = {column: [] for column in features}
            for row in rows.take(batch["index"]) if isinstance(rows, ArrowRows) else (rows[i] for i in batch["index"]):
                array = self.input_kind.decode(self._input_value(row, "example"), row.get(WHERE, "a row")).numpy()
                labels = self.target.encode(row, self._media_length(array.shape)).get("labels")
                for column, value in zip(features, (array.tobytes(), array.dtype.str, list(array.shape),
                                                    _plain(labels))):
                    out[column].append(value)
            return out

        path = cache_dir() / "encoded" / f"{self.input}-{key}.arrow" if identity is not None else None
        self._decoded[name] = cached_map(datasets.Dataset.from_dict({"index": list(range(len(rows)))}), decode_rows,
                                         features=features, key=key, path=path, batch_size=200,
                                         remove_columns=["index"])
        return self._decoded[name]

    def _decoded_train(self):
        """The train split's decoded tensors in order (for the input statistics), read from its Arrow file."""
        return (_decoded_tensor(row) for row in self._decode_media("train"))

    def _media_examples(self, decoded, max_len: int | None) -> ArrowExamples:
        """A decoded split made into `encode`'s examples on request: normalised and cut to max_len as `encode` does."""
        import pyarrow.compute as pc

        if self.input == "image":
            lengths = np.full(len(decoded), self._media_length(None), dtype=np.int64)
        else:  # the frame counts: the first of each shape
            lengths = pc.list_element(decoded.data.column("shape"), 0).to_numpy().astype(np.int64)
            lengths = np.minimum(lengths, max_len) if max_len else lengths

        def make(row: dict, index: int) -> dict:
            item = self._media_item(_decoded_tensor(row), max_len)
            labels = row["labels"]
            if labels is not None:  # tags (a list) are cut as the frames were
                item["labels"] = torch.tensor(labels[:item["length"]] if isinstance(labels, list) else labels,
                                              dtype=torch.long)
            return item

        return ArrowExamples(decoded, lengths, make)

    def _media_length(self, shape) -> int:
        """An example's length before any max_len cut: audio its frames, an image its patches."""
        if self.input == "image":
            rows, cols = self.info()["grid"]
            return rows * cols
        return shape[0]

    def _media_item(self, decoded: torch.Tensor, max_len: int | None) -> dict:
        """An audio / image example from its decoded tensor; audio cut to max_len frames."""
        item = self.input_kind.finish(decoded)
        if max_len and self.input == "audio":
            item = {"features": item["features"][:max_len], "length": min(item["length"], max_len)}
        return item
