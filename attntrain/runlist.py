"""`attntrain runs [DIR]`: one line per run directory (task, status, best dev metric, test metric)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from attntrain.compare import REPEAT_PREFIXES, best_dev, data_label, last_stop, read_json, read_metrics, run_label
from attntrain.config import read_yaml
from attntrain.errors import UserError


def run_status(records: list[dict], path: Path) -> str:
    """finished (why) | stopped at step N (why) | diverged at step N | not started, from what `fit` wrote.

    eval_<split>.json alone does not make a run finished: `attntrain eval` writes it for interrupted runs too.
    """
    stop = last_stop(records)
    finished = any(r.get("kind") == "final" for r in records)
    if finished:
        return f"finished ({stop['reason']})" if stop else "finished"
    if stop is not None and stop.get("reason") == "non-finite":
        return f"diverged at step {stop.get('step')}"
    if stop is not None and stop.get("reason") == "pruned":  # attntrain tune stopped this trial
        return f"pruned at step {stop.get('step')}"
    steps = [r["step"] for r in records if isinstance(r.get("step"), int)]
    step = max(steps, default=0)
    latest = path / "checkpoints" / "latest"  # a run stopped before its first log line still has a checkpoint
    if latest.is_file():
        digits = "".join(ch for ch in latest.read_text(errors="replace") if ch.isdigit())
        step = max(step, int(digits) if digits else 0)
    if stop is not None:
        return f"stopped at step {step} ({stop.get('reason')})"
    return f"stopped at step {step}" if step or records else "not started"


def run_summary(path: Path) -> dict[str, Any]:
    """{name, task, head, status, metric, best_dev, best_step, test} of one run directory."""
    try:
        config = read_yaml(path / "config.yaml")
    except UserError as e:  # one damaged run is a row saying so, never a hidden folder
        return {"name": run_label(path), "task": "?", "head": "?", "status": f"unreadable: {e}".splitlines()[0],
                "metric": "-", "best_dev": None, "best_step": None, "test": None}
    train = config.get("train", {})
    metric, mode = train.get("metric", "accuracy"), train.get("metric_mode", "max")
    records = read_metrics(path / "metrics.jsonl")
    best = best_dev(records, metric, mode)
    test = read_json(path / "eval_test.json") or {}
    return {"name": run_label(path), "task": data_label(config.get("data", {})),
            "head": config.get("model", {}).get("head", {}).get("kind", "tagging"),
            "status": run_status(records, path), "metric": metric, "best_dev": best[metric] if best else None,
            "best_step": best["step"] if best else None, "test": test.get(metric)}


def list_runs(folder: str | Path) -> list[dict[str, Any]]:
    """Summaries of the run directories under `folder`, with the seed-<k>/, fold-<k>/ and trial-<k>/ runs of
    --seeds, --folds and `attntrain tune` parents."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    if (folder / "config.yaml").exists():
        return [run_summary(folder)]
    rows = []
    for path in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (path / "config.yaml").exists():
            rows.append(run_summary(path))
        rows.extend(run_summary(child) for child in sorted(path.iterdir())
                    if child.is_dir() and child.name.startswith(REPEAT_PREFIXES) and (child / "config.yaml").exists())
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
