"""The names every `name -> component` table accepts, importable without torch.

The tables themselves (attention scores, positions, encoders, heads, input kinds, sources, tasks) live
beside the code they build and import torch or a data library. Config validation, `attntrain validate`
and `--help` need only the names, and must answer in well under a second, so the names sit here;
tests/test_startup.py asserts that each tuple equals the keys of its table, in order. The module sits below
the data and model floors, so it imports none of them: plain names only.
"""

from __future__ import annotations

# model.encoder.attention.score / .normalize: attntrain.model.attention.SCORES / NORMALIZERS
SCORES = ("dot", "additive")
NORMALIZERS = ("softmax", "relu")
# model.embed.kind: attntrain.model.embed.TEXT_VECTORS
TEXT_VECTORS = ("learned", "onehot")
# model.encoder.kind / .position: attntrain.model.encoder.ENCODERS, attntrain.model.positional.POSITIONS
ENCODERS = ("transformer", "cnn", "rnn", "gat")
POSITIONS = ("sinusoidal", "learned", "rotary", "none")
# model.head.kind: attntrain.model.heads.HEADS
HEADS = ("tagging", "sequence", "seq2seq", "pretrain")  # pretrain: `attntrain pretrain`

# data.source.format: attntrain.data.sources.readers.FORMATS (its readers, then hf, graph and planetoid)
FORMATS = ("csv", "tsv", "jsonl", "parquet", "text", "labeled_lines", "parallel", "conll", "conllu", "audiofolder",
           "imagefolder", "idx", "hf", "graph", "planetoid")
GRAPH_FORMATS = ("graph", "planetoid")  # one graph (input kind graph): node + edge tables, Planetoid's ind.* files
# data.input.kind / .tokenizer: attntrain.data.inputs.kinds.INPUT_KINDS / TOKENIZERS
INPUT_KINDS = ("text", "audio", "image", "graph")
TOKENIZERS = ("whitespace", "english", "words", "bert", "learned", "auto")
# data.task: attntrain.data.TASKS (the Planetoid graph, the presets of attntrain.data.tasks.presets.PRESETS, translation)
TASKS = ("planetoid", "ud_pos", "wnut17", "imdb", "mnist", "fsdd", "sst2", "translation")
# data.label: attntrain.data.tasks.presets.LABEL_CHOICES, the presets that predict one of several labels (the value picks
# the target field); the others have one.
TASK_LABELS = {"fsdd": ("default", "digit", "speaker")}

# Dev metrics each head's meter reports, i.e. the valid values of train.metric (checked before training).
# f1 / precision / recall: entity scores, reported for span tags (IOB2 / BIOES) only.
METRICS = {"tagging": ("accuracy", "oov_accuracy", "f1", "precision", "recall", "loss"),
           "sequence": ("accuracy", "macro_f1", "loss"), "seq2seq": ("bleu", "bleu_lc", "chrf", "loss"),
           "pretrain": ("loss", "accuracy")}  # accuracy: masked words predicted (text only)
