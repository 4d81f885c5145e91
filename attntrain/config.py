"""Typed, validated configuration: YAML (safe loading) -> `Config`.

Every field is typed, has a default and a comment. Unknown or misspelt keys, wrong types and
out-of-range values become one `UserError` naming the key path (and the nearest valid key).
"""

from __future__ import annotations

import copy
import io
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from attntrain import choices
from attntrain.errors import UserError
from attntrain.registry import check_choice, suggest


class Section(BaseModel):
    """Base of every config section: unknown keys are rejected, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def choice_of(names: tuple[str, ...], field: str):
    """A validator that checks `field` against the names of a table (attntrain.choices: no torch import)."""
    return field_validator(field)(lambda cls, v: check_choice(names, v))


class AttentionConfig(Section):
    score: str = "dot"  # how relevance alpha(q, k) is scored: dot | additive
    normalize: str = "softmax"  # how scores become weights: softmax | relu
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # dropout on attention weights (0 keeps SDPA's fast kernel)
    window: Optional[int] = Field(None, ge=1)  # local attention: attend only to |i - j| <= window
    additive_chunk_mb: float = Field(256.0, gt=0)  # additive score: MB its (B,H,T,S,E) hidden may take; queries are chunked beyond

    _score = choice_of(choices.SCORES, "score")

    _normalize = choice_of(choices.NORMALIZERS, "normalize")


def odd_width(v: int) -> int:
    """Convolution widths must be odd (or 0 = off) so that the sequence length is kept."""
    if v % 2 == 0 and v != 0:
        raise ValueError("must be odd so that a convolution keeps the sequence length")
    return v


class TranslationConfig(Section):
    """data.translation: sentence pairs read from <split>.<lang>.gz files (task: translation)."""

    source: str = "de"  # source language: file suffix of the input side
    target: str = "en"  # target language: file suffix of the output side
    joint_vocab: bool = True  # one BPE vocabulary for both languages (required by tie_embeddings: all)
    vocab_size: int = Field(8000, ge=300)  # BPE vocabulary size (each, when separate), specials and 256 bytes included
    # learn the BPE from a seeded sample of at most N training pairs (null: from all of them); the default
    # covers Multi30k's 29,000 whole and keeps learning on a large corpus to seconds
    vocab_sample: Optional[int] = Field(100_000, ge=1)


class DecoderConfig(Section):
    """model.head.decoder: the decoder and the search of the seq2seq head.

    Width, heads, attention scoring/normalisation and positional encoding follow model.encoder.
    """

    num_layers: int = Field(3, ge=1)  # blocks of masked self-attention + cross-attention + feed-forward
    ffn_dim: int = Field(1024, ge=0)  # feed-forward hidden width; 0 = none
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # residual and target-embedding dropout
    tie_embeddings: Literal["none", "decoder", "all"] = "decoder"  # decoder: input = output embedding; all: + source
    beam_size: int = Field(5, ge=1)  # beam width of test evaluation, `attntrain eval` and `predict`; 1 = greedy
    dev_beam_size: int = Field(1, ge=1)  # beam width of dev evaluations (which choose the best checkpoint)
    length_penalty: float = Field(1.0, ge=0.0)  # beam: finished hypotheses rank by log-prob / length ** this
    max_len_ratio: float = Field(1.5, gt=0.0)  # output stops after max_len_ratio * source tokens + max_len_extra
    max_len_extra: int = Field(10, ge=1)  # constant part of the output length limit
    cache: bool = True  # decode with a key/value cache; false recomputes the prefix each step (tests, benchmarks)
    # 13a: as published scores; zh / ja-mecab (needs sacrebleu[ja]) / char: languages written without spaces
    bleu_tokenize: Literal["13a", "intl", "zh", "ja-mecab", "char", "none"] = "13a"  # sacreBLEU's BLEU tokeniser

    @field_validator("bleu_tokenize")
    @classmethod
    def _tokenizer_installed(cls, value):
        import importlib.util

        if value == "ja-mecab" and not all(importlib.util.find_spec(m) for m in ("MeCab", "ipadic")):
            raise ValueError("ja-mecab needs the MeCab and ipadic packages: pip install 'sacrebleu[ja]' "
                             "(or use char)")
        return value


class EmbedConfig(Section):
    kind: str = "learned"  # text input vectors: learned (embedding table) | onehot (one-hot -> linear)
    word_dim: int = Field(128, ge=1)  # width of the word vector before projection to the model width
    min_freq: int = Field(1, ge=1)  # words seen fewer times in train map to <unk>
    lowercase: bool = True  # word vocabulary is case-folded (characters keep the case)
    word_dropout: float = Field(0.0, ge=0.0, lt=1.0)  # train-time chance of replacing a word by <unk>
    char_dim: int = Field(0, ge=0)  # character embedding width; 0 turns character features off
    shape_dim: int = Field(0, ge=0)  # text: width of a word-shape vector (case, digits, @user, #tag, URL); 0 = off
    char_filters: int = Field(128, ge=1)  # channels of the character CNN
    char_kernel: int = Field(3, ge=1)  # width of the character CNN kernel
    max_word_chars: int = Field(20, ge=1)  # longer words keep their first and last characters
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # dropout on the input vectors
    ngram: int = Field(0, ge=0)  # text: width of a convolution over neighbouring word vectors (local n-grams); 0 = off
    image_position: Literal["sinusoidal", "learned", "none"] = "sinusoidal"  # images: 2-D encoding of the patch grid
    shift: int = Field(0, ge=0)  # images: train-time random translation by up to N pixels (augmentation)
    # sub-word pieces of a pretrained tokenizer (model.init: hf:..., which sets these from the checkpoint):
    positions: int = Field(0, ge=0)  # pieces: learned absolute positions added before the norm (BERT: 512); 0 = none
    token_types: int = Field(0, ge=0)  # pieces: token-type (segment) vectors, type 0 added to every piece (BERT: 2); 0 = none
    norm: bool = False  # pieces: LayerNorm of the summed input vectors (BERT's embedding LayerNorm)
    norm_eps: float = Field(1e-5, gt=0.0)  # pieces: epsilon of that LayerNorm (BERT-family checkpoints: 1e-12)
    # text, kind learned: start the word table from a file: word2vec text/binary, GloVe .txt, fastText .vec (.gz too);
    # its width must equal word_dim; vocabulary words match exactly, then case-folded
    vectors: Optional[str] = None
    vectors_trainable: bool = True  # the loaded word vectors train with the model; false: they stay as loaded
    vectors_extend: bool = False  # add the file's words that train lacks to the vocabulary, so they keep their vector

    _kind = choice_of(choices.TEXT_VECTORS, "kind")

    @model_validator(mode="after")
    def _extend_needs_vectors(self):
        if self.vectors_extend and not self.vectors:
            raise ValueError("vectors_extend: name the vector file in model.embed.vectors")
        return self

    _odd_ngram = field_validator("ngram")(lambda cls, v: odd_width(v))


class EncoderConfig(Section):
    kind: str = "transformer"  # encoder family: transformer | cnn | rnn | gat
    num_layers: int = Field(2, ge=1)  # number of self-attention blocks
    width: int = Field(256, ge=1)  # model width D
    num_heads: int = Field(4, ge=1)  # attention heads; width must be divisible by it
    output_heads: int = Field(1, ge=1)  # gat: heads of the last layer, each over the whole width, averaged
    ffn_dim: int = Field(1024, ge=0)  # hidden width of the position-wise feed-forward layer; 0 = none
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # residual dropout (gat: dropout on each layer input)
    residual: bool = True  # add each attention output to its input; false = replace (as GAT layers do)
    kernel_size: int = Field(3, ge=1)  # cnn: convolution width (odd, so the length is kept)
    dilation: int = Field(1, ge=1)  # cnn: layer i uses dilation ** i (1 = plain stacked convolutions)
    rnn_cell: Literal["lstm", "gru"] = "lstm"  # rnn: recurrent cell
    bidirectional: bool = Field(True, validate_default=True)  # rnn: read both directions (each gets width / 2)
    position: str = "sinusoidal"  # positional encoding: sinusoidal | learned | rotary | none
    max_len: int = Field(512, ge=1)  # longest sequence a learned position table covers
    norm: Literal["pre", "post"] = "pre"  # transformer: pre: x + f(norm(x)), a final norm; post: norm(x + f(x)) (BERT)
    norm_eps: float = Field(1e-5, gt=0.0)  # transformer: LayerNorm epsilon (BERT-family checkpoints: 1e-12)
    activation: Literal["gelu", "gelu_tanh", "relu"] = "gelu"  # transformer: feed-forward activation (gelu: exact erf)
    attention: AttentionConfig = AttentionConfig()

    _kind = choice_of(choices.ENCODERS, "kind")

    _position = choice_of(choices.POSITIONS, "position")

    @field_validator("bidirectional")
    @classmethod
    def _even_width(cls, v: bool, info) -> bool:
        if v and info.data.get("kind") == "rnn" and info.data.get("width", 0) % 2:
            raise ValueError(f"a bidirectional rnn needs an even width (got {info.data['width']})")
        return v

    _odd_kernel = field_validator("kernel_size")(lambda cls, v: odd_width(v))

    @field_validator("num_heads")
    @classmethod
    def _heads_divide_width(cls, v: int, info) -> int:
        width = info.data.get("width")
        if width is not None and width % v:
            raise ValueError(f"must divide width={width}")
        return v


class HeadConfig(Section):
    kind: str = "tagging"  # output mode: tagging (a label per vector) | sequence (one label per input) | seq2seq | pretrain (self-supervised: `attntrain pretrain`)
    pooling: Literal["cls", "mean", "attention"] = "mean"  # sequence: [CLS] vector, mean, or attention pooling
    decode: Literal["auto", "argmax", "constrained"] = "auto"  # tagging: auto = constrained for span tags (BIO), else argmax
    crf: bool = False  # tagging: a linear-chain CRF output layer (trained by the forward algorithm, Viterbi decoding)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # dropout before the output layer
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)  # cross-entropy label smoothing
    decoder: DecoderConfig = DecoderConfig()  # kind seq2seq: the decoder and its search

    _kind = choice_of(choices.HEADS, "kind")


class ModelConfig(Section):
    # start from trained weights: a run directory or a .safetensors file (attntrain pretrain / fit), or
    # hf:NAME_OR_FOLDER (a BERT-family checkpoint); the head always starts fresh
    init: Optional[str] = None
    embed: EmbedConfig = EmbedConfig()
    encoder: EncoderConfig = EncoderConfig()
    head: HeadConfig = HeadConfig()


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
    name: Optional[str] = None  # hf: dataset name, read from the local Hugging Face cache
    config: Optional[str] = None  # hf: dataset configuration name
    add_train: Optional[SourceConfig] = None  # more training rows from another source (same field names); rows whose input equals a dev/test input are dropped
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


    @model_validator(mode="after")
    def _options_the_format_reads(self):
        """An option the format's reader never reads is refused, never silently ignored."""
        for option, formats in SOURCE_OPTIONS.items():
            if getattr(self, option) not in (None, [], False) and self.format not in formats:
                raise ValueError(f"{option}: format {self.format} does not read it (only {', '.join(formats)} "
                                 "do); remove it")
        if self.files and self.path:
            raise ValueError("files and path: give one (files: a file per split; path: everything, split later)")
        return self


