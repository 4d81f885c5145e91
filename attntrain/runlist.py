"""`attntrain runs [DIR]`: one line per run directory (task, status, best dev metric, test metric)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from attntrain.compare import data_label, read_json, read_metrics
from attntrain.config import read_yaml
from attntrain.errors import UserError


def run_summary(path: Path) -> dict[str, Any]:
    """{name, task, head, status, metric, best_dev, best_step, test} of one run directory."""
    config = read_yaml(path / "config.yaml")
    train = config.get("train", {})
    metric, mode = train.get("metric", "accuracy"), train.get("metric_mode", "max")
    records = read_metrics(path / "metrics.jsonl")
    dev = [r for r in records if r.get("kind") == "eval" and metric in r]
    best = (max if mode == "max" else min)(dev, key=lambda r: r[metric]) if dev else None
    test = read_json(path / "eval_test.json") or {}
    finals = {r.get("split") for r in records if r.get("kind") == "final"}
    steps = [r["step"] for r in records if isinstance(r.get("step"), int)]
    stops = [r for r in records if r.get("kind") == "stop"]
    if finals or test:
        status = "finished"
    elif stops and stops[-1].get("reason") == "pruned":  # attntrain tune stopped this trial
        status = f"pruned at step {stops[-1].get('step')}"
    elif steps:
        status = f"stopped at step {max(steps)}"
    else:
        status = "not started"
    return {"name": path.name, "task": data_label(config.get("data", {})),
            "head": config.get("model", {}).get("head", {}).get("kind", "tagging"), "status": status,
            "metric": metric, "best_dev": best[metric] if best else None, "best_step": best["step"] if best else None,
            "test": test.get(metric)}


def list_runs(folder: str | Path) -> list[dict[str, Any]]:
    """Summaries of the run directories directly under `folder`, of multi-seed runs' seed-<k>/ folders and of
    a tune's trial-<n>/ folders."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    if (folder / "config.yaml").is_file():
        return [run_summary(folder)]
    rows = []
    for path in sorted(p for p in folder.iterdir() if p.is_dir()):
        if (path / "config.yaml").is_file():
            rows.append(run_summary(path))
        else:
            rows.extend({**run_summary(seed), "name": f"{path.name}/{seed.name}"}
                        for pattern in ("seed-*", "trial-*") for seed in sorted(path.glob(pattern))
                        if (seed / "config.yaml").is_file())
    return rows


def _number(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def runs_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no runs"
    cells = [["run", "task", "head", "status", "metric", "best dev", "at step", "test"]]
    cells += [[r["name"], str(r["task"]), r["head"], r["status"], r["metric"], _number(r["best_dev"]),
               "-" if r["best_step"] is None else str(r["best_step"]), _number(r["test"])] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)
