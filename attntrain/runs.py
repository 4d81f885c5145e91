"""Library side of the CLI commands: start or resume a run, load a run, evaluate, predict."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Iterable, Iterator

from attntrain.checks import check_config, load_checked
from attntrain.config import Config, load_config
from attntrain.errors import UserError
from attntrain.io import atomic_write_json, check_writable
from attntrain.train import distributed
from attntrain.train.checkpoint import RunDir, read_run_json
from attntrain.train.loop import amp_dtype, evaluate_split
from attntrain.train.lock import LOCK_NAME, RunLock
from attntrain.train.restore import load_run, run_config  # re-exported: runs.load_run, runs.run_config
from attntrain.train.trainer import FitResult, Trainer


def fit(config: str | Path | None = None, *, overrides: list[str] = (), resume: str | Path | None = None,
        overwrite: bool = False, allow_data_change: bool = False) -> FitResult:
    if resume is not None:
        cfg = run_config(resume, overrides)
        check_config(cfg, str(RunDir(resume).config))
        distributed.setup(cfg.train)  # under torchrun: join the other processes
        with lock(resume):
            return _with_curves(Trainer(cfg, RunDir(resume), resume=True, allow_data_change=allow_data_change).fit())
    if config is None:
        raise UserError("fit needs a CONFIG file or --resume RUN_DIR")
    cfg = load_checked(config, overrides)
    distributed.setup(cfg.train)
    if cfg.train.seeds > 1:
        with fresh_run(cfg.run_dir(), overwrite, repeats=True) as stage:
            return fit_seeds(cfg, stage=stage)
    if cfg.data.split.folds > 1 and cfg.data.split.fold is None:
        with fresh_run(cfg.run_dir(), overwrite, repeats=True) as stage:
            return fit_folds(cfg, stage=stage)
    run = RunDir(cfg.run_dir())
    with fresh_run(run.path, overwrite) as stage:
        trainer = Trainer(cfg, run, resume=False)  # data read and checked, model built: only now the old run goes
        stage.commit()
        return _with_curves(trainer.fit())


def lock(folder):
    """The run directory's lock, held by the main process (the others of a torchrun job share it)."""
    return RunLock(folder) if distributed.is_main() else contextlib.nullcontext()


def launch_fit(nproc: int, config: str | Path | None = None, *, overrides: list[str] = (),
               resume: str | Path | None = None, overwrite: bool = False, allow_data_change: bool = False) -> int:
    """`attntrain fit ... --nproc N`: the same fit in N processes started by torchrun's launcher; exit code."""
    if resume is not None:
        cfg = run_config(resume, overrides)
    elif config is not None:
        cfg = load_config(config, overrides)
    else:
        raise UserError("fit needs a CONFIG file or --resume RUN_DIR")
    argv = ["fit"] + ([str(config)] if config is not None and resume is None else [])
    argv += [f"--set={item}" for item in overrides] + (["--resume", str(resume)] if resume is not None else [])
    argv += ["--overwrite"] if overwrite else []
    argv += ["--allow-data-change"] if allow_data_change else []
    return distributed.launch(nproc, argv, train_cfg=cfg.train, run_dir=str(cfg.run_dir()))


PREVIOUS = ".previous"  # inside a run directory: the run that --overwrite replaces, until the new one is built


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def clear_run_dir(folder: Path, keep: tuple[str, ...] = (LOCK_NAME,)) -> None:
    """Delete a run directory's content, all but the lock file its owner holds (and `keep`)."""
    for path in folder.iterdir():
        if path.name not in keep:
            _remove(path)


class Stage:
    """A new run in a run directory: with --overwrite the old run is moved aside (.previous/) and put back
    if the new one fails before `commit()` (a mistyped path or a bad row never costs the trained model)."""

    def __init__(self, folder: Path):
        self.folder, self.previous, self.committed = folder, folder / PREVIOUS, False

    def begin(self, overwrite: bool, *, repeats: bool = False) -> None:
        if self.previous.is_dir():  # an earlier --overwrite was killed before its new run was built
            self.rollback()
        content = [p for p in self.folder.iterdir() if p.name != LOCK_NAME] if self.folder.exists() else []
        if repeats and not overwrite:  # the same --seeds / --folds command continues its unfinished runs
            return
        if content and not overwrite:
            raise UserError(f"run directory {self.folder} already exists; resume it with "
                            f"`attntrain fit --resume {self.folder}`, pick another name with --set name=..., "
                            "or pass --overwrite")
        if content:
            self.previous.mkdir()
            for path in content:
                path.rename(self.previous / path.name)

    def commit(self) -> None:
        """The new run is built: the old one can go."""
        if not self.committed and distributed.is_main() and self.previous.is_dir():
            shutil.rmtree(self.previous)
        self.committed = True

    def rollback(self) -> None:
        """Delete what the failed new run wrote and put the old run back."""
        clear_run_dir(self.folder, keep=(LOCK_NAME, PREVIOUS))
        if self.previous.is_dir():
            for path in self.previous.iterdir():
                path.rename(self.folder / path.name)
            self.previous.rmdir()


