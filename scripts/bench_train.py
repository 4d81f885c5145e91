"""Training throughput: attntrain's Transformer encoder vs Hugging Face BertForTokenClassification.

What it measures
    Full training steps (forward, loss, backward, fused AdamW step, zero_grad) in fp32 on the CPU,
    for three models of equal size trained on the same token batch:

      * attntrain   - built through attntrain's own config + `build_model`, attention via SDPA
      * bert        - transformers' BertForTokenClassification, attn_implementation="sdpa"
      * attntrain-ref - the same attntrain model with `MultiHeadAttention.fast = False` on every
                        attention module, i.e. the explicit softmax(QK^T / sqrt(E)) V path

    Throughput is padded tokens per second (B x T per step). BERT computes every position, padding
    included; attntrain's feed-forward layers skip padded positions when a batch has >= 10% padding
    (attntrain/model/encoder.py), which this batch has (~25%: rows of T/2..T tokens); `--no-padding`
    makes every row full length, so all models compute the same positions. Each of `--repeats` rounds times `--steps` steps of every
    model, interleaved step by step (A B R A B R ..., order reversed every other round; or in
    blocks with `--interleave block`), all in one process, so drift of a shared machine hits every
    model alike; the reported figures are medians over the rounds. A (2048x2048)@(2048x2048) fp32
    matmul is timed in every round too, giving the machine's matmul GFLOP/s under the same
    conditions and each model's achieved fraction of it.

    Ratios are attntrain / other throughput (>1: attntrain faster). "median per-round ratio" takes
    the ratio within each round first (both blocks of a round share one stretch of time) and is
    the figure least moved by load changing between rounds.

How to run
    . .venv/bin/activate
    python scripts/bench_train.py                         # defaults: 4 layers, width 256, 32x128
    python scripts/bench_train.py --steps 3 --repeats 2   # quick check (1-2 minutes on 2 cores)
    python scripts/bench_train.py --profile               # + torch.profiler top ops per model
    python scripts/bench_train.py --threads 1             # on a machine other jobs are using
    python scripts/bench_train.py --dropout 0             # compare without any dropout
    python scripts/bench_train.py --no-padding            # rows all full length: no padding to skip

    --threads 1 matters on a shared machine: with other processes busy, each multi-threaded op
    waits for the busy cores at its OpenMP barrier (see `warn_if_shared`).

    Results: a Markdown table on stdout and JSON in bench_results/bench_train.json (`--out`).

Known architectural differences that remain (both models as their libraries define them)
    * attntrain is pre-norm with a final LayerNorm and a Linear projection from the word vectors to
      the model width; BERT is post-norm with a LayerNorm on the embeddings and token-type embeddings.
    * attntrain draws its dropout masks with its own byte-mask generator (attntrain/model/dropout.py);
      BERT uses nn.Dropout. Both drop at the same places (embeddings, attention output, FFN output,
      classifier); `--dropout 0` removes the difference.
    * BERT's SDPA call gets a (B,1,T,T) bool mask from transformers' mask utilities; attntrain passes
      a (B,1,1,T) key-padding mask. Both reach SDPA's flash CPU kernel (tests/test_flash_kernel.py).
    * attntrain's feed-forward layers skip padded positions (see "Throughput" above).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from benchkit import interleaved, markdown_table, pin_threads, ratio_median, round_order, timed, write_json
from torch import nn

from attntrain.config import build_config
from attntrain.model import build_model
from attntrain.model.attention import MultiHeadAttention

IGNORE = -100  # label id at padding: both attntrain's head and HF's CrossEntropyLoss skip it
NUM_LABELS = 17  # UPOS tag set size
PAD = 0  # padding id in attntrain vocabularies; BERT's pad_token_id is set to match


# ---------------------------------------------------------------------------------------------
# Setup


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=4, help="encoder blocks")
    p.add_argument("--width", type=int, default=256, help="model width (BERT hidden_size)")
    p.add_argument("--heads", type=int, default=4, help="attention heads")
    p.add_argument("--ffn", type=int, default=1024, help="feed-forward width (BERT intermediate_size)")
    p.add_argument("--batch", type=int, default=32, help="sequences per batch")
    p.add_argument("--seq-len", type=int, default=128, help="padded tokens per sequence")
    p.add_argument("--vocab", type=int, default=20000, help="word vocabulary size")
    p.add_argument("--dropout", type=float, default=0.1, help="residual/embedding/classifier dropout")
    p.add_argument("--no-padding", action="store_true", help="every row full length (default: T/2..T tokens)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (same for all)")
    p.add_argument("--steps", type=int, default=5, help="training steps per timed block")
    # One warm-up step pays the one-off costs (AdamW state, allocator growth, kernel selection).
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per model before timing")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds of timed blocks")
    p.add_argument("--interleave", choices=["step", "block"], default="step",
                   help="models take turns every step (default) or every block of --steps")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-reference", action="store_true", help="skip attntrain's explicit attention path")
    p.add_argument("--profile", action="store_true", help="also profile a few steps of each model (top ops)")
    p.add_argument("--out", type=Path, default=Path("bench_results/bench_train.json"))
    return p.parse_args()


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_model": cpu,
        "logical_cpus": os.cpu_count(),
    }


def warn_if_shared(threads: int) -> None:
    """Multi-threaded torch ops end in OpenMP barriers: if another process holds a core, every
    barrier waits for a scheduler time slice. Measured here with a 2-thread training job running
    alongside: fused AdamW over 64 tensors took ~500 ms with 2 threads and 7 ms with 1, and whole
    training steps ran ~3x faster with --threads 1. Ratios stay meaningful either way (all models
    suffer), but the achieved fraction of the matmul peak does not."""
    load = os.getloadavg()[0]
    if threads > 1 and load > 0.5:
        print(f"note: load average {load:.1f} on {os.cpu_count()} CPUs before starting; with {threads} threads "
              f"per op, other busy processes make every parallel region wait: consider --threads 1\n")


def make_batch(args, generator: torch.Generator) -> dict:
    """One fixed batch of token ids with a padding mask: row 0 is full length (so T really is
    --seq-len), the others are between half and full length, like a length-bucketed batch."""
    B, T = args.batch, args.seq_len
    lengths = torch.randint(T // 2, T + 1, (B,), generator=generator)
    lengths[0] = T
    if args.no_padding:
        lengths[:] = T
    mask = torch.arange(T)[None, :] < lengths[:, None]  # (B,T) bool, True = real token
    # Ids 0 (pad) and 1 (unk) are reserved in attntrain vocabularies; real tokens avoid them.
    words = torch.randint(2, args.vocab, (B, T), generator=generator).masked_fill(~mask, PAD)
    labels = torch.randint(0, NUM_LABELS, (B, T), generator=generator).masked_fill(~mask, IGNORE)
    return {"words": words, "mask": mask, "labels": labels}


def build_attntrain(args) -> nn.Module:
    """attntrain's model through its own config and builder, configured to mirror BERT."""
    raw = {
        "seed": args.seed,
        "model": {
            # word_dim = width: the word vector already has the model width (BERT has no
            # projection; attntrain always has one, see the parameter comparison).
            "embed": {"kind": "learned", "word_dim": args.width, "word_dropout": 0.0, "char_dim": 0,
                      "dropout": args.dropout},
            "encoder": {
                "kind": "transformer",
                "num_layers": args.layers,
                "width": args.width,
                "num_heads": args.heads,
                "ffn_dim": args.ffn,
                "dropout": args.dropout,
                "position": "learned",  # BERT has a learned position table
                "max_len": max_positions(args),
                # Attention dropout 0 in both: SDPA keeps its fast kernel only without it.
                "attention": {"score": "dot", "normalize": "softmax", "dropout": 0.0},
            },
            # BertForTokenClassification applies hidden_dropout_prob before its classifier.
            "head": {"kind": "tagging", "dropout": args.dropout, "label_smoothing": 0.0},
        },
        "train": {"lr": args.lr, "threads": args.threads, "device": "cpu", "amp": "off"},
    }
    cfg = build_config(raw, "bench")
    info = {"input": "text", "num_words": args.vocab, "num_chars": 100, "num_labels": NUM_LABELS}
    return build_model(cfg, info)


