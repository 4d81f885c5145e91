"""Text through a pretrained checkpoint's own tokenizer (model.init: hf:NAME_OR_FOLDER): words -> sub-word pieces.

# T words, S pieces (the checkpoint's special tokens included)

The words come from `data.input.tokenizer` as for any text input (or from the data, already split), so tags
stay per word; each word is then cut into the checkpoint's pieces. The tokenizer is read once, through the
`transformers` loaders (a save_pretrained folder or a hub name in the local cache), and its whole definition
(tokenizer.json) is kept in the run's task state: predict, serve and export need only the run directory and
the `tokenizers` library.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import torch

from attntrain.data.batching import length_mask, pad_stack
from attntrain.errors import UserError

HF_PREFIX = "hf:"  # model.init values that name a Hugging Face checkpoint
FAMILIES = ("bert", "roberta", "distilbert", "electra")  # model types whose encoders attntrain can import
# Families whose byte-level BPE marks a word start by a leading space: words given one by one need it added.
PREFIX_SPACE = ("roberta",)
T = TypeVar("T")


def checkpoint_name(init: str | None) -> str | None:
    """The NAME_OR_FOLDER of model.init hf:NAME_OR_FOLDER, or None for any other value."""
    return init[len(HF_PREFIX):] if init and init.startswith(HF_PREFIX) else None


def from_checkpoint(name: str, load: Callable[[str], T]) -> T:
    """load(name) through the transformers loaders; a folder that is no checkpoint, a hub name missing from the
    local cache (or the transformers package itself) missing -> one UserError line naming `name`."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise UserError(f"model.init hf:{name} needs the transformers package: pip install 'attntrain[pretrained]'") \
            from None
    try:
        return load(name)
    except (OSError, ValueError, KeyError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"model.init hf:{name}: not a checkpoint folder nor a model in the local hub cache "
                        f"({reason})") from None


def checkpoint_config(name: str):
    """The checkpoint's transformers config; a family attntrain cannot import is an error naming it."""
    from transformers import AutoConfig

    config = from_checkpoint(name, AutoConfig.from_pretrained)
    if config.model_type not in FAMILIES:
        raise UserError(f"model.init hf:{name}: model family '{config.model_type}' cannot be imported "
                        f"(supported: {', '.join(FAMILIES)})")
    return config


def read_tokenizer(name: str) -> tuple[str, int]:
    """The checkpoint's fast tokenizer as tokenizer.json text, and the size of its embedding table."""
    from transformers import AutoTokenizer

    config = checkpoint_config(name)
    options = {"add_prefix_space": True} if config.model_type in PREFIX_SPACE else {}
    tokenizer = from_checkpoint(name, lambda n: AutoTokenizer.from_pretrained(n, use_fast=True, **options))
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"model.init hf:{name}: the checkpoint has no fast (Rust) tokenizer")
    return tokenizer.backend_tokenizer.to_str(), config.vocab_size


class PieceInput:
    """Words -> the checkpoint's piece ids with its special tokens; for tagging also each word's first piece.

    Encoded item: words (S,) piece ids, length T (words kept: a word whose first piece falls past
    `max_pieces` is cut with the ones after it), oov (T,) all false, and with `tagging` word_starts (T,).
    """

    kind = "text"  # the data floor handles it as text (tokens, Arrow cache, predict); the model sees "pieces"

    def __init__(self, data_cfg, embed_cfg, name: str, *, tagging: bool, words: Callable[[Any, str], list[str]]):
        self.name, self.tagging, self.words = name, tagging, words
        self.max_pieces = embed_cfg.positions or 512
        self.field = data_cfg.input.field
        self.tokenizer = None
        self.definition: str | None = None
        self.num_words = 0

    def tokens(self, value: Any, where: str = "input") -> list[str]:
        return self.words(value, where)

    def prepare(self, train, state: dict | None) -> None:
        from tokenizers import Tokenizer

        if state is None:
            self.definition, self.num_words = read_tokenizer(self.name)
        else:
            self.definition, self.num_words = state["tokenizer"], state["num_words"]
        self.tokenizer = Tokenizer.from_str(self.definition)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_pieces)

    def state(self) -> dict:
        return {"tokenizer": self.definition, "num_words": self.num_words}

    def info(self) -> dict:
        return {"input": "pieces", "num_words": self.num_words}

    def pieces(self, tokens: list[str]):
        """The tokenizer's Encoding of the words (special tokens added, cut to max_pieces)."""
        return self.tokenizer.encode(tokens, is_pretokenized=True)

    def encode(self, tokens: list[str]) -> dict:
        encoding = self.pieces(tokens)
        item = {"words": torch.tensor(encoding.ids, dtype=torch.long), "length": len(tokens)}
        if self.tagging:
            starts = word_starts(encoding.word_ids, len(tokens))
            item.update(length=len(starts), word_starts=torch.tensor(starts, dtype=torch.long))
        item["oov"] = torch.zeros(item["length"], dtype=torch.bool)
        return item

    def collate(self, items: list[dict]) -> dict:
        pieces = length_mask([len(it["words"]) for it in items])  # (B,S)
        batch = {"words": pad_stack([it["words"] for it in items]), "piece_mask": pieces, "mask": pieces}
        if self.tagging:
            batch.update(word_starts=pad_stack([it["word_starts"] for it in items]),  # (B,T)
                         mask=length_mask([it["length"] for it in items]),
                         oov=pad_stack([it["oov"] for it in items]))
        return batch

    def piece_labels(self, tokens: list[str]) -> list[str]:
        """The pieces' own spellings (axis labels of attention maps)."""
        return list(self.pieces(tokens).tokens)


def word_starts(word_ids: list[int | None], num_words: int) -> list[int]:
    """Index of the first piece of each word, for the words whose first piece survived truncation.

    A word the tokenizer turns into no piece at all (only characters its normaliser removes) points at the
    first piece of the sequence (the [CLS] token), so every word still gets a tag.
    """
    first: dict[int, int] = {}
    for index, word in enumerate(word_ids):
        if word is not None and word not in first:
            first[word] = index
    kept = max(first, default=-1) + 1
    return [first.get(word, 0) for word in range(min(kept, num_words))]


def piece_input(cfg) -> PieceInput | None:
    """The text input of a run whose model.init is hf:NAME (None for any other run): words as for any text
    input (data.input.tokenizer), then the checkpoint's pieces."""
    from attntrain.data.inputs.kinds import TextInput

    name = checkpoint_name(cfg.model.init)
    if name is None or cfg.data.input.kind != "text":
        return None
    if cfg.data.input.tokenizer == "learned":
        raise UserError("data.input.tokenizer learned: a run from a pretrained checkpoint (model.init hf:...) "
                        "reads raw text with english, words, whitespace or bert")
    words = TextInput(cfg.data, cfg.model.embed).tokens
    return PieceInput(cfg.data, cfg.model.embed, name, tagging=cfg.model.head.kind == "tagging", words=words)
