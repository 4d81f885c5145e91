"""Self-supervised examples (`attntrain pretrain`, model.head.kind pretrain): the input, partly masked, is
its own target.

The task is the generic DataTask with no target (data.target is not read): any source and format the data
floor reads, with only an input field. Each batch is masked when it is made: train batches anew every
time (dynamic masking, as RoBERTa) from the run's random stream (saved in checkpoints: a resumed run masks
as an uninterrupted one), dev/test batches the same way at every evaluation (a generator seeded by the run
seed and the batch's examples), so held-out losses of two evaluations compare.

    text:  words (B,T): a chosen word becomes <mask>, a random word, or stays (pretrain.mask_token /
           random_token); labels (B,T): the original word where chosen, IGNORE elsewhere
    audio: features (B,T,F): chosen frames (spans of pretrain.span) set to 0, the train mean;
           labels (B,T,F): the original frames where chosen, IGNORE elsewhere
    image: images (B,C,H,W): chosen patches set to 0, the train mean; labels (B,N,C*P*P): the patches
    masked (B,T) bool: the chosen positions, where the head's loss is taken

# B batch, T positions, F features per frame, N patches, C channels, H/W image size, P patch side
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
import torch.nn.functional as F

from attntrain.data.tasks.generic import DataTask
from attntrain.data.inputs.images import patchify
from attntrain.data.inputs.vocab import Vocab
from attntrain.errors import UserError
from attntrain.data.batching import IGNORE
MASK_TOKEN = "<mask>"  # appended to the word vocabulary of a text pretraining run (and kept by a fine-tune)
UNK, FIRST_WORD = 1, 2  # ids 0 and 1 are <pad> and <unk>: never drawn as random words
DEFAULT_MASK_PROB = {"text": 0.15, "audio": 0.4, "image": 0.6}  # pretrain.mask_prob when unset
DEFAULT_SPAN = {"text": 1, "audio": 10, "image": 1}  # pretrain.span when unset
PRETRAIN_INPUTS = tuple(DEFAULT_MASK_PROB)


def choose_positions(mask: torch.Tensor, prob: float, span: int, generator: torch.Generator | None) -> torch.Tensor:
    """(B,T) real positions -> (B,T) bool, the positions to predict.

    Each real position starts a span with probability prob / span and a span covers `span` positions,
    so about `prob` of them are chosen (a little less for span > 1: overlapping spans merge). A sequence
    left with none gets one, so every example has a target.
    """
    B, T = mask.shape
    starts = (torch.rand(B, T, generator=generator) < prob / span) & mask
    chosen = starts
    if span > 1:  # position t is chosen when a span starts in t-span+1 .. t
        window = torch.ones(1, 1, span)
        covered = F.conv1d(starts.float()[:, None], window, padding=span - 1)[:, 0, :T]  # (B,1,T) -> (B,T)
        chosen = (covered > 0) & mask
    empty = ~chosen.any(1) & mask.any(1)
    if bool(empty.any()):
        scores = torch.rand(B, T, generator=generator).masked_fill(~mask, -1.0)  # (B,T)
        rows = empty.nonzero().squeeze(1)
        chosen[rows, scores[rows].argmax(1)] = True
    return chosen


def mask_words(batch: dict, chosen: torch.Tensor, *, mask_id: int, num_words: int, mask_share: float,
               random_share: float, generator: torch.Generator | None, num_outputs: int | None = None) -> dict:
    """Text: chosen words -> <mask> (mask_share), a random word (random_share) or unchanged; labels the originals
    (num_outputs: ids from there on, rarer words in a frequency-ordered vocabulary, are labelled <unk>).

    A replaced word's characters and shape are cleared too: they would spell the word it hides."""
    words = batch["words"]  # (B,T)
    targets = words if num_outputs is None else words.masked_fill(words >= num_outputs, UNK)
    draw = torch.rand(words.shape, generator=generator)
    to_mask = chosen & (draw < mask_share)
    to_random = chosen & (draw >= mask_share) & (draw < mask_share + random_share)
    random_words = torch.randint(FIRST_WORD, num_words - 1, words.shape, generator=generator)
    random_words = random_words + (random_words >= mask_id).long()  # never <mask> itself
    out = dict(batch, labels=targets.masked_fill(~chosen, IGNORE), masked=chosen,
               words=torch.where(to_random, random_words, words.masked_fill(to_mask, mask_id)))
    replaced = to_mask | to_random
    if "chars" in batch:
        out["chars"] = batch["chars"].masked_fill(replaced[..., None], 0)  # (B,T,C)
    if "shapes" in batch:
        out["shapes"] = batch["shapes"].masked_fill(replaced, 0)
    return out


