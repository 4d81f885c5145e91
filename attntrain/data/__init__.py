"""Tasks: one entry per (dataset, output mode). `build_task` is the only way the rest of the code gets one."""

from __future__ import annotations

from attntrain.data.graph import PlanetoidTask
from attntrain.data.tagging import UdPosTask
from attntrain.data.task import Task
from attntrain.data.translation import TranslationTask
from attntrain.registry import lookup

TASKS: dict[str, type[Task]] = {"ud_pos": UdPosTask, "planetoid": PlanetoidTask, "translation": TranslationTask}


def build_task(cfg) -> Task:
    return lookup(TASKS, cfg.data.task, "data.task")(cfg)


__all__ = ["TASKS", "Task", "build_task"]
