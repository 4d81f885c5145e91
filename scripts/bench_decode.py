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

Against Hugging Face (`--hf`, needs transformers: pip install -e '.[bench]')
    A second table compares the cached search with `generate` of a randomly initialised
    `MarianMTModel` of equal size (the config's layers, width, heads and FFN width, the same 8k joint
    vocabulary tied across encoder, decoder and output, sinusoidal positions; parameters within 1%),
    with its key/value cache, on the same batches of source ids. Both sides decode exactly
    `--length` steps per sentence: Hugging Face with min_new_tokens = max_new_tokens, attntrain with
    `generate(..., length=N)` (</s> banned before the last step). attntrain runs twice: with its
    softmax over the whole 8k table, as Marian's (the like-for-like row), and with the target-side
    columns only (what the config trains and decodes with). Rounds are interleaved; a ratio is the
    median over rounds of (Hugging Face seconds / attntrain seconds) within the round.

How to run
    python scripts/bench_decode.py --threads 1          # what `make bench-decode` runs
    python scripts/bench_decode.py --threads 1 --hf     # + the Hugging Face table (`make bench`)
    python scripts/bench_decode.py --run runs/multi30k_de_en --sentences 500

    Results: a Markdown table on stdout and JSON in bench_results/bench_decode.json (`--out`).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from benchkit import interleaved, markdown_table, pin_threads, ratio_median, timed, write_json

from attntrain.config import load_config
from attntrain.data import build_task
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
    p.add_argument("--hf", action="store_true", help="also compare with Hugging Face generate (MarianMTModel)")
    p.add_argument("--hf-only", action="store_true", help="only the Hugging Face comparison (implies --hf)")
    p.add_argument("--length", type=int, default=30, help="decoding steps per sentence in the --hf comparison")
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
def translate(model, batches: list[dict], *, beam: int, cache: bool = True,
              length: int | None = None) -> tuple[float, list[list[int]]]:
    """Seconds to encode and search every batch, and the output ids (`length`: that many steps per sentence)."""
    def run() -> list[list[int]]:
        outputs: list[list[int]] = []
        for batch in batches:
            memory = model.features(batch)
            outputs += model.head.generate(memory, batch["mask"], beam=beam, cache=cache, length=length)
        return outputs

    return timed(run)