def build_bert(args) -> nn.Module:
    from transformers import BertConfig, BertForTokenClassification

    config = BertConfig(
        vocab_size=args.vocab,
        hidden_size=args.width,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=args.ffn,
        hidden_act="gelu",  # exact (erf) GELU, the same as attntrain's nn.GELU()
        hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=max_positions(args),
        pad_token_id=PAD,
        num_labels=NUM_LABELS,
        attn_implementation="sdpa",  # transformers' SDPA attention, the counterpart of attntrain's
    )
    model = BertForTokenClassification(config)
    # BertForTokenClassification builds BertModel(add_pooling_layer=False): no pooler parameters.
    assert model.bert.pooler is None, "BERT pooler present: parameter counts would not be comparable"
    assert model.config._attn_implementation == "sdpa", model.config._attn_implementation
    return model


def max_positions(args) -> int:
    return max(512, args.seq_len)  # BERT's usual 512, more if the benchmark asks for longer rows


def use_reference_attention(model: nn.Module) -> int:
    """Force attntrain's explicit attention path; returns how many modules were switched."""
    modules = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    for m in modules:
        m.fast = False
    return len(modules)


# ---------------------------------------------------------------------------------------------
# Sizes and FLOPs


def parameter_counts(model: nn.Module) -> dict:
    """Total, lookup-table (nn.Embedding) and the rest; only the rest does matmul work per token."""
    total = sum(p.numel() for p in model.parameters())
    tables = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    return {"total": total, "embedding": tables, "non_embedding": total - tables}