# which formats read each optional source setting (ptb_escapes: rows of add_train, which may be any table)
SOURCE_OPTIONS = {"columns": ("conll", "labeled_lines"), "languages": ("parallel",), "name": ("hf",),
                  "config": ("hf",), "name_pattern": ("text", "audiofolder", "imagefolder")}
SourceConfig.model_rebuild()


class InputConfig(Section):
    """data.input: which field is the input and how it becomes vectors."""

    field: Union[str, list[str]] = "text"  # input field (text, tokens, audio/image path, node features); graph: or a list
    kind: str = "text"  # text | audio | image | graph (attntrain/data/inputs/kinds.py)
    tokenizer: str = "english"  # text given as a string: english (UD/PTB-like regex) | words | whitespace | bert
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
    folds: int = Field(1, ge=1)  # k-fold cross-validation: k runs, each fold the test set once (`fit --folds K`)
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
    def _graph_source_has_graph_input(self):
        """A node table only makes sense as graph input, and graph input only comes from node tables."""
        if self.source is None:
            return self
        if self.source.ptb_escapes:
            raise ValueError("source.ptb_escapes: respells add_train rows only (set it inside source.add_train)")
        if (self.source.format == "graph") != (self.input.kind == "graph"):
            raise ValueError("source.format graph goes with input.kind graph (node features), and only with it "
                             f"(got format {self.source.format}, kind {self.input.kind})")
        return self


