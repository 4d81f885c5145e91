"""`attntrain curves`: the data-efficiency picture. Each config trains on nested, seeded fractions of its
training set (data.train_fraction) as ordinary runs, runs/<name>/<config label>/frac-<f>/, and the test
metric of each run's best-dev checkpoint is drawn against the number of labelled training examples.

Budget rule: a recipe sized for the whole training set gives a small fraction very few updates (4 SST-2
epochs of 1% are ~24 steps), so every run trains at least `train.min_steps` = a quarter (MIN_STEPS_SHARE)
of the steps the config takes on its whole training set, or `--min-steps N`. Runs whose own recipe is longer
keep it; warm-up, evaluation and averaging are fractions of the run, so they follow. train.max_steps, when a
config sets it, still decides (min_steps never overrides it).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from attntrain.compare import read_json, summarize_run
from attntrain.config import load_config
from attntrain.errors import UserError
from attntrain.io import atomic_write_text
from attntrain.sweep import train_planned

MIN_STEPS_SHARE = 0.25  # a run on a fraction trains at least this share of the full-data run's steps
FIGURE_SIZE = (7.0, 4.6)  # inches: 700 x 460 pixels at plots.DPI


@dataclass
class Line:
    """One config's curve: its runs, one per fraction."""

    label: str  # legend name: the config's `name`, else its file stem
    config: str  # the config file
    min_steps: int  # train.min_steps given to every run of the line
    full_steps: Optional[int]  # steps of the config on its whole training set (None when --min-steps was given)
    runs: list[str] = field(default_factory=list)  # run directories, one per fraction
    points: list[dict] = field(default_factory=list)  # filled by `collect`: fraction, examples, test, ...


def parse_fractions(values: list[str]) -> list[float]:
    """'0.01', '0.03,0.1', ... -> ascending unique fractions in (0, 1]; anything else is one UserError."""
    fractions = []
    for text in (part for value in values for part in value.split(",")):
        try:
            fraction = float(text)
        except ValueError:
            raise UserError(f"--train-fractions: '{text}' is not a number; give fractions of the training set "
                            "in (0, 1], e.g. --train-fractions 0.01 0.03 0.1 0.3 1") from None
        if not 0 < fraction <= 1:
            raise UserError(f"--train-fractions: {text} is outside (0, 1]; a fraction of the training set is "
                            "above 0 and at most 1 (1 = all of it)")
        fractions.append(fraction)
    if not fractions:
        raise UserError("--train-fractions: give at least one fraction, e.g. --train-fractions 0.01 0.1 1")
    return sorted(set(fractions))


def full_data_steps(config: str | Path, overrides: list[str]) -> int:
    """Optimizer steps the config takes on its whole training set (reads and batches the data once)."""
    from attntrain.data import build_task
    from attntrain.train.schedule import budget, steps_per_epoch

    cfg = load_config(config, [*overrides, "data.train_fraction=null", "data.train_examples=null"])
    task = build_task(cfg)
    task.prepare(None)
    return budget(cfg.train, steps_per_epoch(task, cfg.train)).total


def plan_curves(configs: list[str], fractions: list[float], *, name: str, seeds: int = 1,
                overrides: list[str] = (), min_steps: Optional[int] = None) -> tuple[list[Line], list]:
    """Validate every run's config before anything trains; returns (lines, [(config, run name, overrides)])."""
    labels = [load_config(config, list(overrides)).name for config in configs]
    if len(set(labels)) < len(labels):
        raise UserError(f"curves: two configs have the same name ({', '.join(labels)}); the legend and the run "
                        "directories need one name each (set `name:` in a config)")
    lines, plan = [], []
    for config, label in zip(configs, labels):
        full = None if min_steps else full_data_steps(config, list(overrides))
        steps = min_steps or max(1, math.ceil(MIN_STEPS_SHARE * full))
        line = Line(label, str(config), steps, full)
        for fraction in fractions:
            run_name = f"{name}/{label}/frac-{fraction:g}"
            settings = [*overrides, f"data.train_fraction={fraction:g}", f"train.min_steps={steps}",
                        *([f"train.seeds={seeds}"] if seeds > 1 else []), f"name={run_name}"]
            cfg = load_config(config, settings)  # unknown keys, bad types and values fail here, not mid-way
            line.runs.append(str(cfg.run_dir()))
            plan.append((config, run_name, settings))
        lines.append(line)
    return lines, plan


