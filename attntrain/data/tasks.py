"""Tasks: one entry per (dataset, output mode). `build_task` is the only way the rest of the code gets one."""

from __future__ import annotations

from attntrain.data.fsdd import FsddTask
from attntrain.data.graph import GraphTask
from attntrain.data.mnist import MnistTask
from attntrain.data.sentiment import ImdbTask, Sst2Task
from attntrain.data.generic import DataTask
from attntrain.data.presets import PRESETS, expand_preset
from attntrain.data.task import Task
from attntrain.data.translation import Seq2seqTask
from attntrain.registry import lookup

# Shipped readers not yet expressed as presets of a generic source (their layouts need their own code).
TASKS: dict[str, type[Task]] = {"planetoid": GraphTask, "sst2": Sst2Task, "imdb": ImdbTask, "fsdd": FsddTask,
                                "mnist": MnistTask, **{name: DataTask for name in PRESETS},
                                "translation": Seq2seqTask}


def build_task(cfg) -> Task:
    """The task for cfg.data: source (own data or a preset) x input kind x target, a graph, or a shipped reader."""
    expand_preset(cfg)
    if cfg.data.source is not None:
        if cfg.data.source.format == "graph":  # one graph, one example: the nodes are the positions
            return GraphTask(cfg)
        return Seq2seqTask(cfg) if cfg.model.head.kind == "seq2seq" else DataTask(cfg)
    return lookup(TASKS, cfg.data.task, "data.task")(cfg)


__all__ = ["TASKS", "Task", "build_task"]