def mask_frames(batch: dict, chosen: torch.Tensor) -> dict:
    """Audio: chosen frames (B,T,F) -> 0 (the normalised mean); labels: the original frames there."""
    features = batch["features"]
    where = chosen[..., None]  # (B,T,1)
    return dict(batch, features=features.masked_fill(where, 0.0), labels=features.masked_fill(~where, IGNORE),
                masked=chosen)


def mask_patches(batch: dict, chosen: torch.Tensor, patch: int, grid: tuple[int, int]) -> dict:
    """Images: chosen patches -> 0 (the normalised mean); labels: the original patches (B,N,C*P*P)."""
    images = batch["images"]  # (B,C,H,W)
    rows, cols = grid
    B = images.shape[0]
    pixels = chosen.view(B, 1, rows, cols).repeat_interleave(patch, 2).repeat_interleave(patch, 3)  # (B,1,H,W)
    patches = patchify(images, patch)  # (B,N,C*P*P)
    return dict(batch, images=images.masked_fill(pixels, 0.0), labels=patches.masked_fill(~chosen[..., None], IGNORE),
                masked=chosen)


class PretrainTask(DataTask):
    """The generic task without a target: batches come masked (see the module docstring)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        if self.input not in PRETRAIN_INPUTS:
            raise UserError(f"data.input.kind: pretraining reads {', '.join(PRETRAIN_INPUTS)} inputs, "
                            f"not {self.input}")
        self.truncate_eval = True  # dev/test inputs are cut to data.max_len as train is
        settings = cfg.pretrain
        self.mask_prob = settings.mask_prob or DEFAULT_MASK_PROB[self.input]
        self.span = settings.span or DEFAULT_SPAN[self.input]

    def prepare(self, state: dict | None = None) -> None:
        super().prepare(state)
        if self.input == "text":
            words = self.input_kind.text.words
            if MASK_TOKEN not in words:
                self.input_kind.text.words = Vocab(words.items + [MASK_TOKEN], unk=words.unk)

    def info(self) -> dict:
        info = super().info()
        if self.input == "text":  # the words the head scores: the most frequent (ids are in frequency order)
            info["num_outputs"] = min(self.cfg.pretrain.output_words or info["num_words"], info["num_words"])
        return info

    def batch(self, name: str, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = super().batch(name, indices)
        generator = None  # train: the run's random stream
        if name != "train":  # the same masks at every evaluation of this split
            key = np.asarray(indices, dtype=np.int64).tobytes()
            generator = torch.Generator().manual_seed(zlib.crc32(key) * 1000 + self.cfg.seed)
        chosen = choose_positions(batch["mask"], self.mask_prob, self.span, generator)
        if self.input == "text":
            words = self.input_kind.text.words
            settings = self.cfg.pretrain
            return mask_words(batch, chosen, mask_id=words.index[MASK_TOKEN], num_words=len(words),
                              mask_share=settings.mask_token, random_share=settings.random_token, generator=generator,
                              num_outputs=self.info()["num_outputs"])
        if self.input == "audio":
            return mask_frames(batch, chosen)
        info = self.info()
        return mask_patches(batch, chosen, info["patch"], tuple(info["grid"]))

    def parse_inputs(self, lines: list[str], *, pretokenized: bool = False) -> list[dict]:
        raise UserError("a pretraining run predicts nothing: fine-tune from it with model.init: RUN_DIR "
                        "(attntrain fit CONFIG --set model.init=RUN_DIR)")