@contextlib.contextmanager
def fresh_run(folder: str | Path, overwrite: bool, *, repeats: bool = False) -> Iterator[Stage]:
    """Hold `folder` (its lock) for a new run; on a failure before `Stage.commit()` leave it as it was found:
    the old run restored, or no folder at all when there was none."""
    folder = Path(folder)
    existed = folder.exists()
    stage = Stage(folder)
    try:
        with lock(folder):  # taken before looking inside: two `fit` of one name cannot both start
            distributed.on_main(lambda: stage.begin(overwrite, repeats=repeats))
            try:
                yield stage
            except BaseException:
                if not stage.committed and distributed.is_main():
                    stage.rollback()
                raise
    except BaseException:
        if not existed and not stage.committed and distributed.is_main():
            with contextlib.suppress(OSError):
                folder.rmdir()  # empty once the lock is released
        raise


def _with_curves(result: FitResult) -> FitResult:
    """Every finished run also gets learning_curves.png and confusion_<split>.png (from the evaluation's counts)."""
    if result.metrics and distributed.is_main():
        from attntrain.plots import confusion_pictures, learning_curves

        learning_curves(result.run_dir)
        confusion_pictures(result.run_dir)
    return result


def fit_seeds(cfg: Config, *, stage: Stage | None = None) -> FitResult:
    """Train cfg.train.seeds runs (seeds seed, seed+1, ...) under runs/<name>/seed-<k>/ and summarise."""
    variants = []
    for k in range(cfg.train.seeds):
        one = cfg.model_copy(deep=True)
        one.seed, one.name, one.train.seeds = cfg.seed + k, f"seed-{cfg.seed + k}", 1
        variants.append(one)
    return fit_repeats(cfg, variants, "seeds", [one.seed for one in variants], stage=stage)


def fit_folds(cfg: Config, *, stage: Stage | None = None) -> FitResult:
    """k-fold cross-validation: fold i is the test set of run runs/<name>/fold-<i>/; mean and std over folds."""
    variants = []
    for fold in range(cfg.data.split.folds):
        one = cfg.model_copy(deep=True)
        one.name, one.data.split.fold = f"fold-{fold}", fold
        variants.append(one)
    return fit_repeats(cfg, variants, "folds", list(range(cfg.data.split.folds)), stage=stage)


def fit_repeats(cfg: Config, variants: list[Config], what: str, keys: list[int], *,
                stage: Stage | None = None) -> FitResult:
    """Train each variant under runs/<name>/<variant name>/, then write summary.json (mean, std per metric);
    summary.json lists the variants' keys under `what` ("seeds": [1, 2, 3] or "folds": [0, 1, ...]).

    Running the same command again skips finished variants and resumes an interrupted one.
    """
    parent = cfg.run_dir()
    results = {}
    for one in variants:
        one.runs_dir = str(parent)
        run = RunDir(one.run_dir())
        splits = one.train.eval_splits
        if all(run.eval_file(s).is_file() for s in splits):
            results[one.name] = {s: read_run_json(run.eval_file(s)) for s in splits}
            continue
        trainer = Trainer(one, run, resume=run.latest() is not None)
        if stage is not None:
            stage.commit()  # the first variant is built: an --overwrite'n parent's old runs can go
        result = _with_curves(trainer.fit())
        if not result.metrics:  # interrupted: stop here, the same command continues later
            return FitResult(str(parent), result.stopped, result.step, result.best, {})
        results[one.name] = result.metrics
    summary = summarise(results)
    if distributed.is_main():
        atomic_write_json(parent / "summary.json", {what: keys, "runs": results, "summary": summary})
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


def eval_run(run_dir: str | Path, split: str = "test", *, checkpoint: str = "best", beam: int | None = None,
             save_predictions: bool = False, overrides: list[str] = ()) -> dict:
    """Evaluate a run; `overrides` change how it decodes (e.g. model.head.decode=argmax), not what it learned.

    Metrics go to eval_<split>.json; with overrides to eval_<split>@<key=value,...>.json beside it, so the
    run's own figures (what `compare` and `runs` read) stay those of its config.
    """
    name = split + ("@" + ",".join(o.replace("model.head.", "").replace("/", "_") for o in overrides)
                    if overrides else "")
    kind = run_config(run_dir).model.head.kind
    if beam is not None and kind != "seq2seq":
        raise UserError(f"--beam: only seq2seq runs search for their output; {run_dir} has model.head.kind '{kind}'")
    overrides = list(overrides) + ([] if beam is None else
                                   [f"model.head.decoder.{key}={beam}" for key in ("beam_size", "dev_beam_size")])
    cfg, task, model, device = load_run(run_dir, checkpoint=checkpoint, overrides=overrides)
    if split not in task.splits:
        raise UserError(f"--split: unknown split '{split}'; this task has {', '.join(task.splits)}")
    check_writable(RunDir(run_dir).path)  # found now, not after the whole split was evaluated
    metrics = evaluate_split(model, task, split, device, run_dir, amp=amp_dtype(device, cfg.train.amp), progress=True)
    atomic_write_json(RunDir(run_dir).eval_file(name), metrics)
    from attntrain.plots import confusion_pictures

    confusion_pictures(run_dir, [split])  # the training loop writes counts only; pictures are drawn here
    if save_predictions:
        save_split_predictions(run_dir, split, cfg, task, model, device)
    return metrics


