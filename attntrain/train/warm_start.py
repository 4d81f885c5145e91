"""model.init: a fresh run starts from trained weights (an `attntrain pretrain` run, another run, a file).

Embed and encoder tensors are loaded by name and shape; the head starts fresh. The run takes the
pretrained run's input state, so its data is encoded as the weights expect: for text the vocabulary
(and how words were read: case folding, the tokenizer when both runs read raw text), for audio and
images the normalisation statistics. One log line says what was loaded, what is new and what was
skipped and why.

Only a fresh run reads model.init: a resumed run continues from its own checkpoint, and eval, predict,
serve and export read the run's own files (its task.json holds the vocabulary it was given), so a
fine-tuned run works after the pretrained run is gone.

`start(cfg)` is the one entry point; it dispatches on the value: hf:NAME goes to
attntrain.model.hf_import (public BERT-family checkpoints), which returns an object with the same two
members as `WarmStart`: `task_state` (dict or None) and `load(model) -> str` (the log line).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from attntrain.errors import UserError
from attntrain.train.param_groups import block_of

HF_PREFIX = "hf:"
KEPT = ("embed.", "encoder.")  # what is taken from the pretrained weights; the head always starts fresh


@dataclass
class InitSource:
    """Where model.init points: the weights file and, when known, the run directory around it."""

    value: str  # model.init as written
    weights: Path  # the .safetensors file read
    run: Path | None  # run directory with config.yaml and task.json (None: a file outside a run)


def _run_around(file: Path) -> Path | None:
    """The run directory holding a weights file: RUN/best.safetensors or RUN/checkpoints/step-N/model.safetensors."""
    for folder in (file.parent, file.parent.parent.parent):
        if (folder / "config.yaml").is_file() and (folder / "task.json").is_file():
            return folder
    return None


def resolve(value: str) -> InitSource:
    """model.init -> the weights to read; a missing run or file is a UserError (no torch needed)."""
    path = Path(value)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise UserError(f"model.init: {value}: no such file")
        return InitSource(value, path, _run_around(path))
    if not path.is_dir():
        raise UserError(f"model.init: {value}: no such run directory (give a run directory, a .safetensors file "
                        f"or hf:NAME)")
    if not (path / "config.yaml").is_file() or not (path / "task.json").is_file():
        raise UserError(f"model.init: {value} is not a run directory (no config.yaml and task.json)")
    weights = path / "best.safetensors"
    pointer = path / "checkpoints" / "latest"
    if not weights.is_file() and pointer.is_file():  # an interrupted run: its newest checkpoint
        weights = path / "checkpoints" / pointer.read_text().strip() / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"model.init: {value} has no weights yet (no best.safetensors, no checkpoint)")
    return InitSource(value, weights, path)


def check(cfg) -> None:
    """The config-time check of model.init (`validate`, a fresh `fit`): the run or file exists."""
    if cfg.model.init is not None and not cfg.model.init.startswith(HF_PREFIX):
        resolve(cfg.model.init)


def start(cfg):
    """The warm start of a fresh run (None without model.init); adjusts cfg to the pretrained run's input
    settings, so call it before the task is built."""
    value = cfg.model.init
    if value is None:
        return None
    if value.startswith(HF_PREFIX):  # attntrain.model.hf_import: configure() and load_init() in the trainer
        return None
    return WarmStart.from_source(cfg, resolve(value))


class WarmStart:
    """The weights and input state of a trained run, for a fresh run to start from."""

    def __init__(self, source: InitSource, task_state: dict | None, notes: list[str]):
        self.source, self.task_state, self.notes = source, task_state, notes

    @classmethod
    def from_source(cls, cfg, source: InitSource) -> "WarmStart":
        from attntrain.config import build_config, read_yaml
        from attntrain.data.tasks.presets import expand_preset

        expand_preset(cfg)
        if source.run is None:  # a file alone: no vocabulary or statistics come with it
            return cls(source, None, ["no run directory around the file: this run's own vocabulary"])
        theirs = build_config(read_yaml(source.run / "config.yaml"), str(source.run / "config.yaml"))
        expand_preset(theirs)
        _check_compatible(cfg, theirs, source.value)
        notes = adopt_input_settings(cfg, theirs)
        state = json.loads((source.run / "task.json").read_text(encoding="utf-8"))
        if "input" not in state:
            raise UserError(f"model.init: {source.run / 'task.json'} is of an older layout without an input "
                            "state; pretrain again")
        return cls(source, {"input": state["input"], "target": None, "split_index": None}, notes)

    def load(self, model) -> str:
        """Copy the fitting embed and encoder tensors into `model`; returns the log line."""
        import torch

        from attntrain.train.checkpoint import reading
        from safetensors.torch import load_file

        with reading(self.source.weights, "not a readable safetensors file", "give another model.init"):
            saved = load_file(str(self.source.weights))
        loaded, new, skipped = [], [], []
        own = model.state_dict()
        for key, tensor in own.items():
            if not key.startswith(KEPT):
                new.append(key)
            elif self.task_state is None and key.startswith("embed.words."):
                skipped.append(f"{key} (no vocabulary with the file)")
            elif key not in saved:
                new.append(key)
            elif saved[key].shape != tensor.shape:
                skipped.append(f"{key} (shape {tuple(saved[key].shape)} there, {tuple(tensor.shape)} here)")
            else:
                with torch.no_grad():
                    tensor.copy_(saved[key])
                loaded.append(key)
        if not loaded:
            raise UserError(f"model.init: {self.source.value}: no embed or encoder tensor fits this model "
                            f"({'; '.join(skipped[:2]) or 'no names in common'})")
        return self.describe(loaded, new, skipped)

    def describe(self, loaded: list[str], new: list[str], skipped: list[str]) -> str:
        def part(key: str) -> str:  # embed, encoder.N (a block), encoder.norm, head
            block = block_of(key)
            return f"encoder.{block}" if block is not None else ".".join(key.split(".")[:2 if key.startswith("encoder.") else 1])

        def parts(keys):
            return ", ".join(sorted({part(key) for key in keys}))

        line = (f"model.init {self.source.weights}: loaded {len(loaded)} tensors ({parts(loaded)}); "
                f"new {len(new)} ({parts(new) or 'none'})")
        if skipped:
            line += f"; skipped {len(skipped)}: " + "; ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        return line + "".join(f"; {note}" for note in self.notes)


def _check_compatible(cfg, theirs, value: str) -> None:
    """Input kind, model width and (audio, images) the input's shape must agree: one clear error each."""
    kind, their_kind = cfg.data.input.kind, theirs.data.input.kind
    if kind != their_kind:
        raise UserError(f"model.init: {value} was trained on {their_kind} input; this run reads {kind} "
                        "(data.input.kind)")
    width, their_width = cfg.model.encoder.width, theirs.model.encoder.width
    if width != their_width:
        raise UserError(f"model.init: {value} has model width {their_width}, this config {width}; set "
                        f"model.encoder.width: {their_width}")
    if kind == "audio" and cfg.data.audio != theirs.data.audio:
        raise UserError(f"model.init: {value} read audio as {theirs.data.audio.model_dump()}, this config as "
                        f"{cfg.data.audio.model_dump()}; set data.audio as the pretrained run did")
    if kind == "image" and (cfg.data.image.size, cfg.data.patch) != (theirs.data.image.size, theirs.data.patch):
        raise UserError(f"model.init: {value} read {theirs.data.image.size} images in {theirs.data.patch}-pixel "
                        f"patches, this config {cfg.data.image.size} in {cfg.data.patch}; set data.image.size "
                        "and data.patch as the pretrained run did")


def adopt_input_settings(cfg, theirs) -> list[str]:
    """Text: read words as the pretrained run did (case folding, long-word cut; the tokenizer when both runs
    read raw text: already tokenised data, tokenizer whitespace, is read as it is). Returns what changed."""
    notes = []
    if cfg.data.input.kind != "text":
        return notes
    for section, key in (("embed", "lowercase"), ("embed", "max_word_chars")):
        mine, their = getattr(cfg.model, section), getattr(theirs.model, section)
        if getattr(mine, key) != getattr(their, key):
            notes.append(f"model.{section}.{key}: {getattr(their, key)} (from the pretrained run)")
            setattr(mine, key, getattr(their, key))
    tokenizers = (cfg.data.input.tokenizer, theirs.data.input.tokenizer)
    if "whitespace" not in tokenizers and tokenizers[0] != tokenizers[1]:
        notes.append(f"data.input.tokenizer: {tokenizers[1]} (from the pretrained run)")
        cfg.data.input.tokenizer = tokenizers[1]
    return notes
