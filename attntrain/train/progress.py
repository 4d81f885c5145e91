"""What a run carries between steps and how it ends: the progress a resume needs, the result of a fit, the
stop flag (Ctrl-C / SIGTERM), and the sentences that say why training stopped (attntrain/train/trainer.py)."""

from __future__ import annotations

import os
import random
import signal
import sys
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from attntrain.errors import UserError
from attntrain.io import read_jsonl
from attntrain.train import distributed
from attntrain.train.schedule import Budget


def log(message: str) -> None:
    """Progress messages go to stderr (beside the bars), keeping stdout for results; rank 0 only."""
    if distributed.is_main():
        tqdm.write(message, file=sys.stderr)


def open_tensorboard(folder):
    """A TensorBoard SummaryWriter; the package is optional (pip install 'attntrain[tensorboard]')."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("train.tensorboard: true needs the tensorboard package; "
                        "install it with: pip install 'attntrain[tensorboard]'") from None
    return SummaryWriter(str(folder))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


class StopFlag:
    """Turns the first SIGINT/SIGTERM into a request to save and stop; a second Ctrl-C aborts."""

    def __init__(self):
        self.requested = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        if distributed.is_main():
            # os.write, not print / tqdm.write: a signal can land while the main code is writing to stderr, and a
            # second write into the same buffered stream then fails ("reentrant call") and kills the run
            message = f"{self.requested}: saving a checkpoint at the end of this step (Ctrl-C again to abort)\n"
            try:
                os.write(sys.stderr.fileno(), message.encode("utf-8", "replace"))
            except (OSError, ValueError):  # stderr closed or not a real file: the stop still happens
                pass

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


@dataclass
class Progress:
    """Everything besides weights and optimizer that a resumed run needs."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best: float | None = None
    best_step: int = 0
    bad_evals: int = 0
    elapsed: float = 0.0
    tokens: int = 0
    history: list = field(default_factory=list)
    # The log window in progress (saved, so a resume inside a window logs the same mean loss).
    window_loss: float = 0.0
    window_steps: int = 0  # finite steps summed in window_loss
    window_skipped: int = 0  # steps skipped in this window (non-finite loss or gradient norm)
    skipped: int = 0  # skipped steps in the whole run
    nonfinite_run: int = 0  # consecutive skipped steps up to now


@dataclass
class FitResult:
    run_dir: str
    stopped: str  # "finished", "early_stop", or a signal name
    step: int
    best: float | None
    metrics: dict  # split -> metrics of the best checkpoint
    reason: str = ""  # why training ended, in words (the stop record of metrics.jsonl holds the same)


def stop_reason(train, progress: Progress, stopped: str, budget: Budget) -> tuple[str, str]:
    """(code, sentence) of why training ended: the budget's limit, patience or a signal (`train`: cfg.train)."""
    t, p = train, progress
    best = f"best dev {t.metric} {p.best:.2f} at step {p.best_step}" if p.best is not None else "no dev evaluation"
    if stopped == "early_stop":
        return "patience", (f"no better dev {t.metric} in {t.patience} evaluations (train.patience) at step "
                            f"{p.step}; {best}")
    if stopped != "finished":
        return "interrupt", f"stopped by {stopped} at step {p.step}"
    limit = {"max_steps": f"train.max_steps ({budget.total})", "min_steps": f"train.min_steps ({budget.total})",
             "max_epochs": f"train.max_epochs ({t.max_epochs})"}[budget.limit]
    return budget.limit, f"reached {limit} at step {p.step} ({p.step / max(budget.per_epoch, 1):.3g} epochs); {best}"


def check_not_finished(run, progress: Progress, budget: Budget, splits: list[str]) -> None:
    """--resume of a run that has nothing left to train: say so (no second set of final records)."""
    p = progress
    done = p.step >= budget.total or p.epoch >= budget.max_epochs
    finals = {r.get("split") for r in read_jsonl(run.metrics) if r.get("kind") == "final"}
    if done and finals >= set(splits) and all(run.eval_file(s).is_file() for s in splits):
        raise UserError(f"{run.path}: this run is finished (step {p.step} of {budget.total}); nothing to "
                        f"resume. Evaluate it with `attntrain eval {run.path}`, or train longer with "
                        f"`attntrain fit --resume {run.path} --set train.max_steps=N` (N > {p.step})")


def diverged_message(train, progress: Progress, run) -> str:
    """Why a run stopped after train.max_nonfinite skipped steps in a row, and what it keeps."""
    t, p = train, progress
    kept = (f"{run.best} keeps the best finite weights (step {p.best_step}, dev {t.metric} {p.best:.2f}); "
            f"evaluate them with `attntrain eval {run.path}`" if p.best is not None and run.best.is_file()
            else "no finite weights were evaluated yet, so there is no best.safetensors")
    return (f"training diverged: {p.nonfinite_run} consecutive steps with a non-finite loss or gradient "
            f"norm (step {p.step}, {p.skipped} skipped in all); {kept}; lower train.lr (now {t.lr:g}) "
            "or raise train.max_nonfinite")
