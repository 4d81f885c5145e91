"""`attntrain tune CONFIG --trials N`: search the config's `tune.space` with Optuna, selecting on dev only.

Each trial is an ordinary run directory, runs/<name>/trial-<n>/ (`attntrain runs runs/<name>` lists them),
trained with train.eval_splits [dev] so no trial ever sees test. The objective is the config's dev metric
(train.metric; with --folds K the mean over K folds). A trial reports each dev evaluation to the pruner
(median or successive halving), which may stop it early: it ends with a `stop` record, reason `pruned`.
The study lives in runs/<name>/tune/study.db (SQLite) unless --storage names another database, so a
killed tune resumes and a second call adds trials. At the end: the table of trials (tune/trials.md, .csv),
the best config (runs/<name>/best.yaml), test evaluated once, for the best trial only, and the PNGs
tune/history.png and tune/importance.png.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from attntrain.config import Config, SearchRange, build_config, read_yaml
from attntrain.errors import UserError
from attntrain.io import append_jsonl, atomic_write_text

KEEP_SPLITS = ["dev"]  # what a trial evaluates at its end: never test


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("attntrain tune needs Optuna; install it with: pip install 'attntrain[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def storage_url(parent: Path, storage: str | None) -> str:
    if storage:
        return storage
    (parent / "tune").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(parent / 'tune' / 'study.db').resolve()}"


def open_study(cfg: Config, url: str, worker: int = 0):
    """The study named after the run, created on the first call and loaded on the next ones.

    The sampler's seed is tune.seed + the trials already in the study + 1000 x the worker's index: a second
    call, or a second process, must not draw the same values again (a seeded sampler starts its stream over).
    """
    optuna = import_optuna()
    tune = cfg.tune
    storage = rdb_storage(optuna, url)
    try:
        existing = len(optuna.load_study(study_name=cfg.name, storage=storage).trials)
    except KeyError:  # no such study yet
        existing = 0
    seed = tune.seed + existing + 1000 * worker
    sampler = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=tune.startup_trials)
               if tune.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed))
    pruner = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=tune.startup_trials,
                                                            n_warmup_steps=tune.warmup_evals),
              "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, tune.warmup_evals)),
              "none": optuna.pruners.NopPruner}[tune.pruner]()
    direction = "maximize" if cfg.train.metric_mode == "max" else "minimize"
    try:
        return optuna.create_study(study_name=cfg.name, storage=storage, sampler=sampler, pruner=pruner,
                                   direction=direction, load_if_exists=True)
    except ValueError as e:  # e.g. an existing study with the other direction
        raise UserError(f"tune: study '{cfg.name}' in {url}: {e}") from None


def rdb_storage(optuna, url: str):
    """The database; a worker that dies mid-trial stops beating, and its trial is marked failed and run again once."""
    import warnings

    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)  # Optuna >= 4.9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeats are marked experimental
        if retry is not None:
            return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=90,
                                              heartbeat_stale_trial_callback=retry(max_retry=1))
        return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=90,
                                          failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=1))


def suggest(trial, key: str, spec: SearchRange) -> Any:
    if spec.choices is not None:
        return trial.suggest_categorical(key, spec.choices)
    if spec.is_int():
        return trial.suggest_int(key, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log)
    return trial.suggest_float(key, spec.low, spec.high, step=spec.step, log=spec.log)


def in_space(spec: SearchRange, value: Any) -> bool:
    """Whether Optuna could draw `value` from this range or these choices (a step grid included)."""
    if spec.choices is not None:
        return value in spec.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if not spec.low <= value <= spec.high or (spec.is_int() and not float(value).is_integer()):
        return False
    step = spec.step or (1 if spec.is_int() else None)
    return step is None or math.isclose(round((value - spec.low) / step) * step + spec.low, value, rel_tol=1e-9)


def config_values(cfg: Config) -> tuple[dict[str, Any], list[str]]:
    """The config's own values of the space's keys that lie in the space, and the keys whose value does not."""
    inside, outside = {}, []
    for dotted, spec in cfg.tune.space.items():
        node: Any = cfg
        for key in dotted.split("."):
            node = getattr(node, key, None)  # None: a section the config leaves empty (e.g. data.source of a preset)
        value = node.model_dump(mode="json") if hasattr(node, "model_dump") else node
        if in_space(spec, value):
            inside[dotted] = int(value) if spec.choices is None and spec.is_int() else value
        else:
            outside.append(f"{dotted}={value!r}")
    return inside, outside


def enqueue_config(study, cfg: Config) -> str:
    """A new study's first trial: the config as written (tune.first_trial: config). One line on what was queued."""
    if cfg.tune.first_trial != "config" or study.trials:
        return ""
    inside, outside = config_values(cfg)
    study.enqueue_trial(inside)
    left = f"; outside the space, so sampled: {', '.join(outside)}" if outside else ""
    return f"tune: trial 0 is the config as written ({len(inside)} of {len(cfg.tune.space)} keys{left})"


