"""Training speed of one process with T threads against T processes with one thread each (data-parallel).

What it measures
    `attntrain fit CONFIG` for `--steps` optimizer steps, two ways, on the same global batch
    (data.max_tokens): one process with train.threads = `--procs` (intra-op parallelism inside every
    matmul), and `--procs` processes with one thread each (`--nproc`, gloo, DDP: each process runs
    its share of the batch and the gradients are all-reduced every step). Training tokens per second
    come from the run's metrics.jsonl (train records, every `--log-every` steps); the first window
    (start-up, first allocations) is left out and the median of the others kept. Runs alternate
    (one, many, one, many, ...) so that load on a shared machine hits both alike; figures are medians
    over `--repeats` rounds, and the ratio is many / one.

How to run
    python scripts/bench_distributed.py                    # pos_ewt_quick, 2 threads vs 2 processes
    python scripts/bench_distributed.py --config configs/pos_ewt.yaml --steps 60

    Results: a Markdown table on stdout and JSON in bench_results/bench_distributed.json (`--out`).
    Run directories go to a temporary folder and are deleted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from benchkit import REPO, interleaved, markdown_table, thread_env, write_json


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/pos_ewt_quick.yaml", help="shipped config that is trained")
    p.add_argument("--procs", type=int, default=2, help="processes (and the single process's threads)")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps per run")
    p.add_argument("--log-every", type=int, default=10, help="steps per tokens/s window")
    p.add_argument("--repeats", type=int, default=2, help="alternating rounds; figures are medians")
    p.add_argument("--out", default="bench_results/bench_distributed.json", help="JSON results file")
    return p.parse_args()


def train(args, folder: Path, name: str, *, nproc: int, threads: int) -> float:
    """Median training tokens/s of one run (first window left out)."""
    command = [sys.executable, "-m", "attntrain", "fit", args.config, "--set", f"name={name}",
               "--set", f"runs_dir={folder}", "--set", f"train.max_steps={args.steps}",
               "--set", f"train.log_every={args.log_every}", "--set", f"train.eval_every={args.steps}",
               "--set", f"train.threads={threads}", "--set", "train.progress=false", "--set", "train.eval_splits=[dev]"]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    done = subprocess.run(command, cwd=REPO, env=thread_env(threads), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    lines = (folder / name / "metrics.jsonl").read_text().splitlines()
    speeds = [r["tokens_per_s"] for r in map(json.loads, lines) if r["kind"] == "train"]
    return statistics.median(speeds[1:])


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rounds = {"one": itertools.count(), "many": itertools.count()}
        speeds = interleaved({  # one, many, one, many, ...
            "one": lambda: train(args, Path(tmp), f"one{next(rounds['one'])}", nproc=1, threads=args.procs),
            "many": lambda: train(args, Path(tmp), f"many{next(rounds['many'])}", nproc=args.procs, threads=1),
        }, args.repeats, order="fixed")
    one, many = speeds["one"], speeds["many"]
    result = {
        "config": args.config, "steps": args.steps, "procs": args.procs, "repeats": args.repeats,
        "one_process_tokens_per_s": statistics.median(one), "many_processes_tokens_per_s": statistics.median(many),
        "rounds": {"one": one, "many": many}, "ratio_many_over_one": statistics.median(many) / statistics.median(one),
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()},
    }
    write_json(args.out, result)
    print(markdown_table([f"setup ({args.config}, {args.steps} steps)", f"tokens/s (median of {args.repeats})"],
                         [[f"1 process x {args.procs} threads", f"{result['one_process_tokens_per_s']:.0f}"],
                          [f"{args.procs} processes x 1 thread (gloo, DDP)",
                           f"{result['many_processes_tokens_per_s']:.0f}"]]))
    print(f"\nratio (processes / threads): {result['ratio_many_over_one']:.2f}; JSON in {args.out}")


if __name__ == "__main__":
    main()
