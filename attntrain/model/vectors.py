"""model.embed.vectors: start the word table of a text run from a word-vector file.

# V vocabulary size, E word-vector width (model.embed.word_dim)

Each vocabulary entry takes the file's vector of the same word, else (case-folded) that of the first file
word that folds to the same form; the others keep their random start. One log line states the coverage of
the training text (types and tokens). The vectors then train with the model, or stay fixed
(`model.embed.vectors_trainable: false`, applied where the table is built). With
`model.embed.vectors_extend` the vocabulary already holds the file's other words (attntrain.data.inputs.text), so
words never seen in training still get their vector at predict time.
"""

from __future__ import annotations

from typing import Callable

import torch

from attntrain.data.inputs.vectors import vector_entries
from attntrain.errors import UserError


def aligned(path: str, items: list[str]) -> tuple[int, dict[int, "torch.Tensor"]]:
    """(width, {vocabulary id: vector}): exact spelling first, then case-folded."""
    wanted = {word: index for index, word in enumerate(items)}
    folded: dict[str, list[int]] = {}
    for index, word in enumerate(items):
        folded.setdefault(word.lower(), []).append(index)
    width, entries = vector_entries(path)
    exact, by_fold = {}, {}
    for word, parse in entries:
        if word in wanted and wanted[word] not in exact:
            exact[wanted[word]] = parse()
        key = word.lower()
        if key in folded and key not in by_fold:
            by_fold[key] = parse()
    found = {index: by_fold[word.lower()] for index, word in enumerate(items) if word.lower() in by_fold}
    found.update(exact)
    return width, {index: torch.from_numpy(vector) for index, vector in found.items()}


def coverage(counts: dict[str, int], found: set[str]) -> str:
    """'types 81.2% (9,012 of 11,100), tokens 97.0%' of the training text."""
    types = sum(1 for word in counts if word in found)
    tokens = sum(count for word, count in counts.items() if word in found)
    total = max(sum(counts.values()), 1)
    return (f"types {100 * types / max(len(counts), 1):.1f}% ({types:,} of {len(counts):,}), "
            f"tokens {100 * tokens / total:.1f}%")


def load_vectors(model, task, cfg, log: Callable[[str], None] = print) -> None:
    """Copy the vectors of cfg.model.embed.vectors into the model's word table (nothing when it is unset)."""
    embed_cfg = cfg.model.embed
    if not embed_cfg.vectors:
        return
    text = getattr(getattr(task, "input_kind", None), "text", None)  # the TextVocab of a text input
    table = getattr(getattr(model.embed, "words", None), "table", None)
    if text is None or table is None:
        raise UserError(f"model.embed.vectors: {embed_cfg.vectors} needs text input with model.embed.kind: learned")
    items = text.words.items
    width, found = aligned(embed_cfg.vectors, items)
    if width != embed_cfg.word_dim:
        raise UserError(f"{embed_cfg.vectors}: vectors of width {width}, but model.embed.word_dim is "
                        f"{embed_cfg.word_dim} (set it to {width})")
    with torch.no_grad():
        for index, vector in found.items():
            if index != 0:  # the padding row stays zero
                table.weight[index] = vector.to(table.weight.dtype)
    counts = getattr(text, "counts", None)  # train word counts, when this process built the vocabulary
    if counts:
        log(f"model.embed.vectors {embed_cfg.vectors}: {len(found):,} of {len(items):,} vocabulary entries; "
            f"train {coverage(counts, {items[i] for i in found})}")