def save_split_predictions(run_dir: str | Path, split: str, cfg, task, model, device) -> Path:
    """predictions_<split>.jsonl: one record per example of the split, in order ("index" = line of the split).

    A second pass over the split (a translation run searches again, with the same beam as the evaluation).
    """
    from attntrain.io import atomic_write_text
    from attntrain.predictor import Predictor

    predictor = Predictor(cfg, task, model, device)
    raw = task.split_raw(split)
    results = predictor.run_encoded(task.split(split), batch_size=max(task.predict_batch_size, 64))
    lines = [json.dumps({"index": i, **task.gold_record(ex), **predictor.record(ex, r)}, ensure_ascii=False)
             for i, (ex, r) in enumerate(zip(raw, results))]
    path = Path(run_dir) / f"predictions_{split}.jsonl"
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path


FORMATS = ("text", "jsonl", "tsv")


def predict(run_dir: str | Path, lines: Iterable[str], batch_size: int | None = None, *, fmt: str = "text",
            top_k: int | None = None, beam: int | None = None, pretokenized: bool = False, checkpoint: str = "best",
            overrides: list[str] = ()) -> Iterator[str]:
    """Stream predictions for raw inputs, one output line per input line (empty in -> empty out).

    Inputs are run `batch_size` at a time (default: the task's `predict_batch_size`); 1 answers each
    line before the next is read, as an interactive terminal wants. fmt: text (as `describe` prints),
    jsonl (one record per line, with "input") or tsv (a header line, then input and the record's
    flat fields; lists joined by spaces).
    """
    from attntrain.predictor import Predictor

    if fmt not in FORMATS:
        raise UserError(f"--format: unknown format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    predictor = Predictor.from_run(run_dir, checkpoint=checkpoint, overrides=overrides)
    predictor.check_beam(beam)
    batch_size = batch_size or predictor.task.predict_batch_size
    pending: list[str] = []
    header: list[str] = []

    def flush():
        examples = predictor.parse(pending, pretokenized=pretokenized)
        if fmt == "text":
            out = predictor.lines(examples, beam=beam, batch_size=batch_size)
        else:
            records = [{"input": line, **rec} for line, rec in
                       zip(pending, predictor.records(examples, beam=beam, top_k=top_k, batch_size=batch_size))]
            out = [json.dumps(rec, ensure_ascii=False) for rec in records] if fmt == "jsonl" else _tsv(records, header)
        pending.clear()
        return out

    for line in lines:
        pending.append(line.rstrip("\n"))
        if len(pending) >= batch_size:
            yield from flush()
    if pending:
        yield from flush()


def _tsv_cell(value) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("\t", " ").replace("\n", " ")


def _tsv(records: list[dict], header: list[str]) -> list[str]:
    """Flat (non-dict) fields as tab-separated columns; the first non-empty record fixes the header."""
    lines = []
    for rec in records:
        if not header and len(rec) > 1:
            header.extend(k for k, v in rec.items() if not isinstance(v, dict)
                          and not (isinstance(v, list) and v and isinstance(v[0], dict)))
            lines.append("\t".join(header))
        lines.append("\t".join(_tsv_cell(rec.get(k, "")) for k in header) if header else _tsv_cell(rec["input"]))
    return lines


def format_table(rows: dict[str, dict]) -> str:
    """{row name: {column: value}} -> aligned text table."""
    columns = list(dict.fromkeys(k for r in rows.values() for k, v in r.items() if not isinstance(v, dict)))
    cells = [["split", *columns]] + [
        [name, *(f"{r[c]:.2f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns)]
        for name, r in rows.items()
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns) + 1)]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def preview(cfg: Config) -> str:
    """What `fit` would do with a config, without training or writing: the data read and checked (the data
    checks said on stderr), the model built, the budget and schedule resolved."""
    import torch

    from attntrain.data import build_task
    from attntrain.model.build import build_model, count_parameters
    from attntrain.train.schedule import budget, resolve, steps_per_epoch

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    task = build_task(cfg)
    task.prepare(None)
    sizes = ", ".join(f"{name} {len(task.split(name)):,}" for name in task.splits)
    plan = budget(cfg.train, steps_per_epoch(task, cfg.train))
    schedule = resolve(cfg.train, plan.total)
    lines = [f"data: {sizes} examples",
             f"model: {count_parameters(build_model(cfg, task.info())):,} parameters"
             + (" (vocabulary from train; with model.init the pretrained run's is used)" if cfg.model.init else ""),
             f"budget: {plan.describe()}; warm-up {schedule.warmup} steps, dev every {schedule.eval_every} steps"]
    return "\n".join(lines + [f"warning: {w}" for w in schedule.warnings])
