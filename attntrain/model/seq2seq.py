"""Seq2seq head: the output mode where the model decides how many labels to emit (translation).

# B batch, T target time, S source time, D model width, V target vocabulary, V_out the ids the softmax covers,
# N real target tokens of a batch, R decoding rows

Model = Head(Encoder(Embed(batch))) still holds: the encoder output (B,S,D) is the decoder's memory.
The head owns the target embedding, a Transformer decoder, the output projection (tied to the target
embedding, or to the shared source/target table), the label-smoothed loss, the search and the BLEU
meter. Its forward returns a `Seq2seqOutput`, which travels through the trainer where other heads'
logits do (to `loss`, the meter and `predict`):
  training:           decoder states (N,D) at the N real target positions (teacher-forced); the
                      loss projects them to logits (N,V_out) chunk by chunk
  eval (model.eval):  + the searched token ids of every sentence (greedy or beam, cached or not)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from attntrain.config import DecoderConfig
from attntrain.data.batching import IGNORE
from attntrain.data.inputs.subword import BOS, EOS
from attntrain.errors import UserError
from attntrain.model.attention import build_attention
from attntrain.model.bleu import TranslationMeter
from attntrain.model.decoder import DecoderBlock, TransformerDecoder
from attntrain.model.dropout import Dropout
from attntrain.model.embed import embedding_table
from attntrain.model.encoder import FeedForward
from attntrain.model.positional import POSITIONS
from attntrain.model.search import beam_search, greedy_search
from attntrain.registry import lookup


class SmoothedCrossEntropy(torch.autograd.Function):
    """Summed label-smoothed cross-entropy of logits (N,V) against labels (N,) (IGNORE rows skipped).

    Per row: logsumexp(z) - (1 - eps) z_label - eps mean(z), i.e. F.cross_entropy with
    label_smoothing=eps (the reference it is tested against), whose gradient
    softmax(z) - (1 - eps) onehot - eps / V is written once, in place, instead of in several passes.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, smoothing: float,
                reuse_logits: bool = False) -> torch.Tensor:
        valid = labels != IGNORE  # (N,)
        safe = labels.clamp(min=0)
        lse = torch.logsumexp(logits, dim=-1)  # (N,)
        picked = logits.gather(1, safe[:, None]).squeeze(1)  # (N,)
        per_row = lse - (1.0 - smoothing) * picked - smoothing * logits.mean(-1)
        ctx.save_for_backward(logits, safe, valid, lse)
        ctx.smoothing, ctx.reuse_logits = smoothing, reuse_logits
        return (per_row * valid).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, safe, valid, lse = ctx.saved_tensors
        eps, V = ctx.smoothing, logits.shape[1]
        scale = grad * valid  # (N,) zero on ignored rows
        # softmax (N,V); with reuse_logits it overwrites the logits, a temporary the caller never reads again
        out = logits.sub_(lse[:, None]) if ctx.reuse_logits else logits - lse[:, None]
        out.exp_().sub_(eps / V).mul_(scale[:, None])
        out.scatter_add_(1, safe[:, None], (-(1.0 - eps) * scale)[:, None])
        return out, None, None, None


def smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Mean over the non-IGNORE rows: F.cross_entropy(logits, labels, ignore_index=IGNORE, label_smoothing=...)."""
    return SmoothedCrossEntropy.apply(logits, labels, smoothing) / (labels != IGNORE).sum().clamp(min=1)


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """Softmax and loss in fp32 under autocast (bf16/fp16 logits); a float64 model keeps float64."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


# Rows of logits per chunk in the loss: a chunk stays under 16 MiB, below glibc's 32 MiB mmap limit, so
# its memory is reused from step to step instead of being mapped (and page-faulted) afresh each time.
CHUNK_FLOATS = 1 << 22


@dataclass
class Seq2seqOutput:
    states: Optional[torch.Tensor] = None  # (N,D) decoder output at the N real target positions (teacher-forced)
    tokens: Optional[list[list[int]]] = None  # searched ids per sentence, without <s> / </s> (eval mode)
    beam: Optional[int] = None  # beam width the tokens were searched with (1 = greedy)