# ---- against Hugging Face generate --------------------------------------------------------------
def marian_like(cfg, info: dict):
    """A randomly initialised MarianMTModel of the attntrain model's size (joint vocabulary, tied tables)."""
    from transformers import MarianConfig, MarianMTModel

    from attntrain.data.inputs.subword import BOS, EOS, PAD

    encoder, decoder = cfg.model.encoder, cfg.model.head.decoder
    config = MarianConfig(vocab_size=info["num_targets"], d_model=encoder.width, encoder_layers=encoder.num_layers,
                          decoder_layers=decoder.num_layers, encoder_attention_heads=encoder.num_heads,
                          decoder_attention_heads=encoder.num_heads, encoder_ffn_dim=encoder.ffn_dim,
                          decoder_ffn_dim=decoder.ffn_dim, max_position_embeddings=encoder.max_len,
                          activation_function="gelu", scale_embedding=True, pad_token_id=PAD, eos_token_id=EOS,
                          bos_token_id=BOS, decoder_start_token_id=BOS, forced_eos_token_id=None,
                          share_encoder_decoder_embeddings=True, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = MarianMTModel(config).eval()
    model.config._attn_implementation = "sdpa"
    return model


@torch.no_grad()
def translate_hf(model, batches: list[dict], *, beam: int, length: int) -> tuple[float, list[list[int]]]:
    """Seconds of `generate` over every batch (exactly `length` new tokens per sentence) and the new ids."""
    outputs: list[list[int]] = []
    start = time.perf_counter()
    for batch in batches:
        ids = model.generate(input_ids=batch["words"], attention_mask=batch["mask"].long(), num_beams=beam,
                             do_sample=False, max_new_tokens=length, min_new_tokens=length, length_penalty=1.0,
                             early_stopping=False, num_return_sequences=1)
        outputs += ids[:, 1:].tolist()  # without the decoder start token
    return time.perf_counter() - start, outputs


def compare_hf(args, task, batches: list[dict]) -> dict:
    """Interleaved rounds: attntrain (whole-table softmax), attntrain (target-side softmax), HF generate."""
    cfg = load_config(args.config, ["train.device=cpu"])
    info = task.info()
    torch.manual_seed(0)
    whole = build_model(cfg, {**info, "output_ids": None}).eval()  # softmax over all columns, as Marian's
    torch.manual_seed(0)
    target_side = build_model(cfg, info).eval()
    marian = marian_like(cfg, info)
    systems = {"attntrain, softmax over the whole table": lambda beam: translate(whole, batches, beam=beam, length=args.length),
               "attntrain, target-side softmax": lambda beam: translate(target_side, batches, beam=beam, length=args.length),
               "Hugging Face MarianMTModel.generate": lambda beam: translate_hf(marian, batches, beam=beam,
                                                                              length=args.length)}
    columns = {"attntrain, softmax over the whole table": len(whole.head.output_ids),
               "attntrain, target-side softmax": len(target_side.head.output_ids),
               "Hugging Face MarianMTModel.generate": marian.config.vocab_size}
    names = list(systems)
    searches = [("greedy", 1), (f"beam {args.beam}", args.beam)]
    for name in names:  # warm-up
        systems[name](1)
    variants = {(name, search): (lambda name=name, beam=beam: systems[name](beam))
                for search, beam in searches for name in names}
    done = interleaved(variants, args.repeats, order="rotate",
                       on_round=lambda r, _: print(f"hf round {r + 1}/{args.repeats} done", flush=True))
    times = {key: [seconds for seconds, _ in runs] for key, runs in done.items()}
    tokens = {key: sum(len(ids) for ids in runs[-1][1]) for key, runs in done.items()}
    sentences = sum(len(b["indices"]) for b in batches)
    rows = []
    for search, _ in searches:
        reference = times["Hugging Face MarianMTModel.generate", search]
        for name in names:
            seconds = statistics.median(times[name, search])
            # Median of the rounds' ratios: each pairs runs done a few seconds apart, under the same load.
            ratio = ratio_median(reference, times[name, search])
            rows.append({"search": search, "system": name, "softmax_columns": columns[name], "seconds": seconds,
                         "sentences_per_s": sentences / seconds, "output_tokens": tokens[name, search],
                         "vs_hf": ratio})
    # Trained parameters: Marian keeps its sinusoidal position tables as frozen parameters.
    parameters = {"attntrain": sum(p.numel() for p in whole.parameters() if p.requires_grad),
                  "marian": sum(p.numel() for p in marian.parameters() if p.requires_grad)}
    print(f"\nequal-size models, random weights; {sentences} {args.split} sentences, {args.length} decoding steps "
          f"per sentence on both sides; parameters: attntrain {parameters['attntrain']:,}, MarianMTModel "
          f"{parameters['marian']:,}; {args.threads} thread(s), medians of {args.repeats} rounds\n")
    print(markdown_table(["search", "system", "softmax columns", "sentences/s", "seconds", "output tokens",
                          "vs Hugging Face (per-round median)"],
                         [[r["search"], r["system"], r["softmax_columns"], f"{r['sentences_per_s']:.1f}",
                           f"{r['seconds']:.2f}", r["output_tokens"], f"{r['vs_hf']:.2f}x"] for r in rows],
                         align="llrrrrr"))
    return {"length": args.length, "parameters": parameters, "rows": rows,
            "times": {f"{k[0]} / {k[1]}": v for k, v in times.items()},
            "transformers": __import__("transformers").__version__}


def main() -> None:
    args = parse_args()
    pin_threads(args.threads)
    task, model, described = load_model(args)
    indices = list(range(min(args.sentences, len(task.split(args.split)))))
    lengths = task.lengths(args.split)
    from attntrain.data.batching import token_batches

    groups = token_batches([lengths[i] for i in indices], task.cfg.data.eval_max_tokens, shuffle=False)
    batches = [task.batch(args.split, [indices[i] for i in group]) for group in groups]
    sources = sum(int(b["mask"].sum()) for b in batches)
    if args.hf_only:
        result = {"split": args.split, "sentences": len(indices), "source_tokens": sources, "threads": args.threads,
                  "repeats": args.repeats, "hf": compare_hf(args, task, batches), "torch": torch.__version__,
                  "machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M")}
        print(f"\nwrote {write_json(args.out, result)}")
        return
    searches = [("greedy", 1), (f"beam {args.beam}", args.beam)]
    translate(model, batches[:1], beam=1, cache=True)  # warm-up
    variants = {(name, cache): (lambda beam=beam, cache=cache: translate(model, batches, beam=beam, cache=cache))
                for name, beam in searches for cache in (True, False)}
    done = interleaved(variants, args.repeats,
                       on_round=lambda r, _: print(f"round {r + 1}/{args.repeats} done", flush=True))
    times = {key: [seconds for seconds, _ in runs] for key, runs in done.items()}
    # Every round's cached and uncached searches must emit the same tokens.
    identical = all(cached[1] == uncached[1] for name, _ in searches
                    for cached, uncached in zip(done[name, True], done[name, False]))
    tokens = {name: sum(len(ids) for ids in done[name, True][-1][1]) for name, _ in searches}

    rows = []
    for name, _ in searches:
        cached, uncached = (statistics.median(times[name, c]) for c in (True, False))
        for cache, seconds in ((True, cached), (False, uncached)):
            rows.append({"search": name, "cache": cache, "seconds": seconds,
                         "sentences_per_s": len(indices) / seconds, "tokens_per_s": tokens[name] / seconds,
                         "speedup_vs_uncached": uncached / seconds})
    print(f"\n{described}; {len(indices)} {args.split} sentences ({sources} source tokens), "
          f"{args.threads} thread(s), medians of {args.repeats} rounds; cached == uncached tokens: {identical}\n")
    print(markdown_table(["search", "key/value cache", "sentences/s", "output tokens/s", "seconds", "cached / uncached"],
                         [[r["search"], "yes" if r["cache"] else "no (recompute prefix)", f"{r['sentences_per_s']:.1f}",
                           f"{r['tokens_per_s']:.0f}", f"{r['seconds']:.2f}", f"{r['speedup_vs_uncached']:.2f}x"]
                          for r in rows], align="llrrrr"))
    result = {"model": described, "split": args.split, "sentences": len(indices), "source_tokens": sources,
              "output_tokens": tokens, "threads": args.threads, "repeats": args.repeats, "identical_tokens": identical,
              "rows": rows, "times": {f"{k[0]} cache={k[1]}": v for k, v in times.items()},
              "parameters": sum(p.numel() for p in model.parameters()),
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "date": time.strftime("%Y-%m-%d %H:%M")}
    if args.hf:
        result["hf"] = compare_hf(args, task, batches)
    print(f"\nwrote {write_json(args.out, result)}")
    if not identical:
        raise SystemExit("cached and uncached search disagree")


if __name__ == "__main__":
    main()
