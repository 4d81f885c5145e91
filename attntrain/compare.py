"""Compare finished runs side by side, and train a sweep of config variants to compare.

    summarize_run(run_dir)      one row of facts about a run (or a multi-seed parent: means + seed count)
    compare_table(rows)         rows -> (markdown, csv)
    parse_vary(specs)           ["key=v1,v2", "other=a,b"] -> cartesian product of override lists
    plan_sweep(config, specs)   validate every variant's config up front and name it
    run_sweep(config, specs)    train every variant (skips finished ones, resumes interrupted ones)
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import statistics
from pathlib import Path
from typing import Any, Optional

from attntrain.config import build_config, load_config, read_yaml
from attntrain.errors import UserError
from attntrain.io import read_jsonl

# eval_<split>.json keys that are not quality metrics: counts, the checkpoint step, and the
# resource figures that get their own columns.
NOT_METRICS = {"step", "tokens", "examples", "entities", "train_seconds", "peak_memory_mb"}

# Keys of the saved config that may differ between two runs of the same set-up (where and how
# fast it ran), ignored when run_sweep decides whether an existing run directory is the variant.
RUNTIME_KEYS = {"name": None, "runs_dir": None,
                "data": {"root"}, "train": {"device", "threads", "progress"}}


class SweepInterrupted(UserError):
    """A variant was stopped by Ctrl-C or SIGTERM; the CLI exits 130 as `fit` does."""

    exit_code = 130


# ---------------------------------------------------------------------------------------------
# Reading runs


def read_metrics(path: str | Path) -> list[dict]:
    """Records of a metrics.jsonl; a missing file is empty and a half-written last line (a kill during an
    append) is skipped; any other bad line is a UserError at path:line."""
    path = Path(path)
    if not path.is_file():
        return []
    return read_jsonl(path)


def read_json(path: Path) -> Optional[dict]:
    """A JSON file's content, or None when it is missing or unreadable (a partial run)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def last_stop(records: list[dict]) -> Optional[dict]:
    """The newest "stop" record of metrics.jsonl (why training ended), or None (older runs, or still training)."""
    return next((r for r in reversed(records) if r.get("kind") == "stop"), None)


def stop_label(records: list[dict]) -> Optional[str]:
    """Why a run stopped, in a word or two: max_epochs, max_steps, min_steps, patience, interrupt, non-finite."""
    stop = last_stop(records)
    return stop.get("reason") if stop else None


def best_dev(records: list[dict], metric: str, mode: str = "max") -> Optional[dict]:
    """The best dev evaluation record of metrics.jsonl (interrupted runs have no eval_dev.json)."""
    dev = [r for r in records if r.get("kind") == "eval" and isinstance(r.get(metric), (int, float))]
    return (max if mode == "max" else min)(dev, key=lambda r: r[metric]) if dev else None


def metric_values(values: Optional[dict]) -> dict[str, float]:
    """Quality metrics of an eval file: numeric keys except counts, the step and resource figures."""
    if not values:
        return {}
    return {key: value for key, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            and key not in NOT_METRICS and not key.endswith("_tokens")}


def encoder_label(config: dict) -> Optional[str]:
    """model.encoder.kind, plus score+normalize for a transformer: 'transformer dot+softmax'."""
    encoder = config.get("model", {}).get("encoder", {})
    kind = encoder.get("kind")
    if kind != "transformer":
        return kind
    attention = encoder.get("attention", {})
    return f"{kind} {attention.get('score', 'dot')}+{attention.get('normalize', 'softmax')}"


def start_parameters(records: list[dict]) -> Optional[int]:
    """Parameter count logged in the "start" record of metrics.jsonl."""
    return next((r.get("parameters") for r in records if r.get("kind") == "start"), None)


def train_speeds(records: list[dict]) -> list[float]:
    return [r["tokens_per_s"] for r in records if r.get("kind") == "train" and "tokens_per_s" in r]


def last_elapsed(records: list[dict]) -> Optional[float]:
    return next((r["elapsed"] for r in reversed(records) if "elapsed" in r), None)


def mean_or_none(values: list[float]) -> Optional[float]:
    return statistics.fmean(values) if values else None


