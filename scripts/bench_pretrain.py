"""Masked-word pretraining step: attntrain (`attntrain pretrain`'s Trainer step) against Hugging Face
BertForMaskedLM of the same size, on the same masked batches of real IMDB review text.

What is timed
    attntrain        Trainer._step on PretrainTask batches (masked as `attntrain pretrain` masks them):
                     forward, the head's loss over the masked words, backward, clip, fused AdamW.
    HF               BertForMaskedLM(input_ids, attention_mask, labels) on the same ids and labels, then
                     the same clip and fused AdamW: the output layer scores every position, as the model does.
    HF masked-only   the same BERT, its encoder output gathered at the masked positions before `model.cls`
                     (the trick attntrain's head uses), to show where the difference comes from.

Equal size
    BERT gets attntrain's width, layers, heads and FFN width, its vocabulary (the pretraining run's words
    with <mask>), max_len positions, SDPA attention and the same dropout; attntrain runs with word_dim =
    width and no n-gram front end, so both have one word table tied to the output. Parameter counts are
    printed (BERT adds position and token-type tables and an embedding LayerNorm; attntrain a projection).

Rounds are interleaved (one step of each side in turn, on the same batch), so load on a shared machine hits
all alike; figures are medians of words/s (real words, padding excluded) over the rounds.

    python scripts/bench_pretrain.py --threads 1                   # 2,000 reviews, 20 rounds
    python scripts/bench_pretrain.py --threads 1 --rounds 5 --limit 500

Results: a Markdown table on stdout and JSON in bench_results/bench_pretrain.json (`--out`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from attntrain.config import build_config
from attntrain.train.checkpoint import RunDir
from attntrain.train.trainer import Trainer


def attntrain_trainer(args, runs: Path) -> Trainer:
    raw = {"name": "bench", "runs_dir": str(runs), "seed": 0,
           "data": {"task": "imdb", "dataset": "imdb", "dev_size": 2500, "train_limit": args.limit, "eval_limit": 8,
                    "max_len": args.max_len, "max_tokens": args.max_tokens},
           "model": {"embed": {"word_dim": args.width, "min_freq": 3, "dropout": 0.1},
                     "encoder": {"num_layers": args.layers, "width": args.width, "num_heads": args.heads,
                                 "ffn_dim": args.ffn, "dropout": 0.1},
                     "head": {"kind": "pretrain"}},
           "train": {"threads": args.threads, "progress": False, "lr": 5e-4, "warmup_steps": 0, "max_steps": 1000}}
    trainer = Trainer(build_config(raw, "bench"), RunDir(runs / "bench"), resume=False)
    from attntrain.train.schedule import resolve

    trainer.schedule = resolve(trainer.cfg.train, 1000)
    return trainer


def bert(args, num_words: int):
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(vocab_size=num_words, hidden_size=args.width, num_hidden_layers=args.layers,
                     num_attention_heads=args.heads, intermediate_size=args.ffn, max_position_embeddings=args.max_len,
                     hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.0, attn_implementation="sdpa")
    model = BertForMaskedLM(cfg).train()
    return model, torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01, fused=True)


def hf_step(model, optimizer, batch: dict, *, masked_only: bool) -> None:
    if masked_only:
        hidden = model.bert(input_ids=batch["words"], attention_mask=batch["mask"].long()).last_hidden_state
        chosen = batch["masked"]
        scores = model.cls(hidden[chosen])  # (N,V)
        loss = torch.nn.functional.cross_entropy(scores, batch["labels"][chosen])
    else:
        loss = model(input_ids=batch["words"], attention_mask=batch["mask"].long(), labels=batch["labels"]).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--limit", type=int, default=2000, help="IMDB training reviews read")
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=512)
    parser.add_argument("--out", type=Path, default=Path("bench_results/bench_pretrain.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        trainer = attntrain_trainer(args, Path(folder))
        task = trainer.task
        order = task.batches("train", shuffle=True)
        num_words = task.info()["num_words"]
        model, optimizer = bert(args, num_words)
        masked_model, masked_optimizer = bert(args, num_words)
        sides = {"attntrain": lambda batch: trainer._step([batch]),
                 "HF BertForMaskedLM": lambda batch: hf_step(model, optimizer, batch, masked_only=False),
                 "HF, masked positions only": lambda batch: hf_step(masked_model, masked_optimizer, batch,
                                                                    masked_only=True)}
        speeds = {name: [] for name in sides}
        for round_ in range(args.rounds + 1):  # round 0 warms up
            batch = task.batch("train", order[round_ % len(order)])
            words = int(batch["mask"].sum())
            for name, step in sides.items():
                start = time.perf_counter()
                step(batch)
                if round_:
                    speeds[name].append(words / (time.perf_counter() - start))
        sizes = {"attntrain": sum(p.numel() for p in trainer.model.parameters()),
                 "HF BertForMaskedLM": sum(p.numel() for p in model.parameters()),
                 "HF, masked positions only": sum(p.numel() for p in masked_model.parameters())}
    base = statistics.median(speeds["HF BertForMaskedLM"])
    rows = {name: {"parameters": sizes[name], "words_per_s": statistics.median(v),
                   "vs_hf": statistics.median(v) / base} for name, v in speeds.items()}
    print(f"| model | parameters | words/s (median of {args.rounds}) | vs BertForMaskedLM |")
    print("|---|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['parameters']:,} | {row['words_per_s']:,.0f} | {row['vs_hf']:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                    "vocabulary": num_words, "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    main()