class PretrainConfig(Section):
    """pretrain: the self-supervised objective of `attntrain pretrain` (model.head.kind pretrain), by input kind.

    text: masked-token prediction (BERT): a chosen word becomes <mask> (mask_token), a random word
    (random_token) or stays; audio: masked-frame reconstruction (L1 on the normalised log-mel frames of
    masked spans); image: masked-patch reconstruction (squared error on masked patches only, MAE-style).
    Tokens are whole words here (a word vocabulary), so masking a token is whole-word masking already.
    """

    mask_prob: Optional[float] = Field(None, gt=0.0, lt=1.0)  # positions chosen; default by input kind: text 0.15, audio 0.4, image 0.6
    mask_token: float = Field(0.8, ge=0.0, le=1.0)  # text: share of chosen words replaced by <mask>
    random_token: float = Field(0.1, ge=0.0, le=1.0)  # text: share replaced by a random word (the rest stay as they are)
    span: Optional[int] = Field(None, ge=1)  # mask runs of N neighbouring positions (words, frames); default text 1, audio 10
    output_words: Optional[int] = Field(None, ge=3)  # text: score only the N most frequent words (a rarer one is to be predicted as <unk>); null: all

    @model_validator(mode="after")
    def _shares_fit(self):
        if self.mask_token + self.random_token > 1.0:
            raise ValueError(f"mask_token + random_token must be at most 1 (got {self.mask_token} + {self.random_token})")
        return self