class CachedStepper:
    """Feeds only the newest token of each row; earlier keys/values come from the decoder's cache."""

    def __init__(self, head: "Seq2seqHead", memory: torch.Tensor, memory_mask: torch.Tensor):
        self.head, self.device, self.output_ids = head, memory.device, head.output_ids
        self.weight = head.output_weight()  # (V,D), gathered once per search
        self.cache = head.decoder.start(memory, memory_mask)  # cross-attention keys/values: once

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        state = self.head.decoder.step(self.head.embed_target(tokens[:, -1:]), self.cache)  # (R,1,D)
        return at_least_fp32(self.head.logits(state[:, 0], self.weight))  # (R,V)

    def logprobs(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits(tokens).log_softmax(-1)  # (R,V)

    def expand(self, beams: int) -> None:
        self.cache = self.cache.expand(beams)

    def select(self, rows: torch.Tensor) -> None:
        self.cache = self.cache.select(rows)


class RecomputeStepper:
    """Reference path: runs the decoder over the whole prefix at every step (no cache)."""

    def __init__(self, head: "Seq2seqHead", memory: torch.Tensor, memory_mask: torch.Tensor):
        self.head, self.device, self.output_ids = head, memory.device, head.output_ids
        self.weight = head.output_weight()
        self.memory, self.memory_mask = memory, memory_mask

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        states = self.head.decoder(self.head.embed_target(tokens), self.memory, self.memory_mask)  # (R,t,D)
        return at_least_fp32(self.head.logits(states[:, -1], self.weight))  # (R,V)

    def logprobs(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits(tokens).log_softmax(-1)  # (R,V)

    def expand(self, beams: int) -> None:
        self.memory = self.memory.repeat_interleave(beams, dim=0)
        self.memory_mask = self.memory_mask.repeat_interleave(beams, dim=0)

    def select(self, rows: torch.Tensor) -> None:
        self.memory = self.memory.index_select(0, rows)
        self.memory_mask = self.memory_mask.index_select(0, rows)


class Seq2seqHead(nn.Module):
    """Decoder over the encoder memory: features (B,S,D) + batch -> Seq2seqOutput."""

    def __init__(self, target_embed: nn.Embedding, decoder: TransformerDecoder, output: Optional[nn.Linear],
                 output_ids: list[int], *, tie: str, dropout: float, label_smoothing: float, search: DecoderConfig,
                 detokenize: Callable[[list[int]], str], output_dir: Optional[str] = None):
        super().__init__()
        self.target_embed = target_embed
        self.scale = math.sqrt(target_embed.embedding_dim)
        self.decoder = decoder
        self.output = output  # (D -> V_out) or None: logits use the rows `output_ids` of the target embedding
        # The softmax covers only the ids the target side uses (V_out of V); labels map to their column.
        ids = torch.tensor(output_ids, dtype=torch.long)
        column = torch.full((target_embed.num_embeddings,), IGNORE, dtype=torch.long)
        column[ids] = torch.arange(len(ids))
        self.register_buffer("output_ids", ids, persistent=False)  # (V_out,) column -> token id
        self.register_buffer("label_column", column, persistent=False)  # (V,) token id -> column or IGNORE
        self.tie = tie
        self.dropout = Dropout(dropout)
        self.label_smoothing = label_smoothing
        self.search = search  # model.head.decoder: beam sizes, length penalty and limit, cache
        self.detokenize = detokenize
        self.output_dir = output_dir

    def share_embedding(self, embed: nn.Module) -> None:
        """tie_embeddings: all -> the source embedding table becomes the target one (joint vocabulary)."""
        if self.tie != "all":
            return
        table = getattr(embed, "table", None)
        if not isinstance(table, nn.Embedding) or table.weight.shape != self.target_embed.weight.shape:
            raise UserError("model.head.decoder.tie_embeddings: 'all' needs a subword source embedding of the "
                            "target vocabulary's size (a joint vocabulary)")
        embed.table = self.target_embed

    def prefix(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, mask  # nothing goes in front of the source

    # ---- pieces --------------------------------------------------------------------------------
    def embed_target(self, ids: torch.Tensor) -> torch.Tensor:
        return self.target_embed(ids) * self.scale  # (B,T) -> (B,T,D)

    def output_weight(self) -> Optional[torch.Tensor]:
        """(V_out,D) rows of the tied table that the softmax covers; None with an untied output layer."""
        return None if self.output is not None else self.target_embed.weight.index_select(0, self.output_ids)

    def logits(self, states: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(...,D) -> (...,V_out); `weight` is output_weight(), when the caller already has it."""
        states = self.dropout(states)
        if self.output is not None:
            return self.output(states)
        return F.linear(states, self.output_weight() if weight is None else weight)

    def max_lengths(self, memory_mask: torch.Tensor) -> list[int]:
        """Output limit per sentence: max_len_ratio * source tokens + max_len_extra (and the position table)."""
        limits = (memory_mask.sum(1).double() * self.search.max_len_ratio).floor().long() + self.search.max_len_extra
        if self.decoder.max_positions is not None:
            limits = limits.clamp(max=self.decoder.max_positions)
        return limits.tolist()

    # ---- forward, loss, search -----------------------------------------------------------------
    def forward(self, features: torch.Tensor, batch: dict) -> Seq2seqOutput:
        out = Seq2seqOutput()
        if "target_in" in batch:
            states = self.decoder(self.embed_target(batch["target_in"]), features, batch["mask"])  # (B,T,D)
            out.states = states[batch["labels"] != IGNORE]  # (N,D): padding never reaches the output layer
        if not self.training:
            out.beam = self.search.dev_beam_size if batch.get("split") == "dev" else self.search.beam_size
            out.tokens = self.generate(features, batch["mask"], beam=out.beam)
        return out

    @torch.no_grad()
    def generate(self, memory: torch.Tensor, memory_mask: torch.Tensor, *, beam: int,
                 cache: Optional[bool] = None, length: Optional[int] = None) -> list[list[int]]:
        """Search every sentence of the batch: memory (B,S,D), memory_mask (B,S) -> ids per sentence.

        length: decode exactly this many steps per sentence (</s> banned before the last; benchmarks
        use it to compare searches on equal work) instead of stopping at </s> or the length limit.
        """
        use_cache = self.search.cache if cache is None else cache
        stepper = (CachedStepper if use_cache else RecomputeStepper)(self, memory, memory_mask)
        limits = self.max_lengths(memory_mask) if length is None else [length] * memory.shape[0]
        minimums = None if length is None else limits
        if beam == 1:
            return greedy_search(stepper, limits, bos=BOS, eos=EOS, min_lengths=minimums)
        return beam_search(stepper, limits, bos=BOS, eos=EOS, beam=beam, length_penalty=self.search.length_penalty,
                           min_lengths=minimums)

    @torch.no_grad()
    def score(self, memory: torch.Tensor, memory_mask: torch.Tensor, outputs: list[list[int]]) -> list[float]:
        """Mean log-probability per token (</s> included) of given outputs (ids without <s>/</s>): (B,S,D) -> B floats.

        One teacher-forced decoder pass, so any search's result can be scored the same way.
        """
        B = len(outputs)
        T = max(len(ids) for ids in outputs) + 1
        target_in = torch.full((B, T), BOS, dtype=torch.long, device=memory.device)
        labels = torch.full((B, T), IGNORE, dtype=torch.long, device=memory.device)
        for i, ids in enumerate(outputs):
            target_in[i, 1:len(ids) + 1] = torch.tensor(ids, dtype=torch.long)
            labels[i, :len(ids) + 1] = torch.tensor(ids + [EOS], dtype=torch.long)
        states = self.decoder(self.embed_target(target_in), memory, memory_mask)  # (B,T,D)
        logprobs = at_least_fp32(self.logits(states)).log_softmax(-1)  # (B,T,V_out)
        columns = self.label_column[labels.clamp(min=0)]  # (B,T) column of each label (IGNORE: not covered)
        real = (labels != IGNORE) & (columns != IGNORE)
        picked = logprobs.gather(2, columns.clamp(min=0)[..., None]).squeeze(2) * real  # (B,T)
        return (picked.sum(1) / (labels != IGNORE).sum(1)).tolist()

    def loss(self, output: Seq2seqOutput, batch: dict) -> torch.Tensor:
        """Label-smoothed cross-entropy per real target token; logits (N,V_out) are made chunk by chunk."""
        labels = batch["labels"]
        columns = self.label_column[labels[labels != IGNORE]]  # (N,); IGNORE for an id the softmax lacks
        weight = self.output_weight()
        rows = max(1, CHUNK_FLOATS // len(self.output_ids))
        total = sum(SmoothedCrossEntropy.apply(at_least_fp32(self.logits(output.states[i:i + rows], weight)),
                                               columns[i:i + rows], self.label_smoothing, True)
                    for i in range(0, len(columns), rows))
        return total / (columns != IGNORE).sum().clamp(min=1)

    def predict(self, output: Seq2seqOutput, batch: dict) -> list[list[int]]:
        """Target ids of each sentence (the task turns them into text)."""
        return output.tokens

    def new_meter(self) -> TranslationMeter:
        return TranslationMeter(self.detokenize, self.output_dir, tokenize=self.search.bleu_tokenize)


def build_decoder(encoder_cfg, decoder_cfg) -> TransformerDecoder:
    """Decoder blocks with the encoder's width, heads, attention scoring/normalisation and positions."""
    width, heads = encoder_cfg.width, encoder_cfg.num_heads
    position = lookup(POSITIONS, encoder_cfg.position, "model.encoder.position")(width, encoder_cfg.max_len, heads)
    attention = encoder_cfg.attention

    def make_attention(rotary):
        return build_attention(width, heads, score=attention.score, normalize=attention.normalize,
                               dropout=attention.dropout, rotary=rotary,
                               additive_chunk_mb=attention.additive_chunk_mb)

    blocks = [
        DecoderBlock(
            make_attention(position if position.rotary else None),  # masked self-attention
            make_attention(None),  # cross-attention: source and target positions are not comparable
            FeedForward(width, decoder_cfg.ffn_dim) if decoder_cfg.ffn_dim else None,
            width,
            decoder_cfg.dropout,
        )
        for _ in range(decoder_cfg.num_layers)
    ]
    max_positions = encoder_cfg.max_len if encoder_cfg.position == "learned" else None
    return TransformerDecoder(position, blocks, width, dropout=decoder_cfg.dropout, max_positions=max_positions)


def build_seq2seq_head(cfg, info: dict, width: int) -> Seq2seqHead:
    """cfg: HeadConfig; info: the translation task's sizes and detokenizer, plus the encoder settings."""
    if "num_targets" not in info:
        raise UserError("model.head.kind: seq2seq needs a task with target sentences (data.task: translation)")
    settings = cfg.decoder
    if settings.tie_embeddings == "all" and not info["joint_vocab"]:
        raise UserError("model.head.decoder.tie_embeddings: 'all' shares the source embedding with the target "
                        "side, which needs data.translation.joint_vocab: true (or use 'decoder')")
    target_embed = embedding_table(info["num_targets"], width)
    output_ids = info.get("output_ids") or list(range(info["num_targets"]))
    output = nn.Linear(width, len(output_ids)) if settings.tie_embeddings == "none" else None
    return Seq2seqHead(target_embed, build_decoder(info["encoder"], settings), output, output_ids,
                       tie=settings.tie_embeddings,
                       dropout=cfg.dropout, label_smoothing=cfg.label_smoothing, search=settings,
                       detokenize=info.get("detokenize", lambda ids: " ".join(map(str, ids))),
                       output_dir=info.get("run_dir"))
