"""Tasks: one entry per (dataset, output mode). `build_task` is the only way the rest of the code gets one."""

from __future__ import annotations

from attntrain.choices import GRAPH_FORMATS
from attntrain.data.tasks.generic import DataTask
from attntrain.data.tasks.graph import GraphTask
from attntrain.data.tasks.presets import PRESETS, expand_preset
from attntrain.data.tasks.pretrain import PretrainTask
from attntrain.data.tasks.base import Task
from attntrain.data.tasks.translation import Seq2seqTask
from attntrain.registry import lookup

# Every shipped dataset is a preset of the generic sources; a Planetoid graph is read from its npz files.
TASKS: dict[str, type[Task]] = {"planetoid": GraphTask, **{name: DataTask for name in PRESETS},
                                "translation": Seq2seqTask}


def build_task(cfg) -> Task:
    """The task for cfg.data: source (own data or a preset) x input kind x target, or a graph."""
    expand_preset(cfg)
    if cfg.data.source is not None:
        if cfg.data.source.format in GRAPH_FORMATS:  # one graph, one example: the nodes are the positions
            return GraphTask(cfg)
        if cfg.model.head.kind == "pretrain":  # self-supervised: the input masked is its own target
            return PretrainTask(cfg)
        return Seq2seqTask(cfg) if cfg.model.head.kind == "seq2seq" else DataTask(cfg)
    return lookup(TASKS, cfg.data.task, "data.task")(cfg)


__all__ = ["TASKS", "Task", "build_task"]