def with_values(raw: dict, values: dict[str, Any]) -> dict:
    """A copy of a raw config with dotted keys set (the keys were checked when tune.space was loaded)."""
    raw = copy.deepcopy(raw)
    for dotted, value in values.items():
        *path, last = dotted.split(".")
        node = raw
        for key in path:
            if not isinstance(node.get(key), dict):  # absent, or null in the YAML
                node[key] = {}
            node = node[key]
        node[last] = value
    return raw


class Search:
    """One tune call: the base config, where trials go, and how a trial is trained."""

    def __init__(self, config: Path, overrides: list[str], folds: int | None):
        from attntrain.checks import load_checked

        self.base = load_checked(config, overrides)
        if not self.base.tune.space:
            raise UserError(f"{config}: tune.space is empty; declare what to search, e.g.\n"
                            "tune:\n  space:\n    train.lr: {low: 1.0e-4, high: 3.0e-3, log: true}")
        self.raw = read_yaml(config)
        self.source, self.overrides, self.folds = str(config), overrides, folds
        self.parent = self.base.run_dir()

    def trial_config(self, number: int, values: dict[str, Any]) -> Config:
        cfg = build_config(with_values(self.raw, values), self.source, self.overrides, default_name=self.base.name)
        cfg.name, cfg.runs_dir = f"trial-{number}", str(self.parent)
        cfg.train.eval_splits = list(KEEP_SPLITS)
        cfg.train.progress = False
        return cfg

    def objective(self, trial) -> float:
        values = {key: suggest(trial, key, spec) for key, spec in self.base.tune.space.items()}
        cfg = self.trial_config(trial.number, values)
        trial.set_user_attr("run_dir", str(cfg.run_dir()))
        if self.folds:
            return self.fold_objective(trial, cfg)
        return train_trial(cfg, trial, report=True)

    def fold_objective(self, trial, cfg: Config) -> float:
        """Mean dev metric over K folds; the running mean is reported after each fold (for pruning)."""
        values = []
        for fold in range(self.folds):
            one = cfg.model_copy(deep=True)
            one.runs_dir, one.name = str(cfg.run_dir()), f"fold-{fold}"
            one.data.split.folds, one.data.split.fold = self.folds, fold
            values.append(train_trial(one, trial, report=False))
            trial.report(sum(values) / len(values), fold)
            if fold + 1 < self.folds and trial.should_prune():
                raise import_optuna().TrialPruned()
        return sum(values) / len(values)