def new_row(name: str, path: Path, config: dict) -> dict[str, Any]:
    """A row with every key present, so a missing piece reads as None."""
    metric = config.get("train", {}).get("metric", "accuracy")
    return {"name": name, "path": str(path), "task": data_label(config.get("data", {})),
            "encoder": encoder_label(config), "parameters": None, "seeds": 1,
            "test": {}, "test_std": {}, "dev": {}, "dev_std": {}, "dev_metric": metric,
            "train_seconds": None, "tokens_per_s": None, "peak_memory_mb": None, "stopped": None}


def single_run_row(path: Path) -> dict[str, Any]:
    """Row of one run directory (config.yaml, metrics.jsonl, eval_<split>.json)."""
    config = read_yaml(path / "config.yaml")
    row = new_row(run_label(path), path, config)
    records = read_metrics(path / "metrics.jsonl")
    test = read_json(path / "eval_test.json") or {}
    dev = metric_values(read_json(path / "eval_dev.json"))
    if row["dev_metric"] not in dev:  # interrupted before the end: the best dev evaluation so far
        best = best_dev(records, row["dev_metric"], config.get("train", {}).get("metric_mode", "max"))
        dev = {row["dev_metric"]: best[row["dev_metric"]]} if best else {}
    row["parameters"] = start_parameters(records)
    row["test"] = metric_values(test)
    row["dev"] = {row["dev_metric"]: dev[row["dev_metric"]]} if row["dev_metric"] in dev else {}
    row["stopped"] = stop_label(records)
    row["train_seconds"] = test.get("train_seconds", last_elapsed(records))
    row["tokens_per_s"] = mean_or_none(train_speeds(records))
    row["peak_memory_mb"] = test.get("peak_memory_mb")
    return row


REPEAT_PREFIXES = ("seed-", "fold-", "trial-")


def run_label(path: Path) -> str:
    """A run's name; a seed, fold or trial of a parent run is named with its parent (sst2/fold-0)."""
    path = Path(path)
    if path.name.startswith(REPEAT_PREFIXES) and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name


def data_label(data: dict) -> str | None:
    """What a run was trained on: its preset (data.task), or for its own data the dataset folder / source format."""
    from attntrain.config import DataConfig, SourceConfig
    from attntrain.data.tasks.presets import PRESETS, translation_preset

    source, task = data.get("source"), data.get("task")
    if not source:
        return task
    if task in PRESETS or task == "translation":
        settings = DataConfig.model_validate({k: v for k, v in data.items() if k != "source"})
        preset = translation_preset(settings) if task == "translation" else PRESETS[task](settings)
        if SourceConfig(**preset["source"]).model_dump() == SourceConfig(**source).model_dump():
            return task
    return data.get("dataset") or f"{source.get('format')} files"


def seeds_row(path: Path) -> dict[str, Any]:
    """Row of a multi-seed parent (summary.json + seed-<k>/): mean metrics, their std, seed count."""
    summary = read_json(path / "summary.json")
    if summary is None or "summary" not in summary:
        raise UserError(f"{path}/summary.json is not a multi-seed summary (see `attntrain fit --seeds`)")
    seed_dirs = ([path / f"seed-{seed}" for seed in summary["seeds"]] if "seeds" in summary
                 else [path / f"fold-{fold}" for fold in summary.get("folds", [])])
    config_file = next((d / "config.yaml" for d in seed_dirs if (d / "config.yaml").is_file()), None)
    row = new_row(path.name, path, read_yaml(config_file) if config_file else {})
    row["seeds"] = len(seed_dirs)
    stats = summary["summary"]  # {"<split> mean": {...}, "<split> std": {...}}
    test_mean = stats.get("test mean", {})
    row["test"], row["test_std"] = metric_values(test_mean), metric_values(stats.get("test std"))
    metric = row["dev_metric"]
    if metric in stats.get("dev mean", {}):
        row["dev"] = {metric: stats["dev mean"][metric]}
        row["dev_std"] = {metric: stats.get("dev std", {}).get(metric)}
    records = [read_metrics(d / "metrics.jsonl") for d in seed_dirs]
    row["parameters"] = next((p for p in map(start_parameters, records) if p is not None), None)
    row["train_seconds"] = test_mean.get("train_seconds")
    row["tokens_per_s"] = mean_or_none([s for r in records for s in train_speeds(r)])
    row["peak_memory_mb"] = test_mean.get("peak_memory_mb")
    return row


