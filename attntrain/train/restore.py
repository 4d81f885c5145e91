"""Open a saved run: its resolved config, and (cfg, task, model, device) ready for evaluation.

Below the commands (runs, predictor, plots, export), so each of them can load a run without importing another.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from attntrain.config import Config, build_config, read_yaml
from attntrain.data import build_task
from attntrain.errors import UserError
from attntrain.model.build import build_model
from attntrain.train.checkpoint import RETRAIN, RunDir, load_weights, read_run_json, reading
from attntrain.train.fingerprint import task_state
from attntrain.train.loop import resolve_device


def run_config(run_dir: str | Path, overrides: list[str] = ()) -> Config:
    """The resolved config saved in a run directory (with optional overrides, e.g. train.max_epochs)."""
    run = RunDir(run_dir).require()
    cfg = build_config(read_yaml(run.config), str(run.config), overrides)
    # The run keeps living where it is, even if it was moved or runs_dir was relative elsewhere.
    cfg.runs_dir, cfg.name = str(run.path.parent), run.path.name
    return cfg


def load_run(run_dir: str | Path, *, checkpoint: str = "best", device: str | None = None,
             overrides: list[str] = ()):
    """(cfg, task, model, device) of a finished or interrupted run, ready for evaluation."""
    cfg = run_config(run_dir, overrides)
    run = RunDir(run_dir)
    if cfg.model.head.outside_bias == "dev":  # the value the run's final evaluation chose on dev (0 before it)
        chosen = run.decoding_settings().get("outside_bias")
        if chosen is None or checkpoint != "best":
            print("note: model.head.outside_bias: dev: " + ("no decoding.json in the run (its final evaluation has not "
                  "run), so 0" if chosen is None else f"{chosen:g}, chosen on dev for best.safetensors, not for "
                  f"{checkpoint}"), file=sys.stderr, flush=True)
        cfg.model.head.outside_bias = float(chosen or 0.0)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    dev = resolve_device(device or cfg.train.device)
    task = build_task(cfg)
    state = task_state(read_run_json(run.task_state))[0]
    with reading(run.task_state, "does not fit this run's config.yaml (vocabularies of another run?)"):
        task.prepare(state)
        model = build_model(cfg, task.info()).to(dev)
    if checkpoint == "best":
        path = run.best
    elif checkpoint == "last":
        latest = run.latest()
        if latest is None:
            raise UserError(f"{run.path}: no checkpoint saved yet")
        path = latest / "model.safetensors"
    else:
        path = Path(checkpoint)
    load_weights(model, path, "pick another with --checkpoint best|last|PATH, or " + RETRAIN)
    model.eval()
    return cfg, task, model, dev