def train_trial(cfg: Config, trial, *, report: bool) -> float:
    """Train one run directory; its best dev metric. Interrupted: the study stops (KeyboardInterrupt)."""
    optuna = import_optuna()
    from attntrain.runs import _with_curves, fresh_run
    from attntrain.train.checkpoint import RunDir
    from attntrain.train.trainer import Trainer

    run = RunDir(cfg.run_dir())
    evaluations = []

    def on_eval(step: int, value: float) -> None:
        evaluations.append(step)
        trial.report(value, len(evaluations))
        if trial.should_prune():
            append_jsonl(run.metrics, {"kind": "stop", "reason": "pruned", "step": step,
                                       "evaluations": len(evaluations)})
            raise optuna.TrialPruned(f"pruned at step {step} (dev {cfg.train.metric} {value:.2f})")

    with fresh_run(run.path, overwrite=True) as stage:  # a retried trial of a killed tune starts over
        trainer = Trainer(cfg, run, resume=False)
        stage.commit()
        trainer.on_eval = on_eval if report else None
        result = _with_curves(trainer.fit())
    if not result.metrics:
        raise KeyboardInterrupt  # Ctrl-C / SIGTERM: the trial's checkpoint is saved; the study stops here
    value = result.metrics["dev"][cfg.train.metric]
    if not math.isfinite(value):
        raise UserError(f"{run.path}: dev {cfg.train.metric} is {value}")
    return value


def tune(config: Path, *, trials: int, jobs: int = 1, timeout: float | None = None, storage: str | None = None,
         folds: int | None = None, overrides: list[str] = (), worker: int = 0) -> str:
    """Run `trials` more trials (over `jobs` processes); returns the report (empty for a worker: worker > 0)."""
    search = Search(config, list(overrides), folds)
    url = storage_url(search.parent, storage)
    study = open_study(search.base, url, worker)
    if trials and not worker and (line := enqueue_config(study, search.base)):  # --trials 0 only reports
        from attntrain.train.progress import log

        log(line)
    workers = [start_worker(config, share, timeout, url, folds, overrides, index)
               for index, share in enumerate(shares(trials, jobs)[1:], 1)] if jobs > 1 else []
    try:
        if trials:
            study.optimize(search.objective, n_trials=shares(trials, jobs)[0], timeout=timeout,
                           catch=(UserError,), gc_after_trial=True)
    finally:
        for process in workers:
            process.wait()
    if worker:
        return ""
    from attntrain.tune_report import report

    return report(study, search, url, write_best)


def shares(trials: int, jobs: int) -> list[int]:
    """trials split over jobs processes (the first takes the remainder)."""
    jobs = max(1, min(jobs, trials))
    if not trials:
        return [0]
    return [trials // jobs + (1 if i < trials % jobs else 0) for i in range(jobs)]


def start_worker(config: Path, trials: int, timeout: float | None, url: str, folds: int | None,
                 overrides: list[str], index: int) -> subprocess.Popen:
    """Another process on the same study (the database is shared, so each asks for its own next trial)."""
    argv = [sys.executable, "-m", "attntrain", "tune", str(config), "--trials", str(trials), "--storage", url,
            "--worker", str(index)] + (["--timeout", str(timeout)] if timeout else []) + (["--folds", str(folds)] if folds else [])
    argv += [arg for item in overrides for arg in ("--set", item)]
    return subprocess.Popen(argv, env={**os.environ}, stdout=subprocess.DEVNULL)


def best_yaml(raw: dict, values: dict[str, Any], number: int, metric: str, value: float, name: str) -> str:
    """The config with the best trial's values, without its tune section, named <name>-best."""
    body = with_values(raw, values)
    body.pop("tune", None)
    body["name"] = f"{name}-best"
    header = (f"# the best of `attntrain tune`: trial {number}, dev {metric} {value:.2f}\n"
              f"# its values: {', '.join(f'{k}={v}' for k, v in values.items())}\n")
    return header + yaml.safe_dump(body, sort_keys=False)


def write_best(search: Search, best, metric: str) -> Path:
    path = search.parent / "best.yaml"
    raw = search.raw if not search.overrides else _with_overrides(search.raw, search.overrides)
    atomic_write_text(path, best_yaml(raw, best.params, best.number, metric, best.value, search.base.name))
    return path


def _with_overrides(raw: dict, overrides: list[str]) -> dict:
    from attntrain.config import apply_overrides

    return apply_overrides(raw, overrides)
