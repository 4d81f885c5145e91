"""Input kinds: a row's input field -> the vectors' raw material (ids, frames, pixels). One table, `INPUT_KINDS`.

Each kind learns what it needs from the training rows (`prepare`: vocabularies, feature statistics),
saves it (`state`), turns one field value into tensors (`encode`) and pads a list of them (`collate`).
Audio and image split `encode` in two: `decode` (the file's frames or 8-bit pixels, what a cache keeps)
and `finish` (normalised by the train statistics), so an example made from a cached decode is the same.
The model's Embed for the kind (attntrain.model.embed.INPUTS) reads the batch keys written here.
Nothing here knows which file format the rows came from or what the target is.

# T positions, F features per frame, C channels, H/W image height and width
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable

import numpy as np
import torch

from attntrain.data.batching import length_mask, pad_stack
from attntrain.data.inputs.text import TextVocab, tokenize as tokenize_english
from attntrain.errors import UserError

# ---- tokenisation: part of the data, saved with the run ------------------------------------------
# Any language: runs of word characters, each other non-space character alone (l'homme -> l ' homme).
_WORDS = re.compile(r"\w+|[^\w\s]")
_HTML_BREAK = re.compile(r"<br\s*/?>")


def _hf_pre_tokenizer(name: str):
    from tokenizers import pre_tokenizers

    table = {"bert": pre_tokenizers.BertPreTokenizer, "whitespace_punct": pre_tokenizers.Whitespace}
    tokenizer = table[name]()
    return lambda line: [piece for piece, _ in tokenizer.pre_tokenize_str(line)]


TOKENIZERS = {
    "whitespace": str.split,  # pre-tokenised input: tokens separated by spaces
    "english": tokenize_english,  # close to UD / PTB: "don't" -> "do n't"
    "words": _WORDS.findall,
    "bert": lambda line: _hf_pre_tokenizer("bert")(line),  # Hugging Face tokenizers' BertPreTokenizer
    # the train split's own token boundaries (attntrain.data.inputs.learned), kept by TextInput; english until
    # learned (auto: when the train inputs are text, or a run made before this existed)
    "learned": tokenize_english,
    "auto": tokenize_english,
}
LEARNED = ("learned", "auto")


class _NotTokens(Exception):
    """A train input that is text, not a token list: nothing to learn token boundaries from."""


def tokenize(line: str, how: str) -> list[str]:
    if how not in TOKENIZERS:
        raise UserError(f"data.input.tokenizer: unknown '{how}'; valid: {', '.join(TOKENIZERS)}")
    return TOKENIZERS[how](line)


def field_value(row: dict, field: str, where: str) -> Any:
    """row[field]; a missing field is one error listing the fields the row has (and naming file:line if known)."""
    where = row.get("_where", where)
    if field not in row:
        names = ", ".join(k for k in map(str, row) if not k.startswith("_"))
        raise UserError(f"{where}: no field '{field}' (fields: {names})")
    return row[field]


class TextInput:
    """Text: a string (tokenised by `data.input.tokenizer`) or a list of tokens -> word/character ids."""

    kind = "text"

    def __init__(self, data_cfg, embed_cfg):
        self.field, self.tokenizer = data_cfg.input.field, data_cfg.input.tokenizer
        self.html_breaks = data_cfg.input.html_breaks
        self.text = TextVocab(embed_cfg)
        self.learned = None  # a LearnedTokenizer (tokenizer learned / auto on token data), saved with the run

    def tokens(self, value: Any, where: str = "input") -> list[str]:
        if isinstance(value, str):
            text = _HTML_BREAK.sub(" ", value) if self.html_breaks else value
            return self.learned.split(text) if self.learned is not None else tokenize(text, self.tokenizer)
        if isinstance(value, (list, tuple)) and all(isinstance(t, str) for t in value):
            return list(value)
        got = "null" if value is None else type(value).__name__
        raise UserError(f"{where}: field '{self.field}' must be text or a list of tokens, got {got}")

    def prepare(self, train: list[dict], state: dict | None) -> None:
        from attntrain.data.inputs.learned import LearnedTokenizer

        if state is not None:
            self.text.load(state)
            learned = state.get("learned_tokenizer")  # absent in runs made before it, and on text data
            self.learned = LearnedTokenizer.from_state(learned) if learned is not None else None
        else:
            self.learned = self._learn(train) if self.tokenizer in LEARNED else None
            self.text.build(self.tokens(field_value(r, self.field, "train"), r.get("_where", "train")) for r in train)

    def _learn(self, train: list[dict]):
        """The train split's token boundaries, from its inputs that are token lists.

        auto: learned only when every input is a token list, else None (the text is cut by english). learned:
        from the token lists, which then cut the inputs that are text (train joined from several sources,
        data.source.add_train); an error when no input is a token list."""
        from attntrain.data.inputs.learned import LearnedTokenizer

        first_text, lists = None, 0

        def token_lists():
            nonlocal first_text, lists
            for row in train:
                value = field_value(row, self.field, "train")
                if isinstance(value, (list, tuple)):
                    lists += 1
                    yield value
                elif self.tokenizer == "auto":
                    raise _NotTokens(row.get("_where", "train"))
                elif first_text is None:
                    first_text = row.get("_where", "train")

        try:
            learned = LearnedTokenizer.learn(token_lists())
        except _NotTokens:
            return None
        if not lists and first_text is not None:
            raise UserError(f"{first_text}: data.input.tokenizer learned learns the token boundaries of data already "
                            f"split into tokens, but field '{self.field}' holds text; use english, words, "
                            "whitespace or bert")
        return learned

    def state(self) -> dict:
        learned = {"learned_tokenizer": self.learned.state()} if self.learned is not None else {}
        return {**self.text.state(), **learned}

    def info(self) -> dict:
        return self.text.info()

    def encode(self, tokens: list[str]) -> dict:
        return self.text.encode(tokens)

    def collate(self, items: list[dict]) -> dict:
        return self.text.collate(items)


class AudioInput:
    """Audio: a file path (or a Hugging Face audio dict) -> frame vectors (T,F), normalised by train statistics."""

    kind = "audio"

    def __init__(self, data_cfg, embed_cfg):
        from attntrain.data.inputs.audio import FrameFeatures

        audio = data_cfg.audio
        self.field, self.sample_rate = data_cfg.input.field, audio.sample_rate
        self.features = FrameFeatures(audio.features, sample_rate=audio.sample_rate, window_ms=audio.window_ms,
                                      hop_ms=audio.hop_ms, n_mels=audio.n_mels, n_mfcc=audio.n_mfcc)
        self.mean = self.std = None

    def decode(self, value: Any, where: str = "an audio array") -> torch.Tensor:
        """where: the row's file:line, for a message about an in-row array (a file names itself)."""
        from attntrain.data.inputs.audio import read_wav, resample

        if isinstance(value, dict) and "array" in value:  # a decoded Hugging Face Audio value
            from attntrain.data.inputs.audio import check_finite

            wave = torch.as_tensor(value["array"], dtype=torch.float32)
            wave = wave.mean(0) if wave.dim() == 2 else wave
            check_finite(wave, value.get("path") or where, value.get("sampling_rate") or 1)
            if value.get("sampling_rate", self.sample_rate) != self.sample_rate:
                wave = resample(wave, value["sampling_rate"], self.sample_rate)
        else:
            if isinstance(value, dict):
                value = value.get("path")
            wave = read_wav(value, self.sample_rate)
        return self.features(wave)  # (T,F) float32, before normalisation

    def prepare(self, train: list[dict], state: dict | None, *, decoded: Callable[[], Iterable] | None = None) -> None:
        """decoded: the train rows' `decode` outputs in order, when the caller has them (a cached split)."""
        if state is not None:
            self.mean, self.std = torch.tensor(state["mean"]), torch.tensor(state["std"])
            return
        each = decoded() if decoded is not None else (self.decode(field_value(r, self.field, "train")) for r in train)
        frames = torch.cat(list(each))  # (sum T, F)
        self.mean, self.std = frames.mean(0), frames.std(0).clamp(min=1e-5)

    def state(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    def info(self) -> dict:
        return {"input": "audio", "num_features": self.features.dim}

    def finish(self, frames: torch.Tensor) -> dict:
        x = (frames - self.mean) / self.std  # (T,F)
        return {"length": x.shape[0], "features": x}

    def encode(self, value: Any) -> dict:
        return self.finish(self.decode(value))

    def collate(self, items: list[dict]) -> dict:
        return {"features": pad_stack([it["features"] for it in items]),  # (B,T,F)
                "mask": length_mask([it["length"] for it in items])}


class ImageInput:
    """Images: a file path (or a PIL image) -> (C,H,W) pixels, grayscale (C=1) or RGB (C=3): a pixel is a vector.

    Every image is resized to `data.image.size`; the channel count comes from `data.image.channels`
    (auto: from the first training image). Pixels are standardised per channel with train statistics.
    """

    kind = "image"

    def __init__(self, data_cfg, embed_cfg):
        self.field, self.patch, self.settings = data_cfg.input.field, data_cfg.patch, data_cfg.image
        self.channels = None if self.settings.channels == "auto" else {"gray": 1, "rgb": 3}[self.settings.channels]
        self.mean = self.std = None

    def pixels(self, value: Any) -> torch.Tensor:
        """(C,H,W) float32 in [0,1]."""
        return unit_pixels(self.decode(value))

    def decode(self, value: Any, where: str = "an image array") -> torch.Tensor:
        """The pixels before scaling: (C,H,W) uint8 (what image files and 8-bit arrays hold), or float32 in
        [0,1] for decoded arrays of another type; `unit_pixels` scales either."""
        from attntrain.data.inputs.images import read_image_bytes

        height, width = self.settings.size
        if isinstance(value, (torch.Tensor, np.ndarray)):  # pixels already decoded (IDX arrays): 0..255, (H,W[,C])
            array = torch.as_tensor(value)
            if array.is_floating_point() and not torch.isfinite(array).all():
                raise UserError(f"{where}: {int((~torch.isfinite(array)).sum())} pixels are NaN or infinite")
            return _array_pixels(array, (height, width), self.channels or 0)
        return _channels_first(read_image_bytes(value, (height, width), channels=self.channels or 0))

    def prepare(self, train: list[dict], state: dict | None, *, decoded: Callable[[], Iterable] | None = None) -> None:
        """decoded: the train rows' `decode` outputs in order once `channels` is known (a cached split)."""
        if state is not None:
            self.channels, self.mean, self.std = state["channels"], torch.tensor(state["mean"]), torch.tensor(state["std"])
            return
        first = self.pixels(field_value(train[0], self.field, "train"))
        self.channels = self.channels or first.shape[0]
        if self.settings.mean is not None:  # declared statistics: no pass over the training images
            self.mean, self.std = torch.tensor(self.settings.mean), torch.tensor(self.settings.std)
            if len(self.mean) != self.channels:
                raise UserError(f"data.image.mean: {len(self.mean)} values for {self.channels}-channel images")
            return
        each = decoded() if decoded is not None else (self.decode(field_value(r, self.field, "train")) for r in train)
        images = torch.stack([unit_pixels(pixels) for pixels in each])  # (N,C,H,W)
        self.mean = images.mean((0, 2, 3))
        self.std = images.std((0, 2, 3)).clamp(min=1e-5)

    def state(self) -> dict:
        return {"channels": self.channels, "mean": self.mean.tolist(), "std": self.std.tolist()}

    def info(self) -> dict:
        from attntrain.data.inputs.images import grid_shape

        height, width = self.settings.size
        return {"input": "image", "patch": self.patch, "grid": list(grid_shape(height, width, self.patch)),
                "channels": self.channels}

    def finish(self, pixels: torch.Tensor) -> dict:
        x = (unit_pixels(pixels) - self.mean[:, None, None]) / self.std[:, None, None]  # (C,H,W)
        rows, cols = self.info()["grid"]
        return {"length": rows * cols, "images": x}

    def encode(self, value: Any) -> dict:
        return self.finish(self.decode(value))

    def collate(self, items: list[dict]) -> dict:
        B = len(items)
        return {"images": torch.stack([it["images"] for it in items]),  # (B,C,H,W)
                "mask": torch.ones(B, items[0]["length"], dtype=torch.bool)}


def unit_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """`ImageInput.decode`'s pixels as float32 in [0,1]: 8-bit values / 255 (the same float32 quotient numpy's
    division gives for each of the 256 values), float pixels as they are."""
    return pixels.float() / 255.0 if pixels.dtype == torch.uint8 else pixels


def _channels_first(pixels: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(pixels)  # (H,W) or (H,W,C)
    return x[None] if x.dim() == 2 else x.permute(2, 0, 1).contiguous()  # (C,H,W)


def _array_pixels(array: torch.Tensor, size: tuple[int, int], channels: int) -> torch.Tensor:
    """Decoded pixels (H,W) or (H,W,C), 0..255 -> (C,H,W) uint8, through the image reader when resizing; a
    non-8-bit array of the right size is scaled to float32 [0,1] here (its values need not be whole)."""
    from attntrain.data.inputs.images import read_image_bytes

    if array.dim() == 2 and channels in (0, 1) and tuple(array.shape) == tuple(size):  # no image library round trip
        return array[None] if array.dtype == torch.uint8 else (array.float() / 255.0)[None]  # (1,H,W)
    from PIL import Image

    return _channels_first(read_image_bytes(Image.fromarray(array.to(torch.uint8).numpy()), size, channels=channels))


class GraphInput:
    """Graph nodes: each node row's feature field(s) -> one row of the feature matrix (N,F).

    A field holds a list of numbers or a string of numbers separated by spaces; `data.input.field` may
    also name several numeric fields, one feature each. The whole graph is one example, so the graph
    task (attntrain.data.tasks.graph) calls `features` once on every node; there is no per-row encode.
    """

    kind = "graph"

    def __init__(self, data_cfg, embed_cfg=None):
        field = data_cfg.input.field
        self.fields = field if isinstance(field, list) else [field]
        self.normalize = data_cfg.graph.normalize

    def vector(self, row: dict, where: str) -> np.ndarray:
        """One node's features as float64; a non-number is an error naming the field and the value."""
        where = row.get("_where", where)
        values = [field_value(row, f, where) for f in self.fields]
        if len(values) == 1:
            values = values[0]
            values = values.split() if isinstance(values, str) else values
        values = values if isinstance(values, (list, tuple)) else [values]
        try:
            vector = np.asarray(values, dtype=np.float64)
            if vector.ndim == 1 and np.isfinite(vector).all():
                return vector
        except (TypeError, ValueError):
            pass
        for position, value in enumerate(values, 1):  # the first value that is not a finite number
            if not _is_number(value):
                name = (f"field '{self.fields[position - 1]}'" if len(self.fields) > 1
                        else f"field '{self.fields[0]}', value {position},")
                raise UserError(f"{where}: {name} is {value!r}, not a number")
        raise UserError(f"{where}: field '{self.fields[0]}' must hold numbers")

    def features(self, rows: list[dict]) -> torch.Tensor:
        """Node rows -> (N,F) float32; every node must have as many features as the first."""
        vectors = [self.vector(row, f"node {number}") for number, row in enumerate(rows, 1)]
        for row, vector in zip(rows, vectors):
            if len(vector) != len(vectors[0]):
                first = rows[0].get("_where", "the first node")
                raise UserError(f"{row.get('_where', 'a node')}: {len(vector)} features, but {first} has "
                                f"{len(vectors[0])}; every node needs the same number (field {', '.join(self.fields)})")
        return torch.from_numpy(np.stack(vectors).astype(np.float32))  # (N,F)

    def scale(self, features: torch.Tensor) -> torch.Tensor:
        """data.graph.normalize rows: each node's features over their absolute sum (counts -> frequencies)."""
        if self.normalize == "none":
            return features
        return features / features.abs().sum(1, keepdim=True).clamp(min=1e-12)  # (N,F); an all-zero row stays 0

    def info(self, features: torch.Tensor) -> dict:
        return {"input": "graph", "num_features": features.shape[1]}


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


INPUT_KINDS = {"text": TextInput, "audio": AudioInput, "image": ImageInput, "graph": GraphInput}
