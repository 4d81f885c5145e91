"""Tasks: one entry per (dataset, output mode). `build_task` is the only way the rest of the code gets one."""

from __future__ import annotations

from attntrain.data.fsdd import FsddTask
from attntrain.data.graph import PlanetoidTask
from attntrain.data.mnist import MnistTask
from attntrain.data.sentiment import ImdbTask, Sst2Task
from attntrain.data.tagging import UdPosTask
from attntrain.data.task import Task
from attntrain.data.translation import TranslationTask
from attntrain.registry import lookup

TASKS: dict[str, type[Task]] = {"ud_pos": UdPosTask, "planetoid": PlanetoidTask, "sst2": Sst2Task,
                                "imdb": ImdbTask, "fsdd": FsddTask, "mnist": MnistTask,
                                "translation": TranslationTask}


def build_task(cfg) -> Task:
    return lookup(TASKS, cfg.data.task, "data.task")(cfg)


__all__ = ["TASKS", "Task", "build_task"]
