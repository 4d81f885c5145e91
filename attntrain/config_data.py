"""The data: section of a config (sources, inputs, targets, splits, audio, images, graphs, translation);
attntrain/config.py holds the rest and the loading. Typed, each field with a default and a comment."""

from __future__ import annotations

import re
from typing import Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from attntrain import choices
from attntrain.config_base import Section, choice_of


class TranslationConfig(Section):
    """data.translation: sentence pairs read from <split>.<lang>.gz files (task: translation)."""

    source: str = "de"  # source language: file suffix of the input side
    target: str = "en"  # target language: file suffix of the output side
    joint_vocab: bool = True  # one BPE vocabulary for both languages (required by tie_embeddings: all)
    vocab_size: int = Field(8000, ge=300)  # BPE vocabulary size (each, when separate), specials and 256 bytes included
    # learn the BPE from a seeded sample of at most N training pairs (null: from all of them); the default
    # covers Multi30k's 29,000 whole and keeps learning on a large corpus to seconds
    vocab_sample: Optional[int] = Field(100_000, ge=1)


class AudioConfig(Section):
    sample_rate: int = Field(8000, ge=1)  # wavs at another rate are resampled to this one
    window_ms: float = Field(25.0, gt=0)  # frame length: one vector per window
    hop_ms: float = Field(10.0, gt=0)  # frame step (10 ms -> ~100 vectors per second)
    features: Literal["raw", "logmel", "mfcc"] = "logmel"  # per-frame vector: samples, log-mel, or MFCC
    n_mels: int = Field(40, ge=1)  # mel bands (logmel, mfcc)
    n_mfcc: int = Field(13, ge=1)  # cepstral coefficients kept (mfcc)


class SourceConfig(Section):
    """data.source: where rows come from (attntrain/data/sources/readers.py)."""

    format: str  # csv | tsv | jsonl | parquet | text | parallel | conll | conllu | audiofolder | imagefolder | idx | labeled_lines | hf | graph
    files: Optional[dict[str, Union[str, list[str]]]] = None  # {train: .., dev: .., test: ..} -> file(s) or glob(s); graph: {nodes: .., edges: ..}
    path: Optional[str] = None  # everything in one file / folder / glob (split by data.split), or an hf save_to_disk folder
    columns: Optional[list[str]] = None  # conll: names of the whitespace/tab columns (default [tokens, tags]); labeled_lines: [label, text]
    languages: list[str] = []  # parallel: the two file suffixes, e.g. [de, en]; they become the field names
    name: Optional[str] = None  # hf: dataset name, read from the local Hugging Face cache; planetoid: the name in ind.NAME.x
    config: Optional[str] = None  # hf: dataset configuration name
    # more training rows: one source or a list of them, each in any format, joined to train after the dev/test
    # split; rows whose input equals a dev/test input are dropped (attntrain/data/tasks/added.py)
    add_train: Optional[list[SourceConfig]] = None
    field: Optional[str] = None  # add_train: this source's input field when not data.input.field (renamed to it)
    dataset: Optional[str] = None  # add_train: folder under the data root for this source's relative files (default data.dataset)
    ptb_escapes: bool = False  # add_train text: lowercase and write ( ) / as -lrb- -rrb- \\/ to match PTB-tokenised files
    name_pattern: Optional[str] = None  # folders and text files: a regex over each file name whose named groups become fields, e.g. (?P<digit>\d)_(?P<speaker>\w+)_

    _format = choice_of(choices.FORMATS, "format")

    @field_validator("name_pattern")
    @classmethod
    def _pattern_compiles(cls, value):
        if value is not None:
            try:
                if not re.compile(value).groupindex:
                    raise ValueError(f"'{value}' has no named group (?P<field>...), so it names no field")
            except re.error as e:
                raise ValueError(f"'{value}' is not a regular expression ({e})") from None
        return value


    @field_validator("add_train", mode="before")
    @classmethod
    def _one_source_or_a_list(cls, value):
        """One source (as configs before lists wrote it) is a list of one."""
        return [value] if isinstance(value, (dict, SourceConfig)) else value

    @model_validator(mode="after")
    def _options_the_format_reads(self):
        """An option the format's reader never reads is refused, never silently ignored."""
        for option, formats in SOURCE_OPTIONS.items():
            if getattr(self, option) not in (None, [], False) and self.format not in formats:
                raise ValueError(f"{option}: format {self.format} does not read it (only {', '.join(formats)} "
                                 "do); remove it")
        if self.files and self.path:
            raise ValueError("files and path: give one (files: a file per split; path: everything, split later)")
        if self.format == "planetoid" and not (self.path and self.name):
            raise ValueError("format planetoid: give path (the folder of the ind.NAME.* files) and name (e.g. cora)")
        return self


