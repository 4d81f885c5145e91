"""The model: section of a config (attention, embeddings, encoder, head, seq2seq decoder); attntrain/config.py
holds the rest and the loading. Typed, each field with a default and a comment."""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from attntrain import choices
from attntrain.config_base import Section, choice_of


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
    outside_bias: Union[float, Literal["dev"]] = 0.0  # span tags (B-/I-): added to the O tag's log-probability (CRF: emission) when decoding; < 0 finds more spans (recall for precision). dev: chosen after training from -3..1 by the dev metric (one pass over dev; saved as decoding.json in the run, used by eval, predict, serve). Decoding only, so `attntrain eval RUN --set model.head.outside_bias=-1` tries a value on a trained run
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # dropout before the output layer
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)  # cross-entropy label smoothing
    decoder: DecoderConfig = DecoderConfig()  # kind seq2seq: the decoder and its search

    _kind = choice_of(choices.HEADS, "kind")

    @model_validator(mode="after")
    def _outside_bias_tags(self):
        if self.outside_bias != 0.0 and self.kind != "tagging":  # it would be read by nothing
            raise ValueError(f"outside_bias applies to a tagging head's span tags, not to kind '{self.kind}'")
        return self


class ModelConfig(Section):
    # start from trained weights: a run directory or a .safetensors file (attntrain pretrain / fit), or
    # hf:NAME_OR_FOLDER (a BERT-family checkpoint); the head always starts fresh
    init: Optional[str] = None
    embed: EmbedConfig = EmbedConfig()
    encoder: EncoderConfig = EncoderConfig()
    head: HeadConfig = HeadConfig()
