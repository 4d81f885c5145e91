"""Tasks: the Task base, generic tasks from a data: section, translation, graph, pretraining, shipped presets,
and the task table (build.py). Kept import-free so the cheap modules (presets) load without torch."""