class TrainConfig(Section):
    device: str = "auto"  # auto (cuda if present) | cpu | cuda | cuda:N
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # mixed precision; auto = bf16 on CUDA, off on CPU
    optimizer: Literal["adamw", "adam"] = "adamw"  # adamw: decoupled weight decay; adam: L2 penalty in the gradient
    lr: float = Field(1e-3, gt=0.0)  # peak learning rate
    weight_decay: float = Field(0.01, ge=0.0)  # AdamW decoupled weight decay (not on norms/biases)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas
    warmup_steps: int = Field(200, ge=0)  # linear warm-up length in optimizer steps (ignored when warmup is set)
    warmup: Optional[float] = Field(None, ge=0.0, lt=1.0)  # warm-up as a fraction of the run (transfers across data sizes)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"  # decay after warm-up
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)  # final lr as a fraction of the peak
    max_epochs: int = Field(10, ge=1)  # passes over the training data
    max_steps: Optional[int] = Field(None, ge=1)  # optimizer steps; overrides max_epochs (and min_steps) when set
    min_steps: Optional[int] = Field(None, ge=1)  # at least this many optimizer steps (more epochs on a small set); max_steps still caps
    grad_clip: Optional[float] = Field(1.0, gt=0.0)  # clip the global gradient norm; null disables
    accumulate: int = Field(1, ge=1)  # batches per optimizer step
    max_nonfinite: int = Field(10, ge=1)  # a step with a NaN/inf loss or gradient norm is skipped; stop (exit 3) after N in a row
    ema: Optional[float] = Field(None, gt=0.0, lt=1.0)  # evaluate/keep an exponential moving average of the weights (decay per step, e.g. 0.999)
    ema_horizon: Optional[float] = Field(None, gt=0.0, le=1.0)  # the same average, its span as a fraction of the run (decay 1 - 1/(horizon x steps))
    eval_every: float = Field(500, gt=0)  # evaluate on dev every N optimizer steps; < 1: a fraction of the run (and at the end)
    log_every: int = Field(50, ge=1)  # write a train record to metrics.jsonl every N steps
    metric: str = "accuracy"  # dev metric that picks the best checkpoint
    metric_mode: Literal["max", "min"] = "max"  # whether a larger metric is better
    patience: Optional[int] = Field(None, ge=1)  # stop after N evaluations without improvement
    eval_splits: list[str] = ["dev", "test"]  # splits evaluated with the best checkpoint at the end
    threads: Optional[int] = Field(None, ge=1)  # torch CPU threads; default leaves torch's choice
    save_every: Optional[int] = Field(None, ge=1)  # checkpoint every N steps; default: at every evaluation
    seeds: int = Field(1, ge=1)  # repeat training with seeds seed, seed+1, ... and report mean and std
    progress: bool = True  # show tqdm progress bars
    tensorboard: bool = False  # also write scalars to runs/<name>/tensorboard/ (needs the tensorboard extra)
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # several processes (torchrun): auto = nccl on CUDA, gloo on CPU
    compile: bool = False  # torch.compile the training forward (for GPUs; on CPU it rarely pays)
    freeze: list[str] = []  # parameters not trained, by name prefix: embed, encoder, encoder.0 (first block), ...
    layer_decay: Optional[float] = Field(None, gt=0.0, le=1.0)  # lr x decay ** depth from the top: head 1, last block decay, ..., embed decay ** (layers + 1)


