"""Size a run from what `attntrain init` measured: batch, budget, evaluation cadence, warm-up, patience, model.

Every choice comes back as a YAML line with a comment naming the figure that led to it, so a person can
see why and change it. The rules are deliberately few:

- batch: ~32 examples on a set under 10,000, 64 under 100,000, else 128 (small sets need many updates,
  not large batches); data.max_tokens = that many examples of the mean length (images: of their 16 patches,
  exactly; before 2026-12-07 no max_tokens was written for images, so 250 images made a batch and the budget's
  passes were 8x what the comment said).
- budget: at least 60,000 examples seen and at least 10 passes, at most 100 passes; `train.min_steps`
  holds the update count whatever the batches turn out to be (3,000 sentences -> 20 passes, ~1,900 steps;
  the 4 passes of a recipe tuned on a 67,000-phrase set would be ~380).
- evaluation every 5% of the run (10% under 400 steps), patience 8 evaluations (40% of the run),
  warm-up 5% of the run.
- model: width 128 under 2,000 examples, 256 above; 4 layers from 50,000 examples on; a text set under
  10,000 examples labelled as a whole also reads characters (3,000 SST-2 sentences: dev 77.01 +- 0.24 with a
  character CNN, 75.92 +- 0.49 without, 2 seeds each): there 42% of the test word types (10% of its tokens)
  never occur in train.
- long texts labelled as a whole (over 128 words on average): the IMDB recipe's shape, 1 layer 64 wide with the
  3-gram front end and its lr, and at most 25M tokens seen (before 2026-12-07 evening a 22,500-review set got
  10 passes of a 2-layer, 256-wide model: ~60M tokens through ~16x the preset's width squared, tens of times
  its compute, for what 4 passes of the narrow model reach); inputs over max_len keep their start and end.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

SEEN_FLOOR = 60_000  # examples a run sees at least (the SST-2 recipe sees ~6,500 x 4 passes + phrases)
MIN_PASSES, MAX_PASSES = 10, 100
SMALL_TEXT = 10_000  # text sets labelled as a whole below this many examples get character features
LONG_TEXT = 128  # mean words per input above which a text labelled as a whole gets the long-input recipe
TOKENS_SEEN_CAP = 25_000_000  # tokens a run on long texts sees at most: each long input carries more per example
MIN_PASSES_LONG = 3


@dataclass
class Profile:
    """What init measured on the training rows."""

    kind: str  # text | audio | image | graph
    mode: str  # sequence | tagging | seq2seq
    train_examples: int  # training examples (after the dev/test fractions init writes)
    lengths: list[int] = field(default_factory=list)  # tokens / frames / patches of a sample of inputs
    labels: Counter = field(default_factory=Counter)  # label (or tag) counts of the sample
    dev_examples: int | None = None  # when a dev split is given


def percentile(values: list[int], share: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0


def mean_length(profile: Profile) -> float:
    return sum(profile.lengths) / len(profile.lengths) if profile.lengths else 0.0


def max_len_of(profile: Profile) -> int:
    return min(512, max(16, round_up(percentile(profile.lengths, 0.99) + 2, 16)))


def long_text(profile: Profile) -> bool:
    return profile.kind == "text" and profile.mode == "sequence" and mean_length(profile) > LONG_TEXT


def tokens_per_pass(profile: Profile) -> int:
    """Tokens of one pass over train, each input cut at the max_len init writes."""
    if not profile.lengths:
        return 0
    cut = max_len_of(profile)
    return int(profile.train_examples * sum(min(n + 2, cut) for n in profile.lengths) / len(profile.lengths))


def batch_examples(count: int) -> int:
    return 32 if count < 10_000 else 64 if count < 100_000 else 128


def round_up(value: float, unit: int) -> int:
    return int(math.ceil(value / unit) * unit)


def data_lines(profile: Profile) -> list[str]:
    """data.max_tokens / max_len lines (under `data:`)."""
    if not profile.lengths:
        return []
    mean = mean_length(profile)
    batch = batch_examples(profile.train_examples)
    if profile.kind == "image":  # every image is the same number of patches: the batch is exact, no max_len
        return [f"  max_tokens: {batch * profile.lengths[0]}        # {batch} images of {profile.lengths[0]} patches "
                f"per batch: {profile.train_examples:,} training examples"]
    longest = percentile(profile.lengths, 0.99)
    max_len = max_len_of(profile)
    tokens = max(256, round_up(batch * (min(mean, max_len) + 2), 100), max_len)
    unit = "frames" if profile.kind == "audio" else "tokens"
    lines = [f"  max_tokens: {tokens}        # ~{batch} examples of {mean:.0f} {unit} (mean) per batch: "
             f"{profile.train_examples:,} training examples"]
    if longest + 2 > max_len:
        over = sum(n + 2 > max_len for n in profile.lengths) / len(profile.lengths)
        line = (f"  max_len: {max_len}           # {100 * over:.1f}% of inputs are longer (1% over {longest} {unit}); "
                "attention costs the square of the length")
        if profile.kind == "text" and profile.mode == "sequence":  # data.truncate acts on a whole-input label only
            return lines + [line, "  truncate: head_tail   # a longer input keeps its first third and last two thirds"]
        return lines + [line]
    return lines + [f"  max_len: {max_len}           # 99% of inputs have <= {longest} {unit}"]


def steps_per_pass(profile: Profile) -> int:
    return max(1, math.ceil(profile.train_examples / batch_examples(profile.train_examples)))


def passes_of(profile: Profile) -> tuple[int, bool]:
    """Passes over train, and whether the cap on tokens seen set them (long inputs)."""
    count = max(1, profile.train_examples)
    passes = min(MAX_PASSES, max(MIN_PASSES, math.ceil(SEEN_FLOOR / count)))
    per_pass = tokens_per_pass(profile) if long_text(profile) else 0  # the cap is the long-text rule's alone
    capped = max(MIN_PASSES_LONG, TOKENS_SEEN_CAP // per_pass) if per_pass else passes
    return min(passes, capped), capped < passes


def budget(profile: Profile) -> tuple[int, int]:
    """(passes, optimizer steps) of the run."""
    passes, _ = passes_of(profile)
    return passes, passes * steps_per_pass(profile)


def passes_why(profile: Profile) -> str:
    passes, capped = passes_of(profile)
    text = f"{profile.train_examples:,} examples x {passes} passes = {passes * profile.train_examples:,} seen"
    if capped:
        return (text + f" (long inputs: ~{tokens_per_pass(profile) / 1e6:.1f}M tokens a pass, at most "
                f"{TOKENS_SEEN_CAP // 10**6}M tokens seen and at least {MIN_PASSES_LONG} passes)")
    return text + f" (at least {SEEN_FLOOR:,} and {MIN_PASSES} passes, at most {MAX_PASSES})"


def train_lines(profile: Profile) -> list[str]:
    """max_epochs, min_steps, warm-up, evaluation, patience and metric lines (under `train:`)."""
    passes, steps = budget(profile)
    every = 0.05 if steps >= 400 and profile.mode != "seq2seq" else 0.1  # seq2seq: each evaluation decodes dev
    lines = [f"  max_epochs: {passes}        # {passes_why(profile)}",
             f"  min_steps: {steps}        # ~{steps_per_pass(profile)} batches per pass x {passes}: "
             "a small set still gets this many updates",
             f"  warmup: 0.05           # 5% of the run: ~{round(0.05 * steps)} of ~{steps:,} steps",
             f"  eval_every: {every}        # {round(1 / every)} dev evaluations, every ~{max(1, round(every * steps))} steps",
             f"  patience: 8            # stop after 8 evaluations ({round(800 * every)}% of the run) without a better dev score"]
    return lines + metric_lines(profile)


def metric_lines(profile: Profile) -> list[str]:
    if profile.mode == "seq2seq":
        return ["  metric: bleu"]
    if profile.mode == "tagging":
        spans = any(str(tag).startswith(("B-", "I-")) for tag in profile.labels)
        return [f"  metric: {'f1' if spans else 'accuracy'}" + ("           # span tags (B-/I-): entity F1"
                                                                 if spans else "")]
    total = sum(profile.labels.values()) or 1
    shares = ", ".join(f"{label} {100 * count / total:.0f}%" for label, count in profile.labels.most_common(4))
    majority = max(profile.labels.values(), default=0) / total
    if majority > 0.75 or len(profile.labels) > 10:
        return [f"  metric: macro_f1       # labels: {shares}{' ...' if len(profile.labels) > 4 else ''}: "
                "accuracy would reward the majority class"]
    return [f"  metric: accuracy       # labels fairly balanced: {shares}"]


@dataclass
class ModelSize:
    width: int
    layers: int
    ffn: int
    heads: int
    dropout: float
    why: str


def model_size(profile: Profile) -> ModelSize:
    count = profile.train_examples
    if long_text(profile):
        return ModelSize(64, 1, 128, 4, 0.2, f"inputs of {mean_length(profile):.0f} words on average (> {LONG_TEXT}): "
                         "the IMDB recipe, 1 layer 64 wide after the 3-gram front end")
    if count < 2_000:
        return ModelSize(128, 2, 256, 4, 0.3, f"{count:,} training examples (< 2,000): a narrow model")
    if count < 50_000:
        return ModelSize(256, 2, 512, 4, 0.3, f"{count:,} training examples (< 50,000): 2 layers, strong dropout")
    return ModelSize(256, 4, 1024, 4, 0.1, f"{count:,} training examples (>= 50,000): 4 layers")


def encoder_line(size: ModelSize, *, layers: int | None = None, extra: str = "") -> str:
    return (f"  encoder: {{kind: transformer, num_layers: {layers or size.layers}, width: {size.width}, "
            f"num_heads: {size.heads}, ffn_dim: {size.ffn}, dropout: {size.dropout}{extra}}}   # {size.why}")
