"""`attntrain init DATA --target FIELD`: inspect a user's data and write a commented config sized to it.

The source comes from the files (attntrain.init_sources), the output mode from the target's shape (a list
of tags -> tagging; a short label -> one label per input; running text -> seq2seq), the input kind from
the files (wav -> audio, images -> image, a node table with an edge table beside it -> graph, else text).
Batch, budget, evaluation, warm-up, patience and model size follow what was measured (attntrain.sizing);
each written choice carries the figure behind it. With --vectors FILE a text model's word table starts from
a word-vector file (3,000 SST-2 sentences: test 80.98 +- 0.80 over 3 seeds with word2vec from IMDB reviews,
76.39 +- 0.73 without).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from attntrain.errors import UserError
from attntrain.init_sources import detect, find_graph
from attntrain.sizing import (SMALL_TEXT, ModelSize, Profile, data_lines, encoder_line, long_text, model_size,
                              train_lines)

SAMPLE = 2000  # inputs measured for lengths (a seeded sample)


def _yaml_value(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip().removesuffix("\n...")


def read_rows(source: dict) -> dict[str, list[dict]]:
    from attntrain.config import DataConfig
    from attntrain.data.sources.readers import read_source

    rows = read_source(DataConfig(source=source))
    if not any(rows.values()):
        raise UserError(f"{source.get('path') or source.get('files')}: no rows found")
    return rows


def guess_mode(rows: list[dict], target: str) -> str:
    values = [r.get(target) for r in rows if r.get(target) is not None]
    if not values:
        names = ", ".join(k for k in rows[0] if not k.startswith("_")) if rows else "none"
        raise UserError(f"--target: no field '{target}' in the data (fields: {names})")
    if all(isinstance(v, (list, tuple)) for v in values):
        return "tagging"
    words = [len(str(v).split()) for v in values]
    if sum(words) / len(words) > 3 and len(set(map(str, values))) > 0.5 * len(values):
        return "seq2seq"
    return "sequence"


TARGET_NAMES = ("label", "labels", "tags", "ner_tags", "upos", "pos_tags", "target", "class", "category")


def guess_target(rows: list[dict], fmt: str) -> str:
    """The field to predict when --target is not given: a media folder's label, else a field named like one."""
    if fmt in ("audiofolder", "imagefolder"):
        return "label"
    fields = [k for k in (rows[0] if rows else {}) if not k.startswith("_")]
    named = [k for k in fields if k.lower() in TARGET_NAMES]
    if len(named) != 1:
        raise UserError(f"--target: name the field to predict (fields: {', '.join(fields) or 'none'})")
    return named[0]


def guess_input(rows: list[dict], target: str, fmt: str) -> str:
    if fmt in ("audiofolder", "imagefolder"):
        return "path"
    candidates = [k for k in rows[0] if k != target and not k.startswith("_") and k.lower() != "split"]
    preferred = [k for k in candidates if k in ("tokens", "words", "text", "sentence")]
    texts = preferred or [k for k in candidates if isinstance(rows[0][k], (str, list))]
    if not texts:
        raise UserError(f"no input field found besides '{target}'; name one with --input")
    return texts[0]


def split_line(source: dict, splits: set[str]) -> tuple[str | None, float]:
    """The data.split line the splits present call for (None: all given), and the share of rows that train."""
    if {"train", "dev", "test"} <= splits:
        return None, 1.0
    if "train" in splits and "test" in splits:
        return "  split: {dev: 0.1, seed: 0}   # no dev split found: 10% of train held out (seeded, saved with the run)", 0.9
    if "train" in splits and "dev" in splits:
        return "  split: {dev: 0.0, test: 0.1, seed: 0}   # no test split found: 10% of train held out as test", 0.9
    if "train" in splits:
        return "  split: {dev: 0.1, test: 0.0, seed: 0}   # train only: 10% held out as dev, no test split", 0.9
    return "  split: {dev: 0.1, test: 0.1, seed: 0}   # one set: a seeded 80/10/10 split, saved with the run", 0.8