# which formats read each optional source setting (ptb_escapes: rows of add_train, which may be any table)
SOURCE_OPTIONS = {"columns": ("conll", "labeled_lines"), "languages": ("parallel",), "name": ("hf", "planetoid"),
                  "config": ("hf",), "name_pattern": ("text", "audiofolder", "imagefolder")}
ADDED_ONLY = ("ptb_escapes", "field", "dataset")  # source settings only an add_train source reads
SourceConfig.model_rebuild()


class InputConfig(Section):
    """data.input: which field is the input and how it becomes vectors."""

    field: Union[str, list[str]] = "text"  # input field (text, tokens, audio/image path, node features); graph: or a list
    kind: str = "text"  # text | audio | image | graph (attntrain/data/inputs/kinds.py)
    # raw text -> tokens (token lists are kept as they are): english (UD/PTB-like regex) | words | whitespace | bert |
    # learned (the token boundaries of train's token-list inputs; train's text inputs too are cut by them) |
    # auto (learned when every train input is a token list, else english)
    tokenizer: str = "auto"
    html_breaks: bool = False  # text holds HTML line breaks (<br />, as scraped reviews do): read them as spaces

    _kind = choice_of(choices.INPUT_KINDS, "kind")

    _tokenizer = choice_of(choices.TOKENIZERS, "tokenizer")

    @model_validator(mode="after")
    def _field_list_is_graph_only(self):
        if isinstance(self.field, list) and self.kind != "graph":
            raise ValueError(f"field: a list of fields is read by kind graph only (kind is {self.kind})")
        if isinstance(self.field, list) and not self.field:
            raise ValueError("field: an empty list names no feature")
        return self


class TargetConfig(Section):
    """data.target: which field holds what the model predicts (its shape follows model.head.kind)."""

    field: str = "label"  # a class label (sequence), a tag list (tagging) or the target text (seq2seq)
    scheme: Literal["auto", "none", "iob2", "bioes"] = "auto"  # tagging: span scheme (auto: from the tag set)
    labels: Optional[list[str]] = None  # the whole label / tag set when known in advance (e.g. UPOS); default: from train
    names: Optional[list[str]] = None  # integer labels 0..K-1 stand for these names (label i is names[i]), e.g. [negative, positive]
    repair: Literal["none", "iob1"] = "none"  # tagging: iob1 converts IOB1 tags (I-X may open a span) to IOB2 (B-X opens every span)

    @model_validator(mode="after")
    def _repair_needs_iob(self):
        if self.repair == "iob1" and self.scheme not in ("auto", "iob2"):
            raise ValueError(f"repair: iob1 converts IOB1 to IOB2 tags; it does not fit scheme {self.scheme}")
        return self


class SplitConfig(Section):
    """data.split: how rows without a given split are divided (fractions), seeded and saved with the run."""

    column: Optional[str] = None  # a field holding train / dev (validation) / test, or values listed in `values`
    values: Optional[dict[Literal["dev", "test"], list[Union[int, str]]]] = None  # column values meaning dev / test; any other trains
    dev: float = Field(0.1, ge=0.0)  # held out as dev (also from a train file when no dev file is given): a fraction, or a count of rows when >= 1
    test: float = Field(0.1, ge=0.0, lt=1.0)  # fraction held out as test (only when everything comes in one set)
    seed: int = Field(0, ge=0)  # seed of the split (independent of the run seed)
    folds: int = Field(1, ge=1)  # k-fold cross-validation: k runs, each fold the test set once (`fit --folds K`); data with its own train split: folds of train, each fold dev once, the given test kept
    fold: Optional[int] = Field(None, ge=0)  # which fold is the test set (set per run by --folds)

    @field_validator("dev")
    @classmethod
    def _fraction_or_count(cls, value):
        if value >= 1 and value != int(value):
            raise ValueError(f"{value} is neither a fraction (below 1) nor a whole number of rows")
        return value

    @model_validator(mode="after")
    def _values_need_column(self):
        if self.values and not self.column:
            raise ValueError("values: name the field they are values of in split.column")
        return self


class GraphConfig(Section):
    """data.graph: a node table + an edge table (data.source.format: graph), and how any graph is prepared."""

    node_id: str = "id"  # node table: the field naming each node (integers or strings); edges and `predict` use it
    edge_fields: tuple[str, str] = ("source", "target")  # edge table: node-id fields (target attends to source)
    undirected: bool = True  # also add each edge reversed (an edge listed both ways is kept once); false: as listed
    normalize: Literal["rows", "none"] = "rows"  # rows: features / their absolute sum (as Planetoid); none: as given


