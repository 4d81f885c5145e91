"""End-to-end training throughput on real data: attntrain's trainer vs the usual Hugging Face recipe.

What it measures
    One epoch over the first `--sentences` sentences of UD English-EWT train (all 12,544 without
    `--quick`), three ways, each timed from the first batch to the last optimizer step (batch
    assembly, padding, forward, backward, clipping, AdamW; tokenisation and vocabularies are built
    beforehand on both sides):

    attntrain        the model of configs/pos_ewt.yaml trained as `attntrain fit` trains it: the
                     task's token-budget batches (length-bucketed, data.max_tokens) fed to the
                     Trainer's own step (attntrain.train.trainer.Trainer._step), learning rate set
                     by its schedule; no dev evaluation or checkpoint inside the timed epoch.
    HF random        BertForTokenClassification of equal size (parameters within 2%) in the plain
                     loop Hugging Face's Trainer runs: random batches, DataCollatorForTokenClassification
                     padding each to its longest sentence, fused AdamW, linear schedule, clip 1.0.
    HF grouped       the same with group_by_length (transformers' LengthGroupedSampler).

    Useful tokens/s counts real words only (padding excluded); the padding fraction is the share of
    padded slots. The HF batch size is the mean number of sentences in attntrain's batches, so both
    sides take the same number of optimizer steps. The three epochs run interleaved in one process,
    one optimizer step of each in turn (so load on a shared machine hits all alike), and only the
    steps are timed; figures are medians over `--repeats` such rounds and ratios are against the HF
    rows of the same run.

Equal size
    BERT gets the attntrain model's width, layers, heads and FFN width, the same dropout (0.2 on
    hidden states, none on attention weights, as the config has) and SDPA attention. Its word-level
    vocabulary (the most frequent training words, one token per word, no [CLS]/[SEP]) is sized so that
    the parameter counts match: attntrain spends its embedding budget on 128-wide word vectors plus a
    character CNN, BERT on 256-wide word and position vectors.

How to run
    python scripts/bench_pipeline.py --threads 1 --quick   # 3,000 sentences, 3 rounds (`make bench`)
    python scripts/bench_pipeline.py --threads 1           # all 12,544 sentences (`make bench-pipeline`)
    python scripts/bench_pipeline.py --profile attntrain   # where one attntrain epoch spends its time

    Results: a Markdown table on stdout and JSON in bench_results/bench_pipeline.json (`--out`).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections import Counter
from typing import Iterator

import torch
from benchkit import interleaved_steps, markdown_table, pin_threads, round_order, write_json

from attntrain.config import load_config
from attntrain.model.build import count_parameters
from attntrain.train.checkpoint import RunDir
from attntrain.train.schedule import resolve as resolve_schedule
from attntrain.train.trainer import Trainer

PAD_TOKEN, UNK_TOKEN = "[PAD]", "[UNK]"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/pos_ewt.yaml", help="config whose model and batching are benchmarked")
    p.add_argument("--quick", action="store_true", help="3,000 sentences instead of the whole training split")
    p.add_argument("--sentences", type=int, default=None, help="training sentences per epoch (overrides --quick)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 3 quick, 2 full)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 on a shared machine)")
    p.add_argument("--only", choices=["attntrain", "hf_random", "hf_grouped"], action="append",
                   help="run only these rows (repeatable)")
    p.add_argument("--profile", choices=["attntrain", "hf_grouped"], default=None,
                   help="profile one epoch of this row (torch.profiler, top operators) instead of benchmarking")
    p.add_argument("--out", default="bench_results/bench_pipeline.json", help="JSON results file")
    return p.parse_args()


# ---- attntrain ---------------------------------------------------------------------------------
class AttntrainRun:
    """The Trainer of `attntrain fit`, stepped through one epoch of its own batches."""

    name = "attntrain"

    def __init__(self, config: str, sentences: int | None, threads: int, run_dir: str):
        overrides = ["train.device=cpu", f"train.threads={threads}", "train.progress=false"]
        if sentences is not None:
            overrides.append(f"data.train_limit={sentences}")
        self.cfg = load_config(config, overrides)
        self.trainer = Trainer(self.cfg, RunDir(run_dir), resume=False)
        self.task = self.trainer.task
        self.total = self.trainer.total_steps()
        self.trainer.schedule = resolve_schedule(self.cfg.train, self.total)
        self.trainer.model.train()
        self.epoch = 0
        self.lengths = self.task.lengths("train")
        self.parameters = count_parameters(self.trainer.model)

    def batches_per_epoch(self) -> list[list[int]]:
        return self.task.batches("train", shuffle=True, epoch=0)

    def steps(self, limit: int | None = None) -> Iterator[tuple[float, int, int]]:
        """One epoch (or its first `limit` steps): (seconds, real tokens, padded slots) of each optimizer step."""
        trainer, p, accumulate = self.trainer, self.trainer.progress, self.cfg.train.accumulate
        order = self.task.batches("train", shuffle=True, epoch=self.epoch)
        self.epoch += 1
        groups = [order[i:i + accumulate] for i in range(0, len(order), accumulate)][:limit]
        for group in groups:
            start = time.perf_counter()
            trainer._set_lr(self.total)
            _, real, _ = trainer._step(*trainer._local_batches(group))
            seconds = time.perf_counter() - start
            p.step = (p.step + 1) % self.total  # keep the schedule inside the run across rounds
            yield seconds, real, sum(max(self.lengths[i] for i in b) * len(b) for b in group)


# ---- Hugging Face ------------------------------------------------------------------------------
def word_tokenizer(sentences: list[list[str]], size: int):
    """A word-level fast tokenizer over the `size` - 2 most frequent words (+ [PAD], [UNK]); no special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    counts = Counter(w for words in sentences for w in words)
    vocab = {PAD_TOKEN: 0, UNK_TOKEN: 1}
    for word, _ in counts.most_common(size - 2):
        vocab[word] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK_TOKEN))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD_TOKEN, unk_token=UNK_TOKEN)