def summarize_run(run_dir: str | Path) -> dict[str, Any]:
    """One row of facts about a finished (or partial) run, for `compare_table`.

    Keys: name, path, task, encoder, parameters, seeds, test {metric: value}, test_std, dev
    {train.metric: value}, dev_std, dev_metric, train_seconds, tokens_per_s, peak_memory_mb.
    Missing pieces are None (or empty dicts). A multi-seed parent gives means over its seeds.
    """
    from attntrain.checks import check_run_dir

    path = check_run_dir(run_dir, seeds=True)
    return single_run_row(path) if (path / "config.yaml").is_file() else seeds_row(path)


# ---------------------------------------------------------------------------------------------
# Table


def metric_names(rows: list[dict], split: str) -> list[str]:
    """Metric columns of a split: entity F1 (span tags) first, then accuracy, then the others in first-seen order."""
    names = list(dict.fromkeys(key for row in rows for key in row[split]))
    first = {"f1": 0, "accuracy": 1}
    return sorted(names, key=lambda name: first.get(name, 2))  # stable: keeps the rest in order


def format_number(value: Any, decimals: int, thousands: bool) -> str:
    if value is None:
        return ""
    return f"{value:,.{decimals}f}" if thousands else f"{value:.{decimals}f}"


def metric_decimals(name: str) -> int:
    # Accuracies and F1 are percentages (2 decimals are 0.01 points); a loss needs more.
    return 4 if "loss" in name else 2


def table_columns(rows: list[dict]) -> list[tuple[str, Any]]:
    """(header, cell function(row, for_markdown) -> str) in the fixed display order."""
    columns: list[tuple[str, Any]] = [
        ("run", lambda row, md: row["name"]),
        ("task", lambda row, md: row["task"] or ""),
        ("encoder", lambda row, md: row["encoder"] or ""),
        ("parameters", lambda row, md: format_number(row["parameters"], 0, md)),
    ]
    if any(row["seeds"] > 1 for row in rows):
        columns.append(("seeds", lambda row, md: str(row["seeds"])))
    for split in ("test", "dev"):
        columns += metric_columns(rows, split)
    columns += [
        ("stopped", lambda row, md: row["stopped"] or ""),
        ("train s", lambda row, md: format_number(row["train_seconds"], 0, md)),
        ("tokens/s", lambda row, md: format_number(row["tokens_per_s"], 0, md)),
        ("peak MiB", lambda row, md: format_number(row["peak_memory_mb"], 0, md)),
    ]
    return columns


def metric_columns(rows: list[dict], split: str) -> list[tuple[str, Any]]:
    """Columns of a split's metrics; markdown shows "mean ± std", CSV gets a separate std column."""
    columns = []
    for name in metric_names(rows, split):
        decimals = metric_decimals(name)

        def cell(row, md, name=name, decimals=decimals):
            text = format_number(row[split].get(name), decimals, False)
            std = row[f"{split}_std"].get(name)
            return f"{text} ± {std:.{decimals}f}" if md and text and std is not None else text

        columns.append((f"{split} {name}", cell))
        if any(row[f"{split}_std"].get(name) is not None for row in rows):
            std_cell = (lambda row, md, name=name, decimals=decimals:
                        format_number(row[f"{split}_std"].get(name), decimals, False))
            columns.append((f"{split} {name} std", std_cell))
    return columns


def compare_table(rows: list[dict]) -> tuple[str, str]:
    """Rows of `summarize_run` -> (markdown table, CSV text).

    Markdown is for reading (thousands separators, "mean ± std"); CSV is for tools, so its numbers
    have the same decimals but no separators, and std has a column of its own.
    """
    columns = table_columns(rows)
    markdown_columns = [(header, cell) for header, cell in columns if not header.endswith(" std")]
    header_line = "| " + " | ".join(header for header, _ in markdown_columns) + " |"
    # Text columns left-aligned, numbers right-aligned.
    rule = "|" + "|".join("---" if index < 3 else "---:" for index in range(len(markdown_columns))) + "|"
    body = ["| " + " | ".join((cell(row, True) or "-").replace("|", "\\|") for _, cell in markdown_columns) + " |"
            for row in rows]
    markdown = "\n".join([header_line, rule, *body]) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([header for header, _ in columns])
    writer.writerows([[cell(row, False) for _, cell in columns] for row in rows])
    return markdown, buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Sweeps


