"""Shipped datasets as presets: a `data.source` block with field names and split files, nothing else.

`data.task: ud_pos` (for example) fills in the source below when the config has none, and the run's
saved config.yaml holds the expanded block, so the run reads exactly like a user's own data.
"""

from __future__ import annotations

from typing import Any, Callable

from attntrain.data.tagsets import UPOS

DIGITS = [str(d) for d in range(10)]
SENTIMENT = ["negative", "positive"]
LABEL_CHOICES = {"fsdd": ("default", "digit", "speaker")}  # presets with several labels: data.label's values


def fsdd(data) -> dict:
    """Free Spoken Digit Dataset: recordings/{digit}_{speaker}_{index}.wav; index 0-4 test, 5-9 dev, 10-49 train."""
    label = "digit" if data.label == "default" else data.label
    return {"source": {"format": "audiofolder", "path": "recordings",
                       "name_pattern": r"(?P<digit>\d)_(?P<speaker>[^_]+)_(?P<index>\d+)\.wav$"},
            "input": {"field": "path", "kind": "audio"},
            "target": {"field": label, "labels": DIGITS if label == "digit" else None},
            "split": {"column": "index", "values": {"test": list(range(5)), "dev": list(range(5, 10))}}}


def sst2(data) -> dict:
    """SST-2 as Kim (2014) split it (stsa_binary/stsa.binary.{train,dev,test}, PTB-tokenised); with
    data.phrases, the GLUE SST-2 training phrases are added to train, less any equal to a dev/test sentence."""
    phrases = {"format": "tsv", "files": {"train": "glue_sst2/train.tsv"}, "ptb_escapes": True}
    return {"source": {"format": "labeled_lines", "columns": ["label", "sentence"],
                       "files": {s: f"stsa_binary/stsa.binary.{s}" for s in ("train", "dev", "test")},
                       "add_train": phrases if data.phrases else None},
            "input": {"field": "sentence", "kind": "text", "tokenizer": "whitespace"},
            "target": {"field": "label", "names": SENTIMENT}}


PRESETS: dict[str, Callable[[Any], dict]] = {
    # UPOS tagging on a UD treebank: any *-ud-{train,dev,test}.conllu in the dataset folder.
    "ud_pos": lambda data: {
        "source": {"format": "conllu", "files": {s: f"*-ud-{s}.conllu" for s in ("train", "dev", "test")}},
        "input": {"field": "words", "kind": "text"},
        "target": {"field": "upos", "scheme": "none", "labels": UPOS}},  # the 17 UD tags, whatever train has
    # WNUT-17 emerging entities: raw token<TAB>tag files.
    "wnut17": lambda data: {
        "source": {"format": "conll", "columns": ["tokens", "tags"],
                   "files": {"train": "wnut17train.conll", "dev": "emerging.dev.conll", "test": "emerging.test.annotated"}},
        "input": {"field": "tokens", "kind": "text"}, "target": {"field": "tags", "scheme": "iob2"}},
    # IMDB reviews: {train,test}.jsonl.gz of {"text", "label": 0|1}; data.dev_size training reviews held out as dev.
    "imdb": lambda data: {
        "source": {"format": "jsonl", "files": {"train": "train.jsonl.gz", "test": "test.jsonl.gz"}},
        "input": {"field": "text", "kind": "text", "tokenizer": "english", "html_breaks": True},
        "target": {"field": "label", "names": SENTIMENT}, "split": {"dev": data.dev_size}},
    # MNIST digits from the original IDX files; data.dev_size training images held out as dev.
    "mnist": lambda data: {
        "source": {"format": "idx", "files": {"train": "train-*-ubyte*", "test": "t10k-*-ubyte*"}},
        "input": {"field": "image", "kind": "image"}, "target": {"field": "label", "labels": DIGITS},
        "split": {"dev": data.dev_size},
        "image": {"size": [28, 28], "channels": "gray", "mean": [0.1307], "std": [0.3081]}},  # MNIST train statistics
    "fsdd": fsdd,
    "sst2": sst2,
}
PRESET_SECTIONS = ("input", "target", "split", "image")  # data sections a preset may set besides the source


DEFAULT_FOLDERS = {"ud_pos": "ud_en_ewt", "wnut17": "wnut17", "translation": "multi30k"}  # when data.dataset is unset


def translation_preset(data_cfg) -> dict:
    """Multi30k layout: raw/{train,val,test_2016_flickr}.<lang>.gz, languages from data.translation."""
    from attntrain.data.tasks.translation import FILES

    source, target = data_cfg.translation.source, data_cfg.translation.target
    return {"source": {"format": "parallel", "languages": [source, target],
                       "files": {split: f"raw/{stem}" for split, stem in FILES.items()}},
            "input": {"field": source, "kind": "text"}, "target": {"field": target}}


def expand_preset(cfg) -> None:
    """Fill cfg.data.source / input / target from the preset named by data.task (in place)."""
    from attntrain.config import SourceConfig

    data = cfg.data
    if data.source is not None:
        return
    preset = translation_preset(data) if data.task == "translation" else PRESETS[data.task](data) \
        if data.task in PRESETS else None
    if preset is None:
        return
    data.dataset = data.dataset or DEFAULT_FOLDERS.get(data.task, data.task)
    data.source = SourceConfig(**preset["source"])
    for section in PRESET_SECTIONS:
        if section in preset:
            current = getattr(data, section)
            setattr(data, section, type(current)(**{**current.model_dump(), **preset[section]}))
