"""The end of `attntrain tune`: the table of trials, best.yaml, test for the best trial only, two PNGs."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from attntrain.io import atomic_write_text


def trial_rows(study, keys: list[str]) -> list[dict]:
    rows = []
    for trial in study.trials:
        seconds = ((trial.datetime_complete - trial.datetime_start).total_seconds()
                   if trial.datetime_complete and trial.datetime_start else None)
        last = max(trial.intermediate_values) if trial.intermediate_values else None
        rows.append({"trial": trial.number, "state": trial.state.name.lower(), "value": trial.value,
                     "evaluations": last, "seconds": seconds, "run": trial.user_attrs.get("run_dir", "-"),
                     **{key: trial.params.get(key) for key in keys}})
    return rows


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 0.01 or abs(value) >= 1000 else f"{value:.2f}"
    return str(value)


def trials_table(rows: list[dict], metric: str) -> tuple[str, str]:
    """(markdown, csv) of the trials; the dev metric column is named after train.metric."""
    if not rows:
        return "no trials", ""
    keys = list(rows[0])
    names = [f"dev {metric}" if k == "value" else k for k in keys]
    markdown = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    markdown += ["| " + " | ".join(_cell(r[k]) for k in keys) + " |" for r in rows]
    csv = [",".join(names)] + [",".join("" if r[k] is None else str(r[k]) for k in keys) for r in rows]
    return "\n".join(markdown), "\n".join(csv) + "\n"


def evaluate_best_on_test(run_dir: Path, folds: int | None) -> dict | None:
    """Test metrics of the best trial, evaluated once (kept in its eval_test.json files)."""
    from attntrain.runs import eval_run, summarise
    from attntrain.train.checkpoint import read_run_json

    runs = [run_dir / f"fold-{k}" for k in range(folds)] if folds else [run_dir]
    results = {}
    for run in runs:
        done = run / "eval_test.json"
        results[run.name] = {"test": read_run_json(done) if done.is_file() else eval_run(run, "test")}
    if not folds:
        return results[run_dir.name]["test"]
    return summarise(results)["test mean"]


def draw(study, folder: Path) -> list[Path]:
    """tune/history.png (objective per trial, best so far) and tune/importance.png (fANOVA importances)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    written = []
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    plots = [("history.png", optuna.visualization.matplotlib.plot_optimization_history, 1),
             ("importance.png", optuna.visualization.matplotlib.plot_param_importances, 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib plots are marked experimental
        for name, plot, needed in plots:
            if len(complete) < needed:
                continue
            axes = plot(study)
            axes.figure.set_size_inches(8, 5)
            axes.figure.tight_layout()
            axes.figure.savefig(folder / name, dpi=100)
            plt.close(axes.figure)
            written.append(folder / name)
    return written


def report(study, search, url: str, write_best) -> str:
    """The trials table, the best trial's test figure, best.yaml and the pictures, as lines for the terminal.

    write_best(search, trial, metric) -> the path of best.yaml (attntrain.tune, the floor above).
    """
    import optuna

    metric = search.base.train.metric
    folder = search.parent / "tune"
    folder.mkdir(parents=True, exist_ok=True)
    markdown, csv = trials_table(trial_rows(study, list(search.base.tune.space)), metric)
    atomic_write_text(folder / "trials.md", markdown + "\n")
    atomic_write_text(folder / "trials.csv", csv)
    states = [t.state for t in study.trials]
    counts = ", ".join(f"{states.count(s)} {s.name.lower()}" for s in optuna.trial.TrialState if states.count(s))
    lines = [markdown, "", f"study '{study.study_name}' in {url}: {len(states)} trials ({counts})"]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
                and math.isfinite(t.value)]
    if not complete:
        return "\n".join(lines + ["no trial finished yet; run the same command again to add trials"])
    best = study.best_trial
    best_dir = Path(best.user_attrs["run_dir"])
    test = evaluate_best_on_test(best_dir, search.folds)
    lines.append(f"best: trial {best.number} ({best_dir}), dev {metric} {best.value:.2f}, "
                 f"test {metric} {test.get(metric, float('nan')):.2f} (evaluated for this trial only)")
    lines.append(f"best config: {write_best(search, best, metric)}")
    lines += [f"picture: {path}" for path in draw(study, folder)]
    return "\n".join(lines)
