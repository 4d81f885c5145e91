"""Schedules given as fractions of the run, so a recipe transfers to datasets of other sizes.

`train.warmup`, `train.eval_every` (< 1) and `train.ema_horizon` are fractions of the total number of
optimizer steps; `train.warmup_steps`, `eval_every` (>= 1) and `train.ema` stay available as absolute
steps / decay. `resolve` turns both forms into steps and says when a setting cannot work for this run
(warm-up longer than the run, a weight average whose horizon is longer than training).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Schedule:
    total: int  # optimizer steps of the run
    warmup: int  # linear warm-up steps
    eval_every: int  # steps between dev evaluations
    ema: float | None  # weight-average decay per step (None: no average)
    warnings: list[str]


def resolve(train_cfg, total: int) -> Schedule:
    t, warnings = train_cfg, []
    warmup = round(t.warmup * total) if t.warmup is not None else t.warmup_steps
    if warmup >= total:
        warnings.append(f"warm-up ({warmup} steps) is as long as the whole run ({total} steps): the learning rate "
                        "never reaches train.lr; set train.warmup as a fraction (e.g. 0.05)")
    every = max(1, round(t.eval_every * total)) if t.eval_every < 1 else int(t.eval_every)
    if t.ema_horizon is not None:
        ema = 1.0 - 1.0 / max(t.ema_horizon * total, 1.0)
    else:
        ema = t.ema
    if ema is not None and 1.0 / (1.0 - ema) > total:
        warnings.append(f"the weight average spans ~{1.0 / (1.0 - ema):.0f} steps but the run has {total}: "
                        "it stays close to the initial weights; set train.ema_horizon as a fraction (e.g. 0.1)")
    return Schedule(total, warmup, every, ema, warnings)