def kept_examples(run_dir: Path) -> Optional[int]:
    """Training examples a run kept: task.json's train_subset (a seed of a multi-seed run when needed)."""
    for folder in [run_dir, *sorted(run_dir.glob("seed-*"))]:
        task = read_json(folder / "task.json") or {}
        subset = task.get("data_fingerprint", {}).get("train_subset")
        if subset:
            return int(subset[0])
    return None


def collect(lines: list[Line], fractions: list[float]) -> str:
    """Fill each line's points from its finished runs; returns the metric name (the config's train.metric)."""
    metric = None
    for line in lines:
        line.points = []
        for fraction, run_dir in zip(fractions, line.runs):
            row = summarize_run(run_dir)
            metric = metric or row["dev_metric"]
            line.points.append({"fraction": fraction, "examples": kept_examples(Path(run_dir)),
                                "test": row["test"].get(row["dev_metric"]),
                                "test_std": row["test_std"].get(row["dev_metric"]),
                                "dev": row["dev"].get(row["dev_metric"]), "seeds": row["seeds"],
                                "stopped": row["stopped"], "run": run_dir})
    return metric or "accuracy"


def budget_caption(lines: list[Line]) -> str:
    parts = [f"{line.label} >= {line.min_steps:,}" + (f" (1/4 of {line.full_steps:,})" if line.full_steps else "")
             for line in lines]
    return ("each run: a nested seeded subset of train, at least N updates (" + "; ".join(parts) + " steps), "
            "test once from the best-dev checkpoint")


def curves_csv(lines: list[Line]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["config", "fraction", "examples", "test", "test_std", "dev", "seeds", "min_steps", "run"])
    for line in lines:
        for p in line.points:
            writer.writerow([line.label, f"{p['fraction']:g}", p["examples"], p["test"], p["test_std"], p["dev"],
                             p["seeds"], line.min_steps, p["run"]])
    return buffer.getvalue()


def draw(lines: list[Line], metric: str, out: Path, *, title: str) -> Path:
    """Test metric against labelled training examples (log x), one line per config, std bars over seeds."""
    from matplotlib.ticker import NullFormatter

    from attntrain.plots import new_figure, save_figure

    figure = new_figure(FIGURE_SIZE)
    axes = figure.subplots()
    for line in lines:
        points = [p for p in line.points if p["examples"] and p["test"] is not None]
        stds = [p["test_std"] or 0.0 for p in points]
        axes.errorbar([p["examples"] for p in points], [p["test"] for p in points],
                      yerr=stds if any(stds) else None, marker="o", capsize=3, label=line.label)
    axes.set_xscale("log")
    ticks = sorted({p["examples"] for line in lines for p in line.points if p["examples"]})
    axes.set_xticks(ticks, [f"{count:,}" for count in ticks])  # the measured sizes, not powers of ten
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set(xlabel="labelled training examples (log scale)", ylabel=f"test {metric}", title=title)
    axes.grid(alpha=0.3, which="both")
    axes.legend()
    figure.text(0.01, 0.005, budget_caption(lines), fontsize=6.5, ha="left", va="bottom", wrap=True)
    figure.get_layout_engine().set(rect=(0, 0.05, 1, 0.95))  # room for the caption under the axes
    return save_figure(figure, out)


def run_curves(configs: list[str], fractions: list[float], *, name: str, seeds: int = 1,
               overrides: list[str] = (), min_steps: Optional[int] = None) -> list[Path]:
    """Train every (config, fraction) run not finished yet, then write curves.json, .csv and .png under
    runs/<name>/; returns the three paths."""
    lines, plan = plan_curves(configs, fractions, name=name, seeds=seeds, overrides=overrides, min_steps=min_steps)
    for line in lines:
        print(f"curves: {line.label}: train.min_steps {line.min_steps}" +
              (f" (a quarter of its {line.full_steps:,} full-data steps)" if line.full_steps else " (--min-steps)"),
              flush=True)
    train_planned(plan, what="curves")
    metric = collect(lines, fractions)
    folder = Path(lines[0].runs[0]).parent.parent
    record = {"metric": metric, "fractions": fractions, "seeds": seeds, "budget": budget_caption(lines),
              "lines": [asdict(line) for line in lines]}
    json_path, csv_path = folder / "curves.json", folder / "curves.csv"
    atomic_write_text(json_path, json.dumps(record, indent=2) + "\n")
    atomic_write_text(csv_path, curves_csv(lines))
    png = draw(lines, metric, folder / "curves.png", title=f"{name}: test {metric} against training examples")
    return [json_path, csv_path, png]
