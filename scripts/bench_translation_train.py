"""Training throughput of a translation config: target and source tokens per second.

`attntrain fit` logs tokens/s of the source side (the batch `mask`); translation budgets are usually
quoted in target tokens, so this times the trainer's step (forward, loss, backward, gradient clipping,
fused AdamW) on the config's own epoch-0 batches and reports target tokens per second of wall-clock
time and per second of CPU time (on a machine shared with other jobs the CPU-time figure is the one
closer to what the config gets alone). Random initial weights; nothing is written.

    python scripts/bench_translation_train.py configs/multi30k_de_en.yaml --threads 1 --seconds 110
"""

from __future__ import annotations

import argparse
import time

import torch
from benchkit import pin_threads

from attntrain.config import load_config
from attntrain.data import build_task
from attntrain.model import build_model
from attntrain.train.loop import build_optimizer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=110.0, help="stop after the step that passes this time")
    args = p.parse_args()
    pin_threads(args.threads)
    cfg = load_config(args.config, [f"train.threads={args.threads}", "train.device=cpu"])
    task = build_task(cfg)
    task.prepare()
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, task.info()).train()
    optimizer = build_optimizer(model, cfg.train)

    def step(batch: dict) -> None:
        model(batch)["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    order = task.batches("train", shuffle=True, epoch=0)
    for indices in order[:3]:  # warm-up, not timed
        step(task.batch("train", indices))
    target = source = steps = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for indices in order[3:]:
        batch = task.batch("train", indices)
        step(batch)
        steps += 1
        target += int((batch["labels"] != -100).sum())
        source += int(batch["mask"].sum())
        if time.perf_counter() - wall0 > args.seconds:
            break
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(f"{args.config}, {args.threads} thread(s): {steps} steps in {wall:.1f} s ({cpu / wall / args.threads:.0%} of "
          f"the thread(s) busy); target tokens/s {target / wall:,.0f} (per CPU-second {target / cpu:,.0f}), "
          f"source tokens/s {source / wall:,.0f}; {target / steps:,.0f} target tokens/step, "
          f"{steps / wall * 60:.1f} steps/min; {sum(p.numel() for p in model.parameters()):,} parameters")


if __name__ == "__main__":
    main()