class ImageConfig(Section):
    size: tuple[int, int] = (28, 28)  # every image is resized to (height, width)
    channels: Literal["auto", "gray", "rgb"] = "auto"  # gray: 1 value per pixel; rgb: a pixel is a vector of 3
    mean: Optional[list[float]] = None  # per-channel pixel mean (of values in [0,1]) when known; default: from train
    std: Optional[list[float]] = None  # per-channel pixel standard deviation, with mean

    @model_validator(mode="after")
    def _mean_with_std(self):
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std: give both (declared statistics) or neither (measured on train)")
        return self


class DataConfig(Section):
    task: str = "ud_pos"  # a shipped dataset (see `attntrain.data.TASKS`); ignored when data.source is given
    root: Optional[str] = None  # data root; default $ATTNTRAIN_DATA, then ../shared/data
    dataset: Optional[str] = None  # folder under the data root (relative data.source files resolve there)
    source: Optional[SourceConfig] = None  # your own data: format and files (instead of task)
    input: InputConfig = InputConfig()  # with source: the input field and kind
    target: TargetConfig = TargetConfig()  # with source: the target field
    split: SplitConfig = SplitConfig()  # with source: how to split rows that come without splits
    image: ImageConfig = ImageConfig()  # image inputs from files
    graph: GraphConfig = GraphConfig()  # graphs (task planetoid, source format graph): fields, edges, scaling
    translation: TranslationConfig = TranslationConfig()  # task translation: languages and subword vocabulary
    max_tokens: int = Field(4000, ge=1)  # training batch size in (padded) tokens
    eval_max_tokens: int = Field(8000, ge=1)  # evaluation batch size in (padded) tokens
    max_len: int = Field(256, ge=1)  # longer sequences are truncated (training) or split (never dropped)
    train_limit: Optional[int] = Field(None, ge=1)  # use only the first N training examples
    train_fraction: Optional[float] = Field(None, gt=0, le=1)  # train on a seeded random fraction of the training examples; smaller fractions are subsets of larger ones (same data.subset_seed)
    train_examples: Optional[int] = Field(None, ge=1)  # or on this many (the same nested order); graphs: labelled train nodes
    subset_seed: Optional[int] = Field(None, ge=0)  # seed of the training-subset order (null: the run's seed, so `--seeds` also draws other subsets)
    eval_limit: Optional[int] = Field(None, ge=1)  # use only the first N dev/test examples
    graph_mask: Literal["edges", "none"] = "edges"  # graphs: attend along edges (+ self loops) or to all nodes
    label: str = "default"  # which label to predict when a dataset has several (fsdd: digit | speaker)
    dev_size: int = Field(5000, ge=1)  # datasets without a dev split (mnist, imdb): hold out N training examples
    phrases: bool = False  # sst2: add the GLUE SST-2 training phrases (dev/test sentences removed)
    truncate: Literal["head", "head_tail"] = "head"  # inputs over max_len: keep the start, or start + end
    patch: int = Field(7, ge=1)  # images: patch side in pixels (1 = a vector per pixel)
    audio: AudioConfig = AudioConfig()

    _task = choice_of(choices.TASKS, "task")

    @model_validator(mode="after")
    def _one_subset_size(self):
        if self.train_fraction is not None and self.train_examples is not None:
            raise ValueError("train_fraction and train_examples: give one (both size the training subset)")
        return self

    @model_validator(mode="after")
    def _graph_source_has_graph_input(self):
        """A node table only makes sense as graph input, and graph input only comes from node tables."""
        if self.source is None:
            return self
        if (self.source.format in choices.GRAPH_FORMATS) != (self.input.kind == "graph"):
            raise ValueError("source.format graph / planetoid goes with input.kind graph (node features), and only with it "
                             f"(got format {self.source.format}, kind {self.input.kind})")
        return self

    @model_validator(mode="after")
    def _added_sources_only(self):
        """field / dataset / ptb_escapes belong to add_train sources; an added source adds no sources itself."""
        if self.source is None:
            return self
        for option in ADDED_ONLY:
            if getattr(self.source, option) not in (None, False):
                raise ValueError(f"source.{option}: read for add_train rows only (set it inside source.add_train)")
        if self.source.add_train and self.source.format in choices.GRAPH_FORMATS:
            raise ValueError(f"source.add_train: a graph ({self.source.format}) is one graph, not rows to add to")
        for index, extra in enumerate(self.source.add_train or []):
            if extra.add_train:
                raise ValueError(f"source.add_train[{index}].add_train: list every added source in "
                                 "source.add_train itself")
        return self