def bert_config(encoder, *, vocab_size: int, num_labels: int, dropout: float, attention_dropout: float):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=encoder.width, num_hidden_layers=encoder.num_layers,
                      num_attention_heads=encoder.num_heads, intermediate_size=encoder.ffn_dim,
                      hidden_dropout_prob=dropout, attention_probs_dropout_prob=attention_dropout,
                      num_labels=num_labels, attn_implementation="sdpa")


def equal_size_vocab(encoder, target: int, *, num_labels: int, dropout: float, attention_dropout: float) -> int:
    """The BERT vocabulary size whose model has `target` parameters (parameters grow by width per word)."""
    from transformers import BertForTokenClassification

    def size(vocab):
        cfg = bert_config(encoder, vocab_size=vocab, num_labels=num_labels, dropout=dropout,
                          attention_dropout=attention_dropout)
        return sum(p.numel() for p in BertForTokenClassification(cfg).parameters())

    base = size(2)
    return 2 + max(0, round((target - base) / encoder.width))


class HuggingFaceRun:
    """BertForTokenClassification trained as Trainer trains it: DataLoader + collator + fused AdamW + linear schedule."""

    def __init__(self, raw: list[dict], labels: list[str], encoder, *, parameters: int, batch_size: int,
                 dropout: float, attention_dropout: float, lr: float, steps: int, seed: int = 0):
        from transformers import BertForTokenClassification, DataCollatorForTokenClassification, get_linear_schedule_with_warmup

        torch.manual_seed(seed)
        vocab = equal_size_vocab(encoder, parameters, num_labels=len(labels), dropout=dropout,
                                 attention_dropout=attention_dropout)
        self.tokenizer = word_tokenizer([ex["words"] for ex in raw], vocab)
        label_id = {label: i for i, label in enumerate(labels)}
        self.features = [self._encode(ex, label_id) for ex in raw]
        self.lengths = [len(f["input_ids"]) for f in self.features]
        cfg = bert_config(encoder, vocab_size=len(self.tokenizer), num_labels=len(labels), dropout=dropout,
                          attention_dropout=attention_dropout)
        self.model = BertForTokenClassification(cfg).train()
        self.parameters = sum(p.numel() for p in self.model.parameters())
        self.collator = DataCollatorForTokenClassification(self.tokenizer, padding="longest", return_tensors="pt")
        self.batch_size = batch_size
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.0, fused=True)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, 0, steps)
        self.generator = torch.Generator().manual_seed(seed)

    def _encode(self, example: dict, label_id: dict) -> dict:
        """The recipe's tokenize_and_align_labels: the first piece of a word gets its label, the rest -100."""
        encoded = self.tokenizer(example["words"], is_split_into_words=True, truncation=True, max_length=512)
        previous, labels = None, []
        for word in encoded.word_ids():
            labels.append(-100 if word is None or word == previous else label_id[example["upos"][word]])
            previous = word
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}

    def loader(self, grouped: bool):
        from torch.utils.data import DataLoader, RandomSampler
        from transformers.trainer_pt_utils import LengthGroupedSampler

        sampler = (LengthGroupedSampler(self.batch_size, lengths=self.lengths, generator=self.generator) if grouped
                   else RandomSampler(self.features, generator=self.generator))
        return DataLoader(self.features, batch_size=self.batch_size, sampler=sampler, collate_fn=self.collator)

    def steps(self, grouped: bool, limit: int | None = None) -> Iterator[tuple[float, int, int]]:
        """One epoch: (seconds, real tokens, padded slots) of each step, collation included."""
        batches = iter(self.loader(grouped))
        for _ in range(len(batches) if limit is None else limit):
            start = time.perf_counter()
            batch = next(batches)  # sampling + DataCollatorForTokenClassification
            loss = self.model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - start
            yield seconds, int(batch["attention_mask"].sum()), batch["attention_mask"].numel()


