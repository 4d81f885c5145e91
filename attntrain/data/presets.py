"""Shipped datasets as presets: a `data.source` block with field names and split files, nothing else.

`data.task: ud_pos` (for example) fills in the source below when the config has none, and the run's
saved config.yaml holds the expanded block, so the run reads exactly like a user's own data.
"""

from __future__ import annotations

UPOS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X"]  # Universal POS tags (universaldependencies.org/u/pos)

PRESETS: dict[str, dict] = {
    # UPOS tagging on a UD treebank: any *-ud-{train,dev,test}.conllu in the dataset folder.
    "ud_pos": {"source": {"format": "conllu", "files": {s: f"*-ud-{s}.conllu" for s in ("train", "dev", "test")}},
               "input": {"field": "words", "kind": "text"},
               "target": {"field": "upos", "scheme": "none", "labels": UPOS}},  # the 17 UD tags, whatever train has
    # WNUT-17 emerging entities: raw token<TAB>tag files.
    "wnut17": {"source": {"format": "conll", "columns": ["tokens", "tags"],
                          "files": {"train": "wnut17train.conll", "dev": "emerging.dev.conll",
                                    "test": "emerging.test.annotated"}},
               "input": {"field": "tokens", "kind": "text"}, "target": {"field": "tags", "scheme": "iob2"}},
}


DEFAULT_FOLDERS = {"ud_pos": "ud_en_ewt", "wnut17": "wnut17", "translation": "multi30k"}  # when data.dataset is unset


def translation_preset(data_cfg) -> dict:
    """Multi30k layout: raw/{train,val,test_2016_flickr}.<lang>.gz, languages from data.translation."""
    from attntrain.data.translation import FILES

    source, target = data_cfg.translation.source, data_cfg.translation.target
    return {"source": {"format": "parallel", "languages": [source, target],
                       "files": {split: f"raw/{stem}" for split, stem in FILES.items()}},
            "input": {"field": source, "kind": "text"}, "target": {"field": target}}


def expand_preset(cfg) -> None:
    """Fill cfg.data.source / input / target from the preset named by data.task (in place)."""
    from attntrain.config import InputConfig, SourceConfig, TargetConfig

    data = cfg.data
    if data.source is not None:
        return
    preset = translation_preset(data) if data.task == "translation" else PRESETS.get(data.task)
    if preset is None:
        return
    data.dataset = data.dataset or DEFAULT_FOLDERS.get(data.task, data.task)
    data.source = SourceConfig(**preset["source"])
    data.input = InputConfig(**{**data.input.model_dump(), **preset["input"]})
    data.target = TargetConfig(**{**data.target.model_dump(), **preset["target"]})
