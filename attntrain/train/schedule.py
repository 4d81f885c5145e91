"""Schedules given as fractions of the run, so a recipe transfers to datasets of other sizes.

`train.warmup`, `train.eval_every` (< 1) and `train.ema_horizon` are fractions of the total number of
optimizer steps; `train.warmup_steps`, `eval_every` (>= 1) and `train.ema` stay available as absolute
steps / decay. `resolve` turns both forms into steps and says when a setting cannot work for this run
(warm-up longer than the run, a weight average whose horizon is longer than training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Below this many optimizer steps a run is usually under-trained: the warning names the settings that add steps.
FEW_STEPS = 100


@dataclass
class Budget:
    """How long a run trains and which setting decided it (the reason a run that ends normally stops)."""

    total: int  # optimizer steps
    max_epochs: float  # passes over train allowed (inf when steps decide)
    limit: str  # max_steps | min_steps | max_epochs
    per_epoch: int  # optimizer steps in one pass over train

    def describe(self) -> str:
        epochs = self.total / max(self.per_epoch, 1)
        return f"{self.total:,} steps ({epochs:.3g} epochs of {self.per_epoch:,} steps; set by train.{self.limit})"


def steps_per_epoch(task, train_cfg) -> int:
    """Optimizer steps in one pass over the task's training split (batches / train.accumulate)."""
    return math.ceil(len(task.batches("train", shuffle=True, epoch=0)) / train_cfg.accumulate)


def budget(train_cfg, per_epoch: int) -> Budget:
    """train.max_steps overrides train.max_epochs; train.min_steps adds epochs until the run has that many steps."""
    t = train_cfg
    if t.max_steps:
        return Budget(t.max_steps, math.inf, "max_steps", per_epoch)
    by_epochs = per_epoch * t.max_epochs
    if t.min_steps and t.min_steps > by_epochs:
        return Budget(t.min_steps, math.inf, "min_steps", per_epoch)
    return Budget(by_epochs, t.max_epochs, "max_epochs", per_epoch)


@dataclass
class Schedule:
    total: int  # optimizer steps of the run
    warmup: int  # linear warm-up steps
    eval_every: int  # steps between dev evaluations
    ema: float | None  # weight-average decay per step (None: no average)
    warnings: list[str]


def resolve(train_cfg, total: int) -> Schedule:
    t, warnings = train_cfg, []
    if total < FEW_STEPS and not t.max_steps:
        warnings.append(f"the run has only {total} optimizer steps: a small training set may stop before the "
                        f"model has learned; set train.min_steps (e.g. {10 * FEW_STEPS // 2}) or train.max_steps")
    warmup = round(t.warmup * total) if t.warmup is not None else t.warmup_steps
    if warmup >= total:
        warnings.append(f"warm-up ({warmup} steps) is as long as the whole run ({total} steps): the learning rate "
                        "never reaches train.lr; set train.warmup as a fraction (e.g. 0.05)")
    every = max(1, round(t.eval_every * total)) if t.eval_every < 1 else int(t.eval_every)
    if t.ema_horizon is not None:
        ema = 1.0 - 1.0 / max(t.ema_horizon * total, 1.0)
    else:
        ema = t.ema
    if ema is not None and 1.0 / (1.0 - ema) > 1.1 * reachable_span(total):  # 10% over: the ramp ends the run
        warnings.append(f"the weight average is set to span ~{1.0 / (1.0 - ema):,.0f} steps, but its span grows as "
                        f"~1/{RAMP - 1} of the steps so far and reaches only ~{reachable_span(total):,.0f} by the end of "
                        f"this {total:,}-step run; any train.ema_horizon above ~{reachable_span(total) / total:.2f} "
                        "acts the same here")
    return Schedule(total, warmup, every, ema, warnings)


RAMP = 10  # the average's decay at step s is at most (1 + s) / (RAMP + s)


def ema_decay(target: float, step: int) -> float:
    """The weight average's decay at STEP: the target, but at most (1 + s) / (10 + s), so early on the average
    follows the weights and its span, 1 / (1 - decay), grows as (10 + s) / 9 steps: ~11% of the steps so far."""
    return min(target, (1 + step) / (RAMP + step))


def reachable_span(total: int) -> float:
    """The longest span the weight average reaches in a run of TOTAL steps (the ramp's, at the last step)."""
    return (RAMP + total) / (RAMP - 1)
