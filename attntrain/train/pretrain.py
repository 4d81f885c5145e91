"""`attntrain pretrain CONFIG`: self-supervised training of Embed -> Encoder, run by the same Trainer as `fit`.

Pretraining is a task + head pair: model.head.kind pretrain makes build_task mask the input
(attntrain.data.tasks.pretrain) and build_model add the head that predicts what was masked
(attntrain.model.pretrain_heads), so resume, EMA, evaluation on dev, checkpoints and learning curves
are `fit`'s. The run directory is an ordinary one: `fit --resume` continues it, and a later `fit` starts
from it with model.init: RUN_DIR. Imports no torch (the CLI checks the config first).
"""

from __future__ import annotations

from pathlib import Path

from attntrain.config import read_yaml

# What `pretrain` sets unless the config or a --set names the key: the objective's head, and a dev loss
# (lower is better) that picks the kept weights; evaluation on dev only (a test split is for the fine-tune).
DEFAULTS = {"train.metric": "loss", "train.metric_mode": "min", "train.eval_splits": "[dev]"}


def _names(raw: dict, dotted: str) -> bool:
    node = raw
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def pretrain_overrides(config: str | Path, overrides: list[str]) -> list[str]:
    """The --set list `fit` runs CONFIG with to pretrain: model.head.kind=pretrain, then DEFAULTS the config
    leaves open, then the user's own overrides (which win)."""
    raw = read_yaml(Path(config))
    given = {item.split("=", 1)[0].strip() for item in overrides}
    defaults = [f"{key}={value}" for key, value in DEFAULTS.items() if key not in given and not _names(raw, key)]
    return ["model.head.kind=pretrain", *defaults, *overrides]
