"""Library side of the CLI commands: start or resume a run, load a run, evaluate, predict."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Iterable, Iterator

import torch

from attntrain.checks import check_config
from attntrain.config import Config, build_config, load_config, read_yaml
from attntrain.data import build_task
from attntrain.errors import UserError
from attntrain.io import atomic_write_json, check_writable
from attntrain.model.build import build_model
from attntrain.train.checkpoint import RETRAIN, RunDir, load_weights, read_run_json, reading
from attntrain.train.loop import amp_dtype, evaluate_split, move, resolve_device
from attntrain.train.lock import LOCK_NAME, RunLock
from attntrain.train.trainer import FitResult, Trainer


def run_config(run_dir: str | Path, overrides: list[str] = ()) -> Config:
    """The resolved config saved in a run directory (with optional overrides, e.g. train.max_epochs)."""
    run = RunDir(run_dir).require()
    cfg = build_config(read_yaml(run.config), str(run.config), overrides)
    # The run keeps living where it is, even if it was moved or runs_dir was relative elsewhere.
    cfg.runs_dir, cfg.name = str(run.path.parent), run.path.name
    return cfg


def fit(config: str | Path | None = None, *, overrides: list[str] = (), resume: str | Path | None = None,
        overwrite: bool = False) -> FitResult:
    if resume is not None:
        cfg = run_config(resume, overrides)
        check_config(cfg, str(RunDir(resume).config))
        with RunLock(resume):
            return _with_curves(Trainer(cfg, RunDir(resume), resume=True).fit())
    if config is None:
        raise UserError("fit needs a CONFIG file or --resume RUN_DIR")
    cfg = load_config(config, overrides)
    check_config(cfg, str(config))
    if cfg.train.seeds > 1:
        with RunLock(cfg.run_dir()):
            return fit_seeds(cfg, overwrite=overwrite)
    run = RunDir(cfg.run_dir())
    with RunLock(run.path):  # taken before looking inside: two `fit` of one name cannot both start
        content = [p for p in run.path.iterdir() if p.name != LOCK_NAME]
        if content:
            if not overwrite:
                raise UserError(f"run directory {run.path} already exists; resume it with "
                                f"`attntrain fit --resume {run.path}`, pick another name with --set name=..., "
                                "or pass --overwrite")
            for path in content:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        return _with_curves(Trainer(cfg, run, resume=False).fit())


def _with_curves(result: FitResult) -> FitResult:
    """Every finished run also gets learning_curves.png."""
    if result.metrics:
        from attntrain.plots import learning_curves

        learning_curves(result.run_dir)
    return result


def fit_seeds(cfg: Config, *, overwrite: bool = False) -> FitResult:
    """Train cfg.train.seeds runs (seeds seed, seed+1, ...) under runs/<name>/seed-<k>/ and summarise.

    Running the same command again skips finished seeds and resumes an interrupted one.
    """
    parent = cfg.run_dir()
    if overwrite and parent.exists():
        for path in parent.iterdir():  # all but the lock file the caller holds
            if path.name != LOCK_NAME:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    results = {}
    for k in range(cfg.train.seeds):
        seed = cfg.seed + k
        one = cfg.model_copy(deep=True)
        one.seed, one.runs_dir, one.name, one.train.seeds = seed, str(parent), f"seed-{seed}", 1
        run = RunDir(one.run_dir())
        splits = one.train.eval_splits
        if all(run.eval_file(s).is_file() for s in splits):
            results[seed] = {s: read_run_json(run.eval_file(s)) for s in splits}
            continue
        result = _with_curves(Trainer(one, run, resume=run.latest() is not None).fit())
        if not result.metrics:  # interrupted: stop here, the same command continues later
            return FitResult(str(parent), result.stopped, result.step, result.best, {})
        results[seed] = result.metrics
    summary = summarise(results)
    atomic_write_json(parent / "summary.json", {"seeds": list(results), "runs": results, "summary": summary})
    return FitResult(str(parent), "finished", 0, None, summary)


def summarise(results: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """{seed: {split: metrics}} -> {"<split> mean": ..., "<split> std": ...} (sample std, n-1)."""
    import statistics

    summary = {}
    splits = next(iter(results.values())).keys()
    for split in splits:
        keys = [k for k, v in next(iter(results.values()))[split].items() if isinstance(v, (int, float))]
        values = {k: [results[s][split][k] for s in results] for k in keys}
        summary[f"{split} mean"] = {k: statistics.fmean(v) for k, v in values.items()}
        summary[f"{split} std"] = {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in values.items()}
    return summary


def load_run(run_dir: str | Path, *, checkpoint: str = "best", device: str | None = None,
             overrides: list[str] = ()):
    """(cfg, task, model, device) of a finished or interrupted run, ready for evaluation."""
    cfg = run_config(run_dir, overrides)
    run = RunDir(run_dir)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    dev = resolve_device(device or cfg.train.device)
    task = build_task(cfg)
    state = read_run_json(run.task_state)
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


def eval_run(run_dir: str | Path, split: str = "test", *, checkpoint: str = "best", beam: int | None = None) -> dict:
    kind = run_config(run_dir).model.head.kind
    if beam is not None and kind != "seq2seq":
        raise UserError(f"--beam: only seq2seq runs search for their output; {run_dir} has model.head.kind '{kind}'")
    overrides = [] if beam is None else [f"model.head.decoder.{key}={beam}" for key in ("beam_size", "dev_beam_size")]
    cfg, task, model, device = load_run(run_dir, checkpoint=checkpoint, overrides=overrides)
    if split not in task.splits:
        raise UserError(f"--split: unknown split '{split}'; this task has {', '.join(task.splits)}")
    check_writable(RunDir(run_dir).path)  # found now, not after the whole split was evaluated
    metrics = evaluate_split(model, task, split, device, run_dir, amp=amp_dtype(device, cfg.train.amp), progress=True)
    atomic_write_json(RunDir(run_dir).eval_file(split), metrics)
    return metrics


@torch.no_grad()
def predict(run_dir: str | Path, lines: Iterable[str], batch_size: int | None = None) -> Iterator[str]:
    """Stream predictions for raw inputs, one output line per input line (empty in -> empty out).

    Inputs are run `batch_size` at a time (default: the task's `predict_batch_size`); 1 answers each
    line before the next is read, as an interactive terminal wants.
    """
    cfg, task, model, device = load_run(run_dir)
    batch_size = batch_size or task.predict_batch_size
    pending: list[str] = []
    done = 0  # input lines answered so far

    def flush():
        examples = task.parse_inputs(pending)
        units = [(i, part) for i, ex in enumerate(examples) if not task.is_empty(ex)
                 for part in _windows(task, ex, done + i + 1)]
        predictions: dict[int, list] = {}
        for start in range(0, len(units), batch_size):
            chunk = units[start: start + batch_size]
            batch = move(task.collate([task.encode(part, max_len=task.eval_max_len()) for _, part in chunk]), device)
            for (i, _), pred in zip(chunk, model.head.predict(model(batch)["logits"], batch)):
                predictions.setdefault(i, []).append(pred)
        out = [""] * len(examples)
        for i, preds in predictions.items():  # a windowed line: the windows' labels, in order
            out[i] = task.describe(examples[i], preds[0] if len(preds) == 1 else [y for p in preds for y in p])
        pending.clear()
        return out

    for line in lines:
        pending.append(line.rstrip("\n"))
        if len(pending) >= batch_size:
            yield from flush()
            done += batch_size
    if pending:
        yield from flush()


def _windows(task, example: dict, line: int) -> list[dict]:
    """A text input longer than data.max_len words: a label per word (tagging) is predicted over
    consecutive windows of data.max_len words, so every word gets one; one label per input reads the
    first data.max_len words, as evaluation does, and says so on stderr."""
    words, limit = example.get("words"), task.cfg.data.max_len
    if words is None or len(words) <= limit:
        return [example]
    if task.eval_max_len() is None:
        return [{**example, "words": words[start: start + limit]} for start in range(0, len(words), limit)]
    print(f"input line {line}: {len(words)} words, only the first {limit} are read (data.max_len)", file=sys.stderr)
    return [example]


def format_table(rows: dict[str, dict]) -> str:
    """{row name: {column: value}} -> aligned text table."""
    columns = list(dict.fromkeys(k for r in rows.values() for k in r))
    cells = [["split", *columns]] + [
        [name, *(f"{r[c]:.2f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns)]
        for name, r in rows.items()
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns) + 1)]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
