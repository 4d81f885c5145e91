"""Which parameters train, and at what learning rate: train.freeze and train.layer_decay.

Parameters are named as the model's state dict names them (embed.*, encoder.blocks.N.*, head.*). A block
is addressed as `encoder.N` whatever the encoder kind calls it (transformer and cnn blocks, rnn layers).
Depth, for the layer-wise decay: the embedding (and a learned position table) 0, block N N + 1, the head
num_layers + 1; a parameter's lr is train.lr x layer_decay ** (num_layers + 1 - depth).
"""

from __future__ import annotations

import re

from attntrain.errors import UserError

_BLOCK = re.compile(r"^encoder\.(?:blocks\.(\d+)\.|rnn\.\w+_l(\d+)(?:_reverse)?$)")


def block_of(name: str) -> int | None:
    """The encoder block (0-based) a parameter belongs to, or None."""
    match = _BLOCK.match(name)
    if match is None:
        return None
    return int(match.group(1) if match.group(1) is not None else match.group(2))


def depth_of(name: str, num_layers: int) -> int:
    """0 for the input side, N + 1 for block N, num_layers + 1 for the head; other encoder parts (its
    final norm) sit with the last block."""
    if name.startswith("embed.") or name.startswith("encoder.position"):
        return 0
    if name.startswith("head."):
        return num_layers + 1
    block = block_of(name)
    return block + 1 if block is not None else num_layers


def matches(name: str, entry: str) -> bool:
    """A parameter name is under a train.freeze entry: a prefix of dotted parts, or `encoder.N` for block N."""
    if name == entry or name.startswith(entry + "."):
        return True
    block = re.fullmatch(r"encoder\.(\d+)", entry)
    return block is not None and block_of(name) == int(block.group(1))


def freeze(model, entries: list[str]) -> int:
    """Turn off gradients of the parameters under `entries`; returns how many tensors were frozen. An entry
    that names no parameter is a UserError listing what can be named."""
    names = [name for name, _ in model.named_parameters()]
    for entry in entries:
        if not any(matches(name, entry) for name in names):
            parts = sorted({".".join(n.split(".")[:1]) for n in names} |
                           {f"encoder.{block_of(n)}" for n in names if block_of(n) is not None})
            raise UserError(f"train.freeze: '{entry}' names no parameter of this model; valid: {', '.join(parts)}")
    frozen = 0
    for name, parameter in model.named_parameters():
        if any(matches(name, entry) for entry in entries):
            parameter.requires_grad_(False)
            frozen += 1
    return frozen


def lr_scale(name: str, num_layers: int, decay: float | None) -> float:
    """train.layer_decay: the factor on train.lr for this parameter (1.0 without decay)."""
    if decay is None:
        return 1.0
    return decay ** (num_layers + 1 - depth_of(name, num_layers))