class SearchRange(Section):
    """tune.space.<dotted key>: a range (low, high; log scale) or a list of choices for one config key."""

    low: Optional[float] = None  # smallest value of a range
    high: Optional[float] = None  # largest value of a range
    log: bool = False  # sample the range on a log scale (learning rates, weight decay)
    step: Optional[float] = None  # range: only multiples of step above low (int ranges: default 1)
    type: Literal["auto", "float", "int"] = "auto"  # range values: auto = int when low and high are whole numbers
    choices: Optional[list[Any]] = None  # a list of values to choose from (instead of a range)

    @model_validator(mode="after")
    def _range_or_choices(self):
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ValueError("give either choices (a non-empty list) or low and high, not both")
            return self
        if self.low is None or self.high is None or self.low > self.high:
            raise ValueError("a range needs low <= high (or give choices: [...])")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        return self

    def is_int(self) -> bool:
        whole = self.low == int(self.low) and self.high == int(self.high)
        return self.type == "int" or (self.type == "auto" and whole and (self.step is None or self.step == int(self.step)))


class TuneConfig(Section):
    """tune: the search of `attntrain tune` (Optuna): the space per dotted key, the sampler and the pruner."""

    space: dict[str, SearchRange] = {}  # dotted config key -> range or choices, e.g. train.lr: {low: 1e-4, high: 3e-3, log: true}
    sampler: Literal["tpe", "random"] = "tpe"  # tpe: Optuna's Tree-structured Parzen Estimator (seeded)
    pruner: Literal["median", "halving", "none"] = "median"  # stop a trial whose dev metric lags: median of earlier trials at the same evaluation, or successive halving
    seed: int = 0  # seed of the sampler
    startup_trials: int = Field(5, ge=0)  # trials sampled at random (and never pruned against) before TPE and the pruner act
    warmup_evals: int = Field(3, ge=0)  # dev evaluations of a trial before it may be pruned

    @field_validator("space")
    @classmethod
    def _known_keys(cls, space):
        for key in space:
            if key.split(".")[0] in ("tune", "name", "runs_dir") or not dotted_key_exists(key):
                raise ValueError(f"'{key}' is not a config key that a trial can change (e.g. train.lr)")
        return space


