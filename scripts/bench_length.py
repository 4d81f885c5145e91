"""Cost of one training step against input length: full attention, windowed attention, CNN, bi-LSTM.

Every encoder is the project's own (`model.encoder.kind` through the ENCODERS table), built from a Config:
2 layers, width 256, 4 heads, feed-forward 1024, dropout 0 (its mask costs every encoder alike and would
only blur the attention figures). Batch 1, fp32, one thread unless --threads. One point = one encoder at
one length T. Each point's memory is measured in a fresh subprocess; the times of all encoders at one T
in one subprocess, interleaved:

  memory  peak resident memory during one forward + backward (VmHWM, reset just before the step
          through /proc/self/clear_refs) minus resident memory just before it (VmRSS). A warm-up step
          at the same T comes first, so one-time kernel buffers are not counted. glibc runs with a fixed
          mmap threshold (64 KiB): every freed tensor goes back to the system, so the resident peak is
          the peak of live tensors (activations, attention tensors, gradients), not heap fragmentation.
  time    median of 3 forward + backward steps after a warm-up step (1 when the warm-up took over
          5 s), with the ordinary allocator, the encoders taking turns step by step so that load
          from other processes on a shared machine falls on all alike.

A point whose time, extrapolated from the encoder's two previous lengths, exceeds --budget seconds per
step is marked skipped (not run). `windowed-dense` is window 128 through the dense (T,T) band mask (the
reference the blockwise path replaced), for comparison.

    python scripts/bench_length.py --threads 1            # T = 256 .. 16384 (~13 min on a shared 2-core machine)
    python scripts/bench_length.py --threads 1 --quick    # T = 256 .. 2048
    python scripts/bench_length.py --max-t 4096 --budget 20
Writes bench_results/bench_length.json and docs/cost_vs_length.png.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

from benchkit import MEMORY_CHILD_ENV, REPO, child_json, markdown_table, peak_mib, pin_threads, thread_env, write_json
LENGTHS = [256, 512, 1024, 2048, 4096, 8192, 16384]
QUICK_MAX = 2048
WINDOW = 128
# name -> (model.encoder overrides, blockwise local attention)
ENCODERS = {
    "full": ({"kind": "transformer"}, True),
    "windowed": ({"kind": "transformer", "attention": {"window": WINDOW}}, True),
    "windowed-dense": ({"kind": "transformer", "attention": {"window": WINDOW}}, False),
    "cnn": ({"kind": "cnn"}, True),
    "bilstm": ({"kind": "rnn", "rnn_cell": "lstm", "bidirectional": True}, True),
}


def build_step(name: str, T: int):
    """The encoder `name` built from a Config, and a function that times one forward + backward at T."""
    import torch

    from attntrain.config import build_config
    from attntrain.model.encoder import ENCODERS as BUILDERS
    from attntrain.registry import lookup

    torch.manual_seed(0)
    overrides, blockwise = ENCODERS[name]
    encoder_cfg = {"num_layers": 2, "width": 256, "num_heads": 4, "ffn_dim": 1024, "dropout": 0.0,
                   "max_len": T, **overrides}
    cfg = build_config({"model": {"encoder": encoder_cfg}}, "bench_length")
    encoder = lookup(BUILDERS, cfg.model.encoder.kind, "model.encoder.kind")(cfg.model.encoder).train()
    if hasattr(encoder, "blockwise"):
        encoder.blockwise = blockwise

    def step() -> float:
        x = torch.randn(1, T, 256, requires_grad=True)  # (B,T,D)
        mask = torch.ones(1, T, dtype=torch.bool)
        start = time.perf_counter()
        encoder(x, mask).square().mean().backward()
        return time.perf_counter() - start

    return step


def measure_memory(name: str, T: int) -> dict:
    """Child process: peak memory of one step of one encoder."""
    step = build_step(name, T)
    step()  # warm-up: one-time kernel buffers and lazy initialisation are not the step's memory
    return {name: {"peak_mib": peak_mib(step)}}


def measure_time(names: list[str], T: int) -> dict:
    """Child process: every encoder at T, their steps interleaved so that load from other processes
    falls on all of them alike; median of 3 rounds (1 for an encoder whose warm-up took over 5 s)."""
    steps = {name: build_step(name, T) for name in names}
    rounds = {name: 3 if steps[name]() < 5.0 else 1 for name in names}  # the warm-up decides
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(3):
        for name in names:
            if r < rounds[name]:
                times[name].append(steps[name]())
    return {name: {"seconds": statistics.median(t), "steps_timed": len(t)} for name, t in times.items()}


def predict(rows: list[dict], T: int) -> float | None:
    """Seconds per step at T from the encoder's last two measured lengths (a power law, exponent 1..2)."""
    done = [r for r in rows if r["status"] == "ok"]
    if not done:
        return None
    last = done[-1]
    exponent = 2.0
    if len(done) >= 2:
        prev = done[-2]
        exponent = math.log(last["seconds"] / prev["seconds"]) / math.log(last["T"] / prev["T"])
        exponent = min(max(exponent, 1.0), 2.0)
    return last["seconds"] * (T / last["T"]) ** exponent