def parse_spec(spec: str) -> tuple[str, list[str]]:
    """'key=v1,v2' -> ('key', ['v1', 'v2']); values are split on commas (no lists as values)."""
    if "=" not in spec:
        raise UserError(f"--vary {spec!r}: expected KEY=VALUE1,VALUE2,..., e.g. model.encoder.num_heads=2,4")
    key, text = (part.strip() for part in spec.split("=", 1))
    if not key:
        raise UserError(f"--vary {spec!r}: the key before '=' is empty")
    values = [value.strip() for value in text.split(",")]
    if not text.strip():
        raise UserError(f"--vary {spec!r}: no values after '='")
    if any(not value for value in values):
        raise UserError(f"--vary {spec!r}: empty value in the comma-separated list")
    if key == "name":
        raise UserError(f"--vary {spec!r}: the run name is set per variant and cannot be varied")
    return key, values


def parse_vary(specs: list[str]) -> list[list[str]]:
    """Sweep specs -> one override list per variant (cartesian product; the first spec varies slowest).

    parse_vary(["a=1,2", "b=x"]) == [["a=1", "b=x"], ["a=2", "b=x"]]
    """
    if not specs:
        raise UserError("--vary: give at least one KEY=VALUE1,VALUE2,...")
    axes, seen = [], {}
    for spec in specs:
        key, values = parse_spec(spec)
        if key in seen:
            raise UserError(f"--vary {spec!r}: key '{key}' is already varied by {seen[key]!r}")
        seen[key] = spec
        axes.append([f"{key}={value}" for value in values])
    return [list(combination) for combination in itertools.product(*axes)]


def name_part(override: str) -> str:
    """The value of 'key=value', made safe for a directory name."""
    value = override.split("=", 1)[1]
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", value).strip("_") or "_"


def plan_sweep(config_path: str | Path, specs: list[str], overrides: list[str] = ()) -> list[tuple[str, list[str]]]:
    """Validate every variant's config before anything trains; returns [(run name, overrides)].

    `overrides` apply to every variant (like --set). A variant is named
    `<base name>-<value1>-<value2>`, where the base name is the config's `name` (its file stem by default).
    """
    base = load_config(config_path, list(overrides)).name
    plan = []
    for variant in parse_vary(specs):
        name = "-".join([base, *map(name_part, variant)])
        full = [*overrides, *variant, f"name={name}"]
        load_config(config_path, full)  # unknown keys, bad types and values fail here, not mid-sweep
        plan.append((name, full))
    names = [name for name, _ in plan]
    if len(set(names)) < len(names):
        raise UserError(f"--vary {' '.join(specs)}: two variants get the same run name; "
                        f"values must differ after replacing unusual characters by '_'")
    return plan


def without_runtime_keys(config: dict) -> dict:
    """The saved config minus the keys that do not change what is trained."""
    kept = {}
    for key, value in config.items():
        if key in RUNTIME_KEYS and RUNTIME_KEYS[key] is None:
            continue
        if key in RUNTIME_KEYS and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in RUNTIME_KEYS[key]}
        kept[key] = value
    return kept


def expanded(config: dict) -> dict:
    """A config as trained (a preset's data source spelled out), minus the keys that do not change it."""
    from attntrain.data.tasks.presets import expand_preset

    cfg = build_config(config, "config.yaml")
    expand_preset(cfg)
    return without_runtime_keys(cfg.to_dict())


def existing_run(cfg) -> Optional[str]:
    """'finished', 'interrupted' or None (nothing there) for a variant's run directory.

    A directory holding a different set-up, or one that cannot be resumed, is a UserError: the
    sweep must neither report a stranger's numbers nor overwrite someone's run.
    """
    from attntrain.train.checkpoint import RunDir

    run = RunDir(cfg.run_dir())
    if not run.path.exists() or not any(run.path.iterdir()):
        return None
    if cfg.train.seeds > 1:
        return "interrupted"  # runs.fit_seeds skips finished seeds and resumes the others itself
    if not run.config.is_file() or expanded(read_yaml(run.config)) != expanded(cfg.to_dict()):
        raise UserError(f"{run.path} exists and holds a different run; remove it or set another name "
                        "with --set name=...")
    if all(run.eval_file(split).is_file() for split in cfg.train.eval_splits):
        return "finished"
    if run.latest() is None:
        raise UserError(f"{run.path} exists but has no checkpoint to resume; remove it to train again")
    return "interrupted"