def dotted_key_exists(dotted: str) -> bool:
    """Whether `a.b.c` names a field of Config (a leaf or a section)."""
    cls: Optional[type[BaseModel]] = Config
    for key in dotted.split("."):
        if cls is None or key not in cls.model_fields:
            return False
        cls = _section_class(cls, key)
    return True


class Config(Section):
    name: Optional[str] = None  # run name: runs/<name>; defaults to the config file's stem
    seed: int = 1  # seeds data order, initialisation and dropout
    runs_dir: str = "runs"  # parent folder of run directories
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tune: TuneConfig = TuneConfig()  # `attntrain tune`: the search space and how trials are chosen and pruned
    pretrain: PretrainConfig = PretrainConfig()  # `attntrain pretrain`: the self-supervised objective

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def run_dir(self) -> Path:
        return Path(self.runs_dir) / str(self.name)


# ---------------------------------------------------------------------------------------------
# Loading


def _section_class(cls: type[BaseModel], key: str) -> Optional[type[BaseModel]]:
    field = cls.model_fields[key]
    ann = field.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _check_keys(raw: Any, cls: type[BaseModel], path: str, source: str) -> None:
    """Reject unknown keys before pydantic does, so the message can suggest the nearest valid one."""
    if not isinstance(raw, dict):
        where = path or "top level"
        raise UserError(f"{source}: '{where}' must be a mapping of keys, got {type(raw).__name__}")
    for key, value in raw.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in cls.model_fields:
            raise UserError(
                f"{source}: unknown key '{full}'{suggest(str(key), cls.model_fields)}; "
                f"valid keys here: {', '.join(cls.model_fields)}"
            )
        sub = _section_class(cls, key)
        if sub is not None and value is not None:
            _check_keys(value, sub, full, source)


def _format_validation(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "config"
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        shown = "" if isinstance(got, dict) or e["type"] == "missing" else f" (got {got!r})"
        lines.append(f"{source}: {path}: {msg}{shown}")
    return "\n".join(lines)


def parse_value(text: str) -> Any:
    """Parse an override value as YAML, so `2`, `1e-3`, `true`, `null` and `[a, b]` get their types."""
    try:
        return yaml.safe_load(io.StringIO(text))
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` overrides to a raw config dict; every key must exist in the schema."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. model.encoder.num_layers=2")
        dotted, text = item.split("=", 1)
        keys = dotted.strip().split(".")
        cls: type[BaseModel] = Config
        node = raw
        for i, key in enumerate(keys):
            path = ".".join(keys[: i + 1])
            if cls is None or key not in cls.model_fields:
                names = cls.model_fields if cls is not None else []
                raise UserError(f"--set {dotted}: unknown key '{path}'{suggest(key, names)}")
            if i == len(keys) - 1:
                node[key] = parse_value(text)
            else:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):
                    raise UserError(f"--set {dotted}: '{path}' is not a section")
                cls = _section_class(cls, key)
    return raw


def read_yaml(path: Path) -> dict:
    from attntrain.io import read_text

    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise UserError(f"{where}: invalid YAML: {problem}") from None
    if raw is None or raw == {}:  # every key has a default: an empty file would silently train UD EWT tagging
        raise UserError(f"{path}: empty config (no keys); start from one of the files in configs/")
    return raw


def build_config(raw: dict, source: str, overrides: list[str] = (), default_name: str | None = None) -> Config:
    raw = apply_overrides(raw, list(overrides))
    _check_keys(raw, Config, "", source)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise UserError(_format_validation(e, source)) from None
    if cfg.name is None:
        cfg.name = default_name or "run"
    return cfg


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read, override and validate a YAML config. Every problem is a `UserError`."""
    path = Path(path)
    return build_config(read_yaml(path), str(path), overrides, default_name=path.stem)


def save_config(cfg: Config, path: Path) -> None:
    from attntrain.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
