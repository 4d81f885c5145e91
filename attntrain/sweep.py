"""`compare --vary` and `curves`: train a list of planned runs in turn (finished ones skipped, an interrupted
one resumed).

Above `runs` (it trains) and `compare` (it plans and reads); `compare` itself only reads run directories.
"""

from __future__ import annotations

from pathlib import Path

from attntrain import runs
from attntrain.compare import SweepInterrupted, existing_run, plan_sweep
from attntrain.config import load_config


def run_sweep(config_path: str | Path, specs: list[str], overrides: list[str] = ()) -> list[Path]:
    """Train every variant of `plan_sweep` in turn; returns their run directories (for compare_table).

    Running the same sweep again skips finished variants and resumes an interrupted one. A variant
    stopped by Ctrl-C/SIGTERM stops the sweep with a UserError saying how to continue.
    """
    return train_planned([(config_path, name, full) for name, full in plan_sweep(config_path, specs, overrides)])


def train_planned(plan: list[tuple[str | Path, str, list[str]]], *, what: str = "sweep") -> list[Path]:
    """Train each (config file, run name, overrides) in turn; returns the run directories.

    Every run directory is checked before the first one trains: a finished run is skipped, an interrupted
    one resumed, and a directory holding another set-up stops everything (compare.existing_run).
    """
    configs = [load_config(path, full) for path, _, full in plan]
    states = [existing_run(cfg) for cfg in configs]  # all checked before the first variant trains
    run_dirs = []
    for (path, name, full), cfg, state in zip(plan, configs, states):
        if state == "finished":
            run_dirs.append(cfg.run_dir())
            continue
        if state == "interrupted" and cfg.train.seeds == 1:
            result = runs.fit(resume=cfg.run_dir())
        else:
            result = runs.fit(path, overrides=full)
        if result.stopped not in ("finished", "early_stop"):
            raise SweepInterrupted(f"{what} stopped by {result.stopped} during {name}; run the same command again "
                                   "to resume it and train the remaining runs")
        run_dirs.append(Path(result.run_dir))
    return run_dirs