def child(T: int, threads: int, mode: str, names: list[str]) -> dict:
    env = thread_env(threads, **(MEMORY_CHILD_ENV if mode == "memory" else {}))
    return child_json([sys.executable, __file__, "--threads", str(threads), "--child", mode, str(T), *names], env=env)


def run_length(names: list[str], T: int, threads: int) -> list[dict]:
    """One row per encoder at T: time from one shared child, memory from one child each."""
    try:
        found = child(T, threads, "time", names)
    except RuntimeError as error:
        return [{"encoder": name, "T": T, "status": "failed", "error": str(error)} for name in names]
    rows = []
    for name in names:
        row = {"encoder": name, "T": T, "status": "ok", **found[name]}
        try:
            row.update(child(T, threads, "memory", [name])[name])
        except RuntimeError as error:
            row.update(status="failed", error=str(error))
        row["us_per_token"] = row["seconds"] / T * 1e6
        rows.append(row)
    return rows


def table(rows: list[dict], lengths: list[int]) -> str:
    """Markdown: time (s) and peak memory (MiB) per encoder and T, then windowed / full ratios."""
    cell = {(r["encoder"], r["T"]): r for r in rows}
    names = [n for n in ENCODERS if any(r["encoder"] == n for r in rows)]

    def show(name: str, T: int, key: str, fmt: str) -> str:
        r = cell.get((name, T))
        if r is None or r["status"] != "ok":
            return r["status"] if r else "-"
        return format(r[key], fmt)

    lines = []
    for title, key, fmt in [("time of one forward + backward (s)", "seconds", ".3f"),
                            ("time per token (us)", "us_per_token", ".1f"),
                            ("peak memory of the step (MiB)", "peak_mib", ".1f")]:
        lines += [f"{title}:", markdown_table(["T", *names], [[T, *(show(n, T, key, fmt) for n in names)]
                                                             for T in lengths], align="r" * (1 + len(names))), ""]
    ratios = []
    for T in lengths:
        full, local = cell.get(("full", T)), cell.get(("windowed", T))
        if full and local and full["status"] == local["status"] == "ok":
            memory = local["peak_mib"] / full["peak_mib"] if full["peak_mib"] > 0 else float("nan")
            ratios.append([T, f"{local['seconds'] / full['seconds']:.3f}", f"{memory:.3f}"])
        else:
            ratios.append([T, "-", "-"])
    lines += ["windowed / full:", markdown_table(["T", "time", "memory"], ratios, align="rrr")]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in ENCODERS:
        done = [r for r in rows if r["encoder"] == name and r["status"] == "ok"]
        if not done:
            continue
        style = "--" if name == "windowed-dense" else "-"
        lengths = [r["T"] for r in done]
        left.plot(lengths, [r["seconds"] for r in done], style, marker="o", label=name)
        right.plot(lengths, [r["peak_mib"] for r in done], style, marker="o", label=name)
    for axis, label in [(left, "seconds per forward + backward"), (right, "peak memory of the step (MiB)")]:
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("input length T (batch 1)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    left.legend()
    fig.suptitle(f"Encoder cost vs length: 2 layers, width 256, 4 heads, window {WINDOW}, 1 CPU thread")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help=f"lengths up to {QUICK_MAX}")
    parser.add_argument("--max-t", type=int, default=None, help="longest length to measure")
    parser.add_argument("--budget", type=float, default=60.0, help="skip points predicted slower (s per step)")
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=list(ENCODERS))
    parser.add_argument("--out", type=Path, default=REPO / "bench_results" / "bench_length.json")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "cost_vs_length.png")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        pin_threads(args.threads)
        mode, T, *names = args.child
        found = measure_memory(names[0], int(T)) if mode == "memory" else measure_time(names, int(T))
        print(json.dumps(found))
        return
    longest = args.max_t or (QUICK_MAX if args.quick else LENGTHS[-1])
    lengths = [T for T in LENGTHS if T <= longest]
    rows: list[dict] = []
    for T in lengths:
        names = []
        for name in args.encoders:
            guess = predict([r for r in rows if r["encoder"] == name], T)
            if guess is not None and guess > args.budget:
                rows.append({"encoder": name, "T": T, "status": "skipped", "predicted_seconds": guess})
            else:
                names.append(name)
        rows += run_length(names, T, args.threads) if names else []
        for row in rows[-len(args.encoders):]:
            print(json.dumps(row), file=sys.stderr, flush=True)
    rows.sort(key=lambda r: (list(ENCODERS).index(r["encoder"]), r["T"]))
    print(table(rows, lengths))
    write_json(args.out, {"threads": args.threads, "window": WINDOW, "budget_s": args.budget, "rows": rows})
    plot(rows, args.plot)
    shown = [path.relative_to(REPO) if path.is_relative_to(REPO) else path for path in (args.out, args.plot)]
    print(f"\nwrote {shown[0]} and {shown[1]}")


if __name__ == "__main__":
    main()