def flops_per_step(non_embedding: int, args) -> float:
    """Approximate FLOPs of one training step.

    FLOPs = 6 * N * B * T  +  12 * L * B * T^2 * D
      6 * N * tokens: every non-embedding weight does one multiply-add (2 FLOPs) per token forward
        and twice that backward (gradients w.r.t. inputs and weights) -> 6 FLOPs per weight per token.
      12 * L * B * T^2 * D: attention's QK^T and weights @ V are each 2 * B * T * T * D FLOPs per
        layer forward (summed over heads), x3 for forward + backward.
    Embedding lookups, norms, activations, dropout and the optimizer are left out (memory-bound).
    Padded positions count. attntrain skips them in its feed-forward layers, so with padding its
    GFLOP/s and "% of matmul" are effective figures (work it did not need to do counts as done): take
    the fraction of the matmul peak from a `--no-padding` run.
    """
    tokens = args.batch * args.seq_len
    attention = 12 * args.layers * args.batch * args.seq_len**2 * args.width
    return 6.0 * non_embedding * tokens + attention


def matmul_gflops(n: int = 2048, tries: int = 3) -> float:
    """fp32 GFLOP/s of an (n x n) @ (n x n) matmul: best of `tries` (peak under current load)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # first call pays for allocation / thread-pool wake-up
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


# ---------------------------------------------------------------------------------------------
# Training steps


class Runner:
    """One model + its optimizer + a step function over the shared batch."""

    def __init__(self, name: str, model: nn.Module, forward: Callable[[nn.Module], torch.Tensor], lr: float):
        self.name = name
        self.model = model.train()
        self.forward = forward  # model -> loss
        # Same optimizer for every model: plain AdamW over all parameters, fused CPU kernel.
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
        self.seconds: list[float] = []  # one entry per round: the sum of its timed steps
        self.step_seconds: list[list[float]] = []  # per round, every step's time

    def step(self) -> torch.Tensor:
        loss = self.forward(self.model)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def timed_step(self) -> float:
        elapsed, loss = timed(self.step)
        # Checked after timing: a diverged model (nan) would make a throughput figure meaningless.
        if not torch.isfinite(loss):
            raise RuntimeError(f"{self.name}: non-finite loss {loss.item()}")
        return elapsed


def attntrain_forward(batch: dict) -> Callable[[nn.Module], torch.Tensor]:
    return lambda model: model(batch)["loss"]


def bert_forward(batch: dict) -> Callable[[nn.Module], torch.Tensor]:
    inputs = {"input_ids": batch["words"], "attention_mask": batch["mask"].long(), "labels": batch["labels"]}
    return lambda model: model(**inputs).loss


@torch.no_grad()
def check_reference_matches(fast: nn.Module, reference: nn.Module, batch: dict) -> float:
    """The two attntrain paths must compute the same function (eval mode: no dropout)."""
    fast.eval()
    reference.eval()
    a, b = fast(batch)["loss"].item(), reference(batch)["loss"].item()
    fast.train()
    reference.train()
    if abs(a - b) > 1e-4 * max(1.0, abs(a)):
        raise RuntimeError(f"SDPA and reference attention disagree: loss {a} vs {b}")
    return abs(a - b)


# ---------------------------------------------------------------------------------------------
# Benchmark


def run_rounds(runners: list[Runner], args) -> list[float]:
    """Warm up, then interleave timed steps; returns the matmul GFLOP/s measured each round.

    The machine is shared (2 cores, other jobs), so its speed drifts on a scale of seconds. With
    --interleave step (default) the models take turns every step (A B R A B R ...), so each round's
    blocks cover the same stretch of time; --interleave block runs each model's --steps in a row.
    """
    for r in runners:
        for _ in range(args.warmup):
            r.step()
    matmul = []
    for i in range(args.repeats):
        # Alternate the order (A B R, R B A, ...) so no model always runs right after the same one.
        order = round_order(runners, i)
        matmul.append(matmul_gflops())
        if args.interleave == "step":  # within the round: A B R A B R ..., --steps times
            times = interleaved({r.name: r.timed_step for r in order}, args.steps, order="fixed")
        else:
            times = {}
            for r in order:
                times[r.name] = [r.timed_step() for _ in range(args.steps)]
        for r in runners:
            r.step_seconds.append(times[r.name])
            r.seconds.append(sum(times[r.name]))
        line = "  ".join(f"{r.name} {args.steps * tokens(args) / r.seconds[-1]:,.0f} tok/s" for r in runners)
        print(f"round {i + 1}/{args.repeats}: matmul {matmul[-1]:.0f} GFLOP/s  {line}", flush=True)
    return matmul


def tokens(args) -> int:
    return args.batch * args.seq_len


def summarize(runners: list[Runner], counts: dict, matmul: list[float], args) -> dict:
    peak = statistics.median(matmul)
    out = {}
    for r in runners:
        rates = [args.steps * tokens(args) / s for s in r.seconds]
        flops = flops_per_step(counts[r.name]["non_embedding"], args)
        gflops = [args.steps * flops / s / 1e9 for s in r.seconds]
        out[r.name] = {
            "round_seconds": r.seconds,
            "step_seconds": r.step_seconds,
            "tokens_per_s": rates,
            "median_tokens_per_s": statistics.median(rates),
            "median_ms_per_step": 1000 * statistics.median(r.seconds) / args.steps,
            "flops_per_step": flops,
            "median_gflops": statistics.median(gflops),
            "fraction_of_matmul": statistics.median(gflops) / peak,
        }
    return out


def ratio(results: dict, a: str, b: str) -> dict:
    """a / b throughput: ratio of medians (headline) and the per-round ratios (shows the noise)."""
    per_round = [x / y for x, y in zip(results[a]["tokens_per_s"], results[b]["tokens_per_s"])]
    return {
        "ratio_of_medians": results[a]["median_tokens_per_s"] / results[b]["median_tokens_per_s"],
        "per_round": per_round,
        "median_per_round": ratio_median(results[a]["tokens_per_s"], results[b]["tokens_per_s"]),
    }


def print_tables(results: dict, counts: dict, ratios: dict, matmul: list[float], args) -> None:
    peak = statistics.median(matmul)
    print(f"\n{args.layers} layers, width {args.width}, {args.heads} heads, FFN {args.ffn}, "
          f"batch {args.batch}x{args.seq_len}, vocab {args.vocab}, dropout {args.dropout}, fp32, "
          f"{torch.get_num_threads()} threads; {args.repeats} rounds x {args.steps} steps, interleaved per {args.interleave}\n")
    print(markdown_table(["model", "params", "non-emb params", "median tokens/s (min-max)", "ms/step", "GFLOP/s",
                          "% of matmul"],
                         [[name, f"{counts[name]['total']:,}", f"{counts[name]['non_embedding']:,}",
                           f"{r['median_tokens_per_s']:,.0f} ({min(r['tokens_per_s']):,.0f}-{max(r['tokens_per_s']):,.0f})",
                           f"{r['median_ms_per_step']:.0f}", f"{r['median_gflops']:.0f}",
                           f"{100 * r['fraction_of_matmul']:.0f}%"] for name, r in results.items()], align="lrrrrrr"))
    print(f"\nfp32 matmul 2048^3: median {peak:.0f} GFLOP/s (rounds: {', '.join(f'{g:.0f}' for g in matmul)})\n")
    meanings = {
        "attntrain / bert": ">1: attntrain trains faster than BERT",
        "attntrain / attntrain-ref": ">1: what SDPA buys over the explicit path",
    }
    print(markdown_table(["comparison", "ratio of medians", "median per-round ratio", "per-round ratios", "meaning"],
                         [[key, f"{q['ratio_of_medians']:.3f}", f"{q['median_per_round']:.3f}",
                           ", ".join(f"{x:.3f}" for x in q["per_round"]), meanings.get(key, "")]
                          for key, q in ratios.items()], align="lrrll"))


def explain_parameters(counts: dict, args) -> dict:
    """Parameter difference attntrain - BERT, and the parts that account for it."""
    D = args.width
    diff = counts["attntrain"]["total"] - counts["bert"]["total"]
    parts = {
        "attntrain embed.project Linear(D, D)": D * D + D,
        "BERT token_type_embeddings (2 x D)": -2 * D,
        # attntrain's final LayerNorm vs BERT's embedding LayerNorm: same size, they cancel.
        "attntrain final LayerNorm vs BERT embeddings.LayerNorm": 0,
    }
    explained = sum(parts.values())
    print(f"\nparameters: attntrain {counts['attntrain']['total']:,} vs BERT {counts['bert']['total']:,} "
          f"(difference {diff:+,}, {100 * diff / counts['bert']['total']:+.2f}%); BERT pooler: none "
          f"(BertForTokenClassification uses add_pooling_layer=False)")
    for k, v in parts.items():
        print(f"  {v:+,}  {k}")
    print(f"  = {explained:+,} explained, {diff - explained:+,} unexplained")
    return {"difference": diff, "parts": parts, "unexplained": diff - explained}


def profile_steps(runners: list[Runner], steps: int, rows: int = 15) -> dict:
    """Top operators by self CPU time over `steps` training steps of each model.

    Several steps, not one: on a shared machine a single step's per-op times swing by 2x or more.
    """
    from torch.profiler import ProfilerActivity, profile

    tables = {}
    for r in runners:
        r.step()  # warm
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                r.step()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
        print(f"\n=== profile: {r.name} ({steps} steps; divide times by {steps} for per-step) ===\n{table}")
        tables[r.name] = table
    return tables


def main() -> None:
    args = parse_args()
    if args.threads:
        pin_threads(args.threads)
    load_at_start = list(os.getloadavg())
    warn_if_shared(torch.get_num_threads())
    torch.manual_seed(args.seed)
    batch = make_batch(args, torch.Generator().manual_seed(args.seed))

    attntrain = build_attntrain(args)
    bert = build_bert(args)
    runners = [Runner("attntrain", attntrain, attntrain_forward(batch), args.lr),
               Runner("bert", bert, bert_forward(batch), args.lr)]
    mismatch = None
    if not args.no_reference:
        reference = copy.deepcopy(attntrain)  # same weights, so the two paths can be checked equal
        switched = use_reference_attention(reference)
        mismatch = check_reference_matches(attntrain, reference, batch)
        print(f"attntrain-ref: {switched} attention modules on the explicit path; "
              f"eval loss differs from SDPA by {mismatch:.2e}")
        runners.append(Runner("attntrain-ref", reference, attntrain_forward(batch), args.lr))

    counts = {r.name: parameter_counts(r.model) for r in runners}
    param_notes = explain_parameters(counts, args)
    print()

    matmul = run_rounds(runners, args)
    results = summarize(runners, counts, matmul, args)
    ratios = {"attntrain / bert": ratio(results, "attntrain", "bert")}
    if not args.no_reference:
        ratios["attntrain / attntrain-ref"] = ratio(results, "attntrain", "attntrain-ref")
    print_tables(results, counts, ratios, matmul, args)

    profiles = profile_steps(runners, max(2, args.steps)) if args.profile else None

    report = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {**machine_info(), "loadavg_at_start": load_at_start, "loadavg_at_end": list(os.getloadavg())},
        "batch": {"padded_tokens": tokens(args), "real_tokens": int(batch["mask"].sum()),
                  "lengths": batch["mask"].sum(-1).tolist()},
        "notes": {
            "throughput": "padded tokens (B x T) per second; one step = forward + loss + backward + "
                          "fused AdamW step + zero_grad, fp32",
            "flops_per_step": "6 * non_embedding_params * B * T + 12 * layers * B * T^2 * width",
            "bert_attention": "attn_implementation='sdpa', attention_probs_dropout_prob=0.0",
            "reference_check_abs_loss_diff": mismatch,
        },
        "parameters": counts,
        "parameter_difference": param_notes,
        "matmul_gflops_per_round": matmul,
        "matmul_gflops_median": statistics.median(matmul),
        "results": results,
        "ratios": ratios,
    }
    if profiles:
        report["profiles"] = profiles
    print(f"\nwrote {write_json(args.out, report)}")


if __name__ == "__main__":
    main()