# ---- benchmark ---------------------------------------------------------------------------------
def build(args, run_dir: str):
    sentences = args.sentences if args.sentences is not None else (3000 if args.quick else None)
    ours = AttntrainRun(args.config, sentences, args.threads, run_dir)
    batches = ours.batches_per_epoch()
    batch_size = round(sum(len(b) for b in batches) / len(batches))
    encoder = ours.cfg.model.encoder
    theirs = HuggingFaceRun(ours.task.split_raw("train"), ours.task.info()["labels"], encoder,
                            parameters=ours.parameters, batch_size=batch_size, dropout=encoder.dropout,
                            attention_dropout=encoder.attention.dropout, lr=ours.cfg.train.lr,
                            steps=10 * len(batches), seed=ours.cfg.seed)
    return ours, theirs, batch_size


def consume(steps: Iterator) -> tuple[float, int, int]:
    return tuple(sum(column) for column in zip(*steps))


def profile(args, ours, theirs) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    run = (lambda: consume(ours.steps(limit=20))) if args.profile == "attntrain" else (
        lambda: consume(theirs.steps(True, 20)))
    run()  # warm-up
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        seconds, tokens, _ = run()
    print(f"{args.profile}: 20 batches, {tokens} tokens in {seconds:.2f} s ({tokens / seconds:.0f} tokens/s)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


def main() -> None:
    args = parse_args()
    pin_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 2)
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as run_dir:
        ours, theirs, batch_size = build(args, run_dir)
        pin_threads(args.threads)
        if args.profile:
            profile(args, ours, theirs)
            return
        rows = {"attntrain": lambda: ours.steps(), "hf_random": lambda: theirs.steps(False),
                "hf_grouped": lambda: theirs.steps(True)}
        names = [n for n in rows if not args.only or n in args.only]
        consume(ours.steps(limit=3))  # warm-up: allocator, first-call costs
        consume(theirs.steps(True, limit=3))
        results = {name: [] for name in names}
        for round_ in range(repeats):
            # every epoch steps in turn with the others; the order rotates from round to round
            totals = interleaved_steps({name: rows[name]() for name in round_order(names, round_, "rotate")})
            for name in names:
                results[name].append(totals[name])
            print(f"round {round_ + 1}/{repeats}: " + ", ".join(
                f"{name} {totals[name][1] / totals[name][0]:.0f}" for name in names) + " useful tokens/s", flush=True)
    report(args, ours, theirs, batch_size, names, results, repeats)


def report(args, ours, theirs, batch_size, names, results, repeats) -> None:
    labels = {"attntrain": "attntrain (token-budget batches)", "hf_random": "HF BERT, random batches",
              "hf_grouped": "HF BERT, group_by_length"}
    table = []
    for name in names:
        speeds = [tokens / seconds for seconds, tokens, _ in results[name]]
        seconds, tokens, slots = results[name][0]
        padding = statistics.mean(1 - t / s for _, t, s in results[name])
        table.append({"row": name, "tokens_per_s": statistics.median(speeds),
                      "seconds": statistics.median(s for s, _, _ in results[name]), "tokens": tokens,
                      "padding_fraction": padding, "speeds": speeds})
    by_name = {r["row"]: r for r in table}
    for r in table:
        for base in ("hf_random", "hf_grouped"):
            if base in by_name:
                r[f"vs_{base}"] = r["tokens_per_s"] / by_name[base]["tokens_per_s"]
    sentences = len(ours.lengths)
    print(f"\n{sentences} EWT train sentences ({sum(ours.lengths)} words), one epoch per row, {args.threads} "
          f"thread(s), medians of {repeats} rounds; parameters: attntrain {ours.parameters:,}, BERT "
          f"{theirs.parameters:,} ({100 * (theirs.parameters / ours.parameters - 1):+.1f}%); HF batch size "
          f"{batch_size} sentences (attntrain's mean), attntrain data.max_tokens {ours.cfg.data.max_tokens}\n")
    def ratio(r: dict, key: str) -> str:
        return f"{r[key]:.2f}x" if key in r else "-"

    print(markdown_table(["pipeline", "useful tokens/s", "padding", "seconds/epoch", "vs HF random", "vs HF grouped"],
                         [[labels[r["row"]], f"{r['tokens_per_s']:.0f}", f"{100 * r['padding_fraction']:.1f}%",
                           f"{r['seconds']:.1f}", ratio(r, "vs_hf_random"), ratio(r, "vs_hf_grouped")] for r in table],
                         align="lrrrrr"))
    result = {"config": args.config, "sentences": sentences, "words": sum(ours.lengths), "threads": args.threads,
              "repeats": repeats, "hf_batch_size": batch_size, "max_tokens": ours.cfg.data.max_tokens,
              "parameters": {"attntrain": ours.parameters, "bert": theirs.parameters}, "rows": table,
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "date": time.strftime("%Y-%m-%d %H:%M")}
    print(f"\nwrote {write_json(args.out, result)}")


if __name__ == "__main__":
    main()
