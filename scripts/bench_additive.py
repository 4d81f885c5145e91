"""Additive scoring against dot scoring: time and peak memory of a training step as the input grows.

Additive scoring, alpha = w . tanh(q + k), has a (B,H,T,S,E) hidden where dot scoring has (B,H,T,S).
`model.encoder.attention.additive_chunk_mb` bounds it: beyond the budget the queries are scored in
chunks and backward recomputes each chunk (attntrain/model/scores.py, `ChunkedAdditive`).

Every variant is the project's transformer encoder built from an EncoderConfig: 2 layers, width 256,
4 heads (E = 64), feed-forward 1024, dropout 0, softmax, batch 1, fp32, one thread unless --threads:

  dot               dot scoring through SDPA (the fast kernel)
  additive-whole    additive with an unbounded budget: the whole hidden, as before chunking existed
  additive-256      additive with the default budget (256 MB)
  additive-64       additive with a 64 MB budget

  time    median over --repeats forward + backward steps after a warm-up step, the variants taking
          turns step by step in one process, so load from other processes falls on all alike.
  memory  in a fresh subprocess per point: peak resident memory during one forward + backward
          (VmHWM, reset just before the step through /proc/self/clear_refs) minus the resident
          memory just before it, after a warm-up step; glibc returns every block >= 64 KiB on free
          (fixed mmap threshold), so the peak is that of live tensors.

    python scripts/bench_additive.py --threads 1            # T = 128 .. 2048
    python scripts/bench_additive.py --threads 1 --quick    # T = 128 .. 512
    python scripts/bench_additive.py --threads 1 --lengths 128,256,512,768 --repeats 2
Writes a Markdown table to stdout and bench_results/bench_additive.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from benchkit import (MEMORY_CHILD_ENV, REPO, child_json, interleaved, markdown_table, peak_mib, pin_threads,
                      thread_env, today, write_json)
LENGTHS = [128, 256, 512, 1024, 2048]
QUICK_MAX = 512
WHOLE_MAX = 1024  # the whole hidden at T = 2048 is 4 GiB per layer: more than a shared 2-core machine has spare
# name -> model.encoder.attention settings
VARIANTS = {
    "dot": {"score": "dot"},
    "additive-whole": {"score": "additive", "additive_chunk_mb": 1e9},
    "additive-256": {"score": "additive", "additive_chunk_mb": 256},
    "additive-64": {"score": "additive", "additive_chunk_mb": 64},
}


def build_step(name: str, T: int):
    """A closure running one forward + backward of the variant's encoder on a (1,T,256) input."""
    import torch

    from attntrain.config import EncoderConfig
    from attntrain.model.encoder import build_transformer

    torch.manual_seed(0)
    cfg = EncoderConfig(num_layers=2, width=256, num_heads=4, ffn_dim=1024, dropout=0.0, max_len=max(T, 512),
                        attention={"normalize": "softmax", **VARIANTS[name]})
    encoder = build_transformer(cfg).train()
    x = torch.randn(1, T, 256)
    mask = torch.ones(1, T, dtype=torch.bool)

    def step() -> float:
        start = time.perf_counter()
        encoder(x, mask).square().mean().backward()
        encoder.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    return step


def child(args: argparse.Namespace) -> dict:
    pin_threads(args.threads)
    names = args.names.split(",")
    steps = {name: build_step(name, args.t) for name in names}
    if args.mode == "memory":
        (name,) = names
        steps[name]()  # warm-up
        return {name: {"peak_mib": peak_mib(steps[name])}}
    times = interleaved(steps, args.repeats, warmup=True)
    return {name: {"seconds": statistics.median(t), "all_seconds": t} for name, t in times.items()}


def run_child(mode: str, names: list[str], T: int, args: argparse.Namespace) -> dict:
    env = thread_env(args.threads, PYTHONPATH=str(REPO), **(MEMORY_CHILD_ENV if mode == "memory" else {}))
    command = [sys.executable, __file__, "--child", mode, "--names", ",".join(names), "--t", str(T),
               "--threads", str(args.threads), "--repeats", str(args.repeats)]
    return child_json(command, env=env, check=True)


def table(rows: dict, lengths: list[int]) -> str:
    """Markdown: seconds and MiB per variant and T, then each additive variant over dot."""
    names = list(VARIANTS)
    absolute = []
    for T in lengths:
        cells = []
        for key, fmt in (("seconds", ".3f"), ("peak_mib", ".0f")):
            for name in names:
                value = rows.get(str(T), {}).get(name, {}).get(key)
                cells.append("skipped" if value is None else format(value, fmt))
        absolute.append([T, *cells])
    relative = []
    for T in lengths:
        point, cells = rows.get(str(T), {}), []
        for name in names[1:]:
            for key in ("seconds", "peak_mib"):
                a, b = point.get(name, {}).get(key), point.get("dot", {}).get(key)
                cells.append("-" if a is None or not b else f"{a / b:.1f}x")
        relative.append([T, *cells])
    return (markdown_table(["T", *(f"{n} s" for n in names), *(f"{n} MiB" for n in names)], absolute,
                           align="r" * (1 + 2 * len(names))) + "\n\n" +
            markdown_table(["T", *(f"{n} / dot {what}" for n in names[1:] for what in ("time", "memory"))], relative,
                           align="r" * (1 + 2 * (len(names) - 1))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help=f"T <= {QUICK_MAX}")
    p.add_argument("--lengths", help="comma-separated T values instead of " + ",".join(map(str, LENGTHS)))
    p.add_argument("--repeats", type=int, default=3, help="timed steps per variant and T")
    p.add_argument("--out", type=Path, default=REPO / "bench_results" / "bench_additive.json")
    p.add_argument("--child", choices=["time", "memory"], help=argparse.SUPPRESS)
    p.add_argument("--names", help=argparse.SUPPRESS)
    p.add_argument("--t", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.mode = args.child
        print(json.dumps(child(args)))
        return
    lengths = [int(T) for T in args.lengths.split(",")] if args.lengths else LENGTHS
    lengths = [T for T in lengths if not args.quick or T <= QUICK_MAX]
    rows = {}
    for T in lengths:
        names = [n for n in VARIANTS if n != "additive-whole" or T <= WHOLE_MAX]
        point = run_child("time", names, T, args)
        for name in names:
            point[name].update(run_child("memory", [name], T, args)[name])
        rows[str(T)] = point
        print(f"T={T}: " + "  ".join(f"{n} {v['seconds']:.3f} s {v['peak_mib']:.0f} MiB" for n, v in point.items()),
              flush=True)
    text = table(rows, lengths)
    print("\n2 layers, width 256, 4 heads, FFN 1024, batch 1, fp32, softmax, forward + backward, "
          f"{args.threads} thread(s); additive-whole skipped above T = {WHOLE_MAX}\n\n{text}")
    write_json(args.out, {"command": " ".join(sys.argv), "date": today(), "threads": args.threads, "rows": rows,
                          "table": text})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
