"""Datasets as tasks. The task table (`TASKS`, `build_task`, `Task`: attntrain/data/tasks/build.py) imports
torch and every reader, so it loads on first use: `attntrain.data.tasks.presets` and `attntrain.data.sources.root`,
which config validation reads, stay cheap to import (`attntrain validate` never loads torch).
"""

from __future__ import annotations

import importlib

__all__ = ["TASKS", "Task", "build_task"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("attntrain.data.tasks.build"), name)
    raise AttributeError(f"module 'attntrain.data' has no attribute '{name}'")