def lengths(rows: list[dict], field: str, kind: str) -> list[int]:
    sample = random.Random(0).sample(rows, min(SAMPLE, len(rows)))
    if kind == "image":  # fixed by the image size and patch init writes (media_lines): 28x28 in 7x7 patches
        return [(28 // 7) ** 2] * len(sample)
    if kind == "audio":
        import soundfile

        hop_ms = 10.0  # data.audio.hop_ms default: one frame per 10 ms
        return [int(soundfile.info(r["path"]).duration * 1000 / hop_ms) for r in sample[:200]]
    return [len(v) if isinstance(v, list) else len(str(v).split()) for v in (r.get(field) for r in sample) if v]


def labels_of(rows: list[dict], target: str, mode: str) -> Counter:
    if mode == "seq2seq":
        return Counter()
    if mode == "tagging":
        return Counter(tag for r in rows for tag in (r.get(target) or []))
    return Counter(str(r.get(target)) for r in rows if r.get(target) is not None)


def target_line(target: str, profile: Profile) -> str:
    from attntrain.data.tasks.presets import UPOS

    if profile.mode == "tagging" and len(profile.labels) >= 10 and set(profile.labels) <= set(UPOS):
        return (f"  target: {{field: {target}, labels: {_yaml_value(UPOS)}}}   # tags are Universal POS: the whole "
                "set, so a rare tag (X, SYM) that train lacks is no error in dev/test")
    return f"  target: {{field: {target}}}"


def header(data: Path, target: str, out: Path | None, fmt: str, mode: str, fields: list[str],
           vectors: str | Path | None = None) -> list[str]:
    name = out or Path(f"{data.stem or 'data'}.yaml")
    what = {"tagging": "a label per token", "sequence": "one label per input", "seq2seq": "text in, text out"}[mode]
    return [f"# attntrain fit {name}      (written by: attntrain init {data} --target {target}"
            + (f" --vectors {vectors}" if vectors else "") + (f" --out {out})" if out else ")"),
            f"# {fmt} data, {mode} ({what}); sized to the training set below (attntrain/sizing.py).",
            "# edit freely; `attntrain validate` checks it. Fields seen: " + ", ".join(fields)]


def starter_config(data: str | Path, target: str | None, input_field: str | None = None, out: Path | None = None,
                   vectors: str | Path | None = None) -> str:
    """The text of a commented config for `data` predicting `target`, sized to what it holds."""
    data = Path(data)
    if not data.exists():
        raise UserError(f"{data}: no such file or folder")
    graph = find_graph(data)
    if graph is not None:
        if vectors is not None:
            raise UserError(f"--vectors: {data} is a graph; word vectors start the word table of a text input")
        from attntrain.init_graph import graph_config

        return graph_config(*graph, target or "label", input_field, out)
    source = detect(data)
    fmt = source["format"]
    if fmt == "parallel":
        if target is None or target not in source["languages"]:
            raise UserError(f"--target: parallel text in {', '.join(source['languages'])}; name one of them")
        source["languages"] = sorted(source["languages"], key=lambda lang: lang == target)  # input first
    rows_by_split = read_rows(source)
    train = rows_by_split.get("train") or rows_by_split.get("all") or next(iter(rows_by_split.values()))
    target = target or guess_target(train, fmt)
    mode = guess_mode(train[:500], target)
    field = input_field or guess_input(train, target, fmt)
    kind = {"audiofolder": "audio", "imagefolder": "image"}.get(fmt, "text")
    split, share = split_line(source, set(rows_by_split))
    profile = Profile(kind=kind, mode=mode, train_examples=int(len(train) * share),
                      lengths=lengths(train, field, kind), labels=labels_of(train, target, mode))
    fields = [k for k in train[0] if not k.startswith("_")]
    words = None
    if vectors is not None:
        if kind != "text" or mode == "seq2seq":
            raise UserError(f"--vectors: for text labelled as a whole or per token; this data is {kind}, {mode}")
        words = word_vectors(vectors, [r.get(field) for r in train])
    lines = header(data, target, out, fmt, mode, fields, vectors) + [
        "data:",
        f"  source: {_yaml_value(source)}",
        f"  input: {{field: {field}, kind: {kind}}}" + ("   # tokenizer: auto | english | words | whitespace | bert | learned"
                                                     if kind == "text" else ""),
        target_line(target, profile)]
    lines += [split] if split else []
    lines += media_lines(fmt, train) + (["  translation: {joint_vocab: true, vocab_size: 8000}"]
                                       if mode == "seq2seq" else [])
    lines += data_lines(profile)
    return "\n".join(lines + model_lines(profile, words) + ["train:"] + recipe_lines(profile) + train_lines(profile)) + "\n"


def media_lines(fmt: str, rows: list[dict]) -> list[str]:
    if fmt != "imagefolder":
        return []
    from attntrain.data.inputs.images import read_image

    first = read_image(rows[0]["path"], (28, 28), channels=0)
    return [f"  image: {{size: [28, 28], channels: {'gray' if first.shape[0] == 1 else 'rgb'}}}"
            "   # resized; patch: side of a patch",
            "  patch: 7             # 28x28 -> 16 patches of 7x7"]


@dataclass
class WordVectors:
    """A word-vector file init was given (--vectors) and how much of the training text it covers."""

    path: str
    width: int
    count: int  # words in the file
    token_share: float  # share of a sample of training tokens (lower-cased) the file has a vector for
    type_share: float

    def embed(self) -> str:
        """The embed keys that start the word table from the file (its width is the table's)."""
        return f"word_dim: {self.width}, vectors: {_yaml_value(self.path)}, vectors_extend: true"

    def comment(self) -> str:
        return (f"  # word table from {self.path}: {self.count:,} words, {self.width} wide, covering "
                f"{100 * self.token_share:.1f}% of the training tokens ({100 * self.type_share:.1f}% of the word types; "
                "case-folded); vectors_extend: words train lacks keep their vector")


def word_vectors(path: str | Path, inputs: list) -> WordVectors:
    """Read a vector file's width and words once, for the config's embed line and its coverage comment."""
    from attntrain.data.inputs.vectors import vector_entries

    width, entries = vector_entries(path)
    known = {word.lower() for word, _ in entries}
    sample = random.Random(0).sample(inputs, min(SAMPLE, len(inputs)))
    counts = Counter(word.lower() for value in sample if value
                     for word in (value if isinstance(value, list) else str(value).split()))
    tokens = max(sum(counts.values()), 1)
    return WordVectors(str(path), width, len(known), sum(n for w, n in counts.items() if w in known) / tokens,
                       sum(1 for w in counts if w in known) / max(len(counts), 1))


def model_lines(profile: Profile, vectors: WordVectors | None = None) -> list[str]:
    """The model section; with vectors, the word table of a text model starts from them."""
    lines = _model_lines(profile, vectors)
    if vectors is not None:
        lines.insert(1, vectors.comment())
    return lines


def _words(width: int, vectors: WordVectors | None) -> str:
    return vectors.embed() if vectors else f"word_dim: {width}"


def _model_lines(profile: Profile, vectors: WordVectors | None) -> list[str]:
    size = model_size(profile)
    if profile.kind in ("audio", "image"):
        position = ", image_position: sinusoidal" if profile.kind == "image" else ""
        narrow = ModelSize(128, 3 if profile.kind == "audio" else 4, 256, 4, 0.1,
                                f"{profile.train_examples:,} training {profile.kind} inputs: the FSDD / MNIST recipe width")
        return ["model:", f"  embed: {{dropout: 0.1{position}}}", encoder_line(narrow),
                "  head: {kind: sequence, pooling: mean}"]
    if profile.mode == "sequence" and long_text(profile):
        return ["model:",
                f"  embed: {{{_words(size.width, vectors)}, min_freq: 3, word_dropout: 0.1, ngram: 3, dropout: 0.3}}",
                encoder_line(size) + "; or kind: cnn / rnn",
                "  head: {kind: sequence, pooling: mean, dropout: 0.3}"]
    if profile.mode == "sequence":
        chars = (", char_dim: 48" if profile.train_examples < SMALL_TEXT else "")
        return ["model:",
                f"  embed: {{{_words(size.width, vectors)}, word_dropout: 0.1{chars}, ngram: 3, dropout: {size.dropout}}}"
                + (f"   # < {SMALL_TEXT:,} examples: characters for the many words train never shows"
                   + ("" if vectors else "; word vectors (init --vectors FILE) give them more") if chars else ""),
                encoder_line(size) + "; or kind: cnn / rnn",
                f"  head: {{kind: sequence, pooling: mean, dropout: {size.dropout}}}"]
    if profile.mode == "tagging":
        spans = any(str(tag).startswith(("B-", "I-")) for tag in profile.labels)
        encoder = encoder_line(ModelSize(size.width, size.layers, size.ffn, 8, size.dropout, size.why))
        if spans:  # the WNUT-17 recipe: entities are novel by design, so case pattern, characters and context
            return ["model:",
                    f"  embed: {{{_words(128, vectors)}, lowercase: true, word_dropout: 0.5, char_dim: 48, char_filters: 128, "
                    f"shape_dim: 16, ngram: 3, dropout: {size.dropout}}}   # span tags: word shapes (Xxxx, dd, @x) "
                    "and characters carry entities train never shows",
                    encoder,
                    "  head: {kind: tagging, decode: constrained, outside_bias: dev}   # valid spans only; the O bias "
                    "with the best dev F1 is chosen after training (entity recall is the weak side)"]
        return ["model:",
                f"  embed: {{{_words(128, vectors)}, word_dropout: 0.2, char_dim: 48, char_filters: 128, ngram: 3, dropout: {size.dropout}}}",
                encoder, "  head: {kind: tagging}"]
    return ["model:", "  embed: {dropout: 0.1}",
            encoder_line(ModelSize(256, 3, 512, 4, 0.1, f"{profile.train_examples:,} training pairs: the Multi30k "
                                   "recipe (3 + 3 layers, 256 wide)")),
            "  head:", "    kind: seq2seq", "    label_smoothing: 0.1",
            "    decoder: {num_layers: 3, ffn_dim: 512, dropout: 0.1, tie_embeddings: all, beam_size: 5}"]


def recipe_lines(profile: Profile) -> list[str]:
    """Optimiser settings of the mode's recipe (the shipped configs' values)."""
    if long_text(profile):
        return ["  lr: 2.0e-3             # the IMDB recipe's (a narrow model takes a larger step)", "  weight_decay: 0.05",
                "  ema_horizon: 0.1"]
    if profile.mode == "sequence" and profile.kind == "text":
        return ["  lr: 5.0e-4", "  weight_decay: 0.1", "  ema_horizon: 0.1       # keep an average of the weights "
                "over the last ~10% of the steps"]
    if profile.mode == "seq2seq":
        return ["  lr: 1.0e-3"]
    return ["  lr: 1.0e-3", "  weight_decay: 0.05", "  ema_horizon: 0.1"]

