"""Decoding speed of the seq2seq head: greedy and beam search, key/value cache vs recomputing the prefix.

What it measures
    Translating `--sentences` source sentences of a split (encoder + search, batched as `attntrain eval`
    batches them, tokenisation excluded), four ways: greedy and beam `--beam`, each with the decoder's
    key/value cache (one new token per step; cross-attention keys/values of the encoder memory
    projected once) and without it (the whole prefix recomputed every step). Rounds are interleaved
    (cached, uncached, uncached, cached, ...) in one process so that load on a shared machine hits both
    alike; figures are medians over `--repeats` rounds. Every round also checks that the cached and the
    uncached search produced identical tokens.

The model
    By default the model of `--config` (configs/multi30k_de_en.yaml) with random weights (seed 0),
    on the BPE vocabulary learned from the training split. An untrained model does not end sentences,
    so every output runs to its length limit (1.5 x source tokens + 10, ~33 tokens here): a steady,
    slightly long workload. `--run runs/<name>` benchmarks a trained run's best checkpoint instead,
    whose outputs end where the model ends them.

How to run
    python scripts/bench_decode.py --threads 1          # what `make bench-decode` runs
    python scripts/bench_decode.py --run runs/multi30k_de_en --sentences 500

    Results: a Markdown table on stdout and JSON in bench_results/bench_decode.json (`--out`).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from attntrain.config import load_config
from attntrain.data import build_task
from attntrain.io import atomic_write_json
from attntrain.model import build_model
from attntrain.runs import load_run


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/multi30k_de_en.yaml", help="config whose model is benchmarked")
    p.add_argument("--run", default=None, help="a trained run directory (best checkpoint) instead of random weights")
    p.add_argument("--split", default="dev", help="split whose first sentences are translated")
    p.add_argument("--sentences", type=int, default=200, help="sentences translated per measurement")
    p.add_argument("--beam", type=int, default=5, help="beam width of the beam-search rows")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds; figures are medians")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 on a shared machine)")
    p.add_argument("--out", default="bench_results/bench_decode.json", help="JSON results file")
    return p.parse_args()


def load_model(args):
    """(task, model, description) in eval mode, on the CPU."""
    if args.run:
        _, task, model, _ = load_run(args.run, device="cpu")
        return task, model, f"trained run {args.run} (best checkpoint)"
    cfg = load_config(args.config, ["train.device=cpu"])
    task = build_task(cfg)
    task.prepare()
    torch.manual_seed(0)
    model = build_model(cfg, task.info()).eval()
    return task, model, f"random weights (seed 0), model of {args.config}"


@torch.no_grad()
def translate(model, batches: list[dict], *, beam: int, cache: bool) -> tuple[float, list[list[int]]]:
    """Seconds to encode and search every batch, and the output ids."""
    outputs: list[list[int]] = []
    start = time.perf_counter()
    for batch in batches:
        memory = model.features(batch)
        outputs += model.head.generate(memory, batch["mask"], beam=beam, cache=cache)
    return time.perf_counter() - start, outputs


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    task, model, described = load_model(args)
    indices = list(range(min(args.sentences, len(task.split(args.split)))))
    lengths = task.lengths(args.split)
    from attntrain.data.batching import token_batches

    groups = token_batches([lengths[i] for i in indices], task.cfg.data.eval_max_tokens, shuffle=False)
    batches = [task.batch(args.split, [indices[i] for i in group]) for group in groups]
    sources = sum(int(b["mask"].sum()) for b in batches)
    searches = [("greedy", 1), (f"beam {args.beam}", args.beam)]
    times: dict[tuple[str, bool], list[float]] = {(name, c): [] for name, _ in searches for c in (True, False)}
    tokens: dict[str, int] = {}
    identical = True
    translate(model, batches[:1], beam=1, cache=True)  # warm-up
    for round_ in range(args.repeats):
        for name, beam in searches:
            order = (True, False) if round_ % 2 == 0 else (False, True)
            results = {}
            for cache in order:
                seconds, results[cache] = translate(model, batches, beam=beam, cache=cache)
                times[name, cache].append(seconds)
            identical &= results[True] == results[False]
            tokens[name] = sum(len(ids) for ids in results[True])
        print(f"round {round_ + 1}/{args.repeats} done", flush=True)

    rows = []
    for name, _ in searches:
        cached, uncached = (statistics.median(times[name, c]) for c in (True, False))
        for cache, seconds in ((True, cached), (False, uncached)):
            rows.append({"search": name, "cache": cache, "seconds": seconds,
                         "sentences_per_s": len(indices) / seconds, "tokens_per_s": tokens[name] / seconds,
                         "speedup_vs_uncached": uncached / seconds})
    print(f"\n{described}; {len(indices)} {args.split} sentences ({sources} source tokens), "
          f"{args.threads} thread(s), medians of {args.repeats} rounds; cached == uncached tokens: {identical}\n")
    print("| search | key/value cache | sentences/s | output tokens/s | seconds | cached / uncached |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['search']} | {'yes' if r['cache'] else 'no (recompute prefix)'} | {r['sentences_per_s']:.1f} "
              f"| {r['tokens_per_s']:.0f} | {r['seconds']:.2f} | {r['speedup_vs_uncached']:.2f}x |")
    result = {"model": described, "split": args.split, "sentences": len(indices), "source_tokens": sources,
              "output_tokens": tokens, "threads": args.threads, "repeats": args.repeats, "identical_tokens": identical,
              "rows": rows, "times": {f"{k[0]} cache={k[1]}": v for k, v in times.items()},
              "parameters": sum(p.numel() for p in model.parameters()),
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "date": time.strftime("%Y-%m-%d %H:%M")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result)
    print(f"\nwrote {args.out}")
    if not identical:
        raise SystemExit("cached and uncached search disagree")


if __name__ == "__main__":
    main()
