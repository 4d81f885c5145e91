"""Embed: a batch of raw inputs -> a sequence of vectors (B,T,D) and which positions are real (B,T).

# B batch, T time (tokens), C characters per token, D model width, V vocabulary size

Text: one vector per token, from the word identity (learned embedding or one-hot) plus, optionally,
a character CNN over the token's spelling, which is what lets rare and unseen words be tagged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attntrain.data.inputs.images import patchify
from attntrain.model.dropout import Dropout
from attntrain.model.pieces import build_piece_embed
from attntrain.model.positional import sinusoid_table_2d
from attntrain.model.trace import exporting
from attntrain.registry import lookup

PAD, UNK = 0, 1  # reserved ids in every vocabulary


def embedding_table(vocab_size: int, dim: int) -> nn.Embedding:
    """A trained vector per vocabulary entry, N(0, 1/dim) at the start; PAD stays zero."""
    table = nn.Embedding(vocab_size, dim, padding_idx=PAD)
    nn.init.normal_(table.weight, std=dim**-0.5)
    return table


class LearnedVectors(nn.Module):
    """A trained vector per vocabulary entry."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.table = embedding_table(vocab_size, dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids)


class OneHotVectors(nn.Module):
    """The literal one-hot vector of each token (length V), mapped by a linear layer.

    Mathematically the same as a learned embedding, but it materialises (B,T,V): it is here to show
    the seed's "one-hot" input, not for speed.
    """

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.linear = nn.Linear(vocab_size, dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.linear(F.one_hot(ids, self.vocab_size).to(self.linear.weight.dtype))  # (B,T,V) -> (B,T,dim)


TEXT_VECTORS = {"learned": LearnedVectors, "onehot": OneHotVectors}


class SubwordEmbed(nn.Module):
    """Subword ids (B,T) -> table vectors scaled by sqrt(D) (B,T,D) + dropout; no projection.

    The table has the model width so that a seq2seq head can share it (tie_embeddings: all); the
    sqrt(D) scale makes vectors of initial norm ~sqrt(D), the size of a sinusoidal position vector.
    """

    def __init__(self, vocab_size: int, width: int, *, dropout: float):
        super().__init__()
        self.table = embedding_table(vocab_size, width)
        self.scale = width**0.5
        self.dropout = Dropout(dropout)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dropout(self.table(batch["words"]) * self.scale), batch["mask"]


def build_subword_embed(cfg, info: dict, width: int) -> SubwordEmbed:
    return SubwordEmbed(info["num_words"], width, dropout=cfg.dropout)


class CharCNN(nn.Module):
    """Max-pooled convolution over a token's characters: (B,T,C) ids -> (B,T,filters).

    A batch spells the same words many times (the, of, commas) and pads its sentences with empty
    tokens, so `forward` convolves each distinct spelling once (~40% of the token slots of an EWT
    batch) and gathers the results back. It also sorts the spellings by length and convolves them in
    `LENGTH_GROUPS` groups, each cut to its longest word, instead of padding all to the batch's longest
    (most words are far shorter). `reference` convolves every slot; they agree to float rounding.
    """

    LENGTH_GROUPS = 4

    def __init__(self, num_chars: int, dim: int, filters: int, kernel: int):
        super().__init__()
        self.embed = nn.Embedding(num_chars, dim, padding_idx=PAD)
        self.conv = nn.Conv1d(dim, filters, kernel, padding=kernel // 2)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        if exporting():  # the grouping depends on the batch's spellings; a trace must hold for any batch
            return self.reference(chars)
        B, T, C = chars.shape
        spellings, which = torch.unique(chars.view(B * T, C), dim=0, return_inverse=True)  # (U,C), (B*T,)
        lengths = (spellings != PAD).sum(1)  # (U,) characters are left-aligned, PAD after them
        order = lengths.argsort()
        pooled = torch.cat([self.pool(spellings[group, :max(1, int(lengths[group[-1]]))])  # (u,C') -> (u,filters)
                            for group in order.tensor_split(self.LENGTH_GROUPS) if group.numel()])
        rank = order.argsort()  # spelling -> its row in `pooled`
        return pooled[rank[which]].view(B, T, -1)  # (B*T,filters) -> (B,T,filters)

    def reference(self, chars: torch.Tensor) -> torch.Tensor:
        B, T, C = chars.shape
        return self.pool(chars.view(B * T, C)).view(B, T, -1)  # (B*T,filters) -> (B,T,filters)

    def pool(self, chars: torch.Tensor) -> torch.Tensor:
        """(N,C) character ids -> (N,filters): ReLU convolution, max over the real characters."""
        N, C = chars.shape
        x = self.embed(chars).transpose(1, 2)  # (N,C,dim) -> (N,dim,C)
        h = F.relu(self.conv(x))  # (N,filters,C)
        h = h.masked_fill((chars.view(N, 1, C) == PAD), 0.0)
        return h.amax(dim=-1)  # (N,filters)


NUM_SHAPES = 12  # attntrain.data.inputs.text.word_shape classes (0 = padding)


class TextEmbed(nn.Module):
    """Word vectors (+ character CNN features) -> projection to the model width."""

    def __init__(self, words: nn.Module, word_dim: int, chars: CharCNN | None, char_out: int, width: int,
                 *, word_dropout: float, dropout: float, ngram: int = 0, shape_dim: int = 0):
        super().__init__()
        self.words = words
        self.chars = chars
        # Optional word-shape vectors (capitalisation, digits, @user, #tag, URL): what a lowercased vocabulary loses.
        self.shapes = nn.Embedding(NUM_SHAPES, shape_dim) if shape_dim else None
        char_out = char_out + shape_dim
        # Optional local n-gram features: a convolution over neighbouring word vectors, added to each.
        self.ngram = nn.Conv1d(word_dim + char_out, word_dim + char_out, ngram, padding=ngram // 2) if ngram else None
        self.project = nn.Linear(word_dim + char_out, width)
        self.word_dropout = word_dropout
        self.dropout = Dropout(dropout)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = batch["words"], batch["mask"]
        if self.training and self.word_dropout > 0:
            # Train the <unk> vector on real contexts so unseen words at test time are not out of distribution.
            drop = (torch.rand(ids.shape, device=ids.device) < self.word_dropout) & mask
            ids = ids.masked_fill(drop, UNK)
        parts = [self.words(ids)]
        if self.chars is not None:
            parts.append(self.chars(batch["chars"]))
        if self.shapes is not None:
            parts.append(self.shapes(batch["shapes"]))
        x = torch.cat(parts, dim=-1)  # (B,T,E) with E = word_dim + filters
        if self.ngram is not None:
            x = x * mask.unsqueeze(-1).to(x.dtype)  # padding must not leak into real positions
            x = x + F.relu(self.ngram(x.transpose(1, 2))).transpose(1, 2)  # (B,E,T) conv -> (B,T,E)
        return self.dropout(self.project(x)), mask  # (B,T,D)


def build_text_embed(cfg, info: dict, width: int) -> TextEmbed:
    """cfg: EmbedConfig; info: vocabulary sizes from the task."""
    words = lookup(TEXT_VECTORS, cfg.kind, "model.embed.kind")(info["num_words"], cfg.word_dim)
    if cfg.vectors and not cfg.vectors_trainable:  # the word table keeps the vectors of the file (model.vectors)
        words.requires_grad_(False)
    chars = None
    if cfg.char_dim > 0:
        chars = CharCNN(info["num_chars"], cfg.char_dim, cfg.char_filters, cfg.char_kernel)
    char_out = cfg.char_filters if chars is not None else 0
    return TextEmbed(words, cfg.word_dim, chars, char_out, width, word_dropout=cfg.word_dropout, dropout=cfg.dropout,
                     ngram=cfg.ngram, shape_dim=cfg.shape_dim)


class VectorEmbed(nn.Module):
    """Given vectors (B,T,F) (graph node features, audio frame features) -> dropout -> linear (B,T,D)."""

    def __init__(self, num_features: int, width: int, *, dropout: float):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.project = nn.Linear(num_features, width)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.project(self.dropout(batch["features"])), batch["mask"]


def build_vector_embed(cfg, info: dict, width: int) -> VectorEmbed:
    return VectorEmbed(info["num_features"], width, dropout=cfg.dropout)


def random_shift(images: torch.Tensor, shift: int) -> torch.Tensor:
    """Translate each image (B,H,W) or (B,K,H,W) by up to `shift` pixels in each direction, filling with zeros.

    All channels of an image move together.
    """
    gray = images.dim() == 3
    x = images[:, None] if gray else images  # (B,K,H,W)
    B, K, H, W = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))  # (B,K,H+2s,W+2s)
    dy, dx = torch.randint(0, 2 * shift + 1, (2, B, 1, 1, 1), device=images.device)
    rows = (torch.arange(H, device=images.device)[None, None, :, None] + dy).expand(B, K, H, W)  # (B,K,H,W)
    cols = (torch.arange(W, device=images.device)[None, None, None, :] + dx).expand(B, K, H, W)
    batch = torch.arange(B, device=images.device)[:, None, None, None]
    channel = torch.arange(K, device=images.device)[None, :, None, None]
    out = padded[batch, channel, rows, cols]
    return out[:, 0] if gray else out


class ImageEmbed(nn.Module):
    """Images (B,H,W) or (B,K,H,W) -> patches (B,N,K*P*P) -> linear (B,N,D) + a 2-D position encoding of the patch grid.

    Patches are cut here, not in the data, so that a train-time random shift (augmentation) moves
    pixels across patch borders the way a real translation does.
    """

    def __init__(self, patch: int, grid: tuple[int, int], width: int, *, position: str, shift: int, dropout: float,
                 channels: int = 1):
        super().__init__()
        self.patch, self.shift = patch, shift
        self.project = nn.Linear(channels * patch * patch, width)  # a patch of K channels is one K*P*P vector
        rows, cols = grid
        if position == "sinusoidal":
            self.register_buffer("position", sinusoid_table_2d(rows, cols, width), persistent=False)
        elif position == "learned":
            self.position = nn.Parameter(torch.randn(rows * cols, width) * 0.02)
        else:
            self.position = None
        self.dropout = Dropout(dropout)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        images = batch["images"]
        if self.training and self.shift:
            images = random_shift(images, self.shift)
        x = self.project(patchify(images, self.patch))  # (B,N,P*P) -> (B,N,D)
        if self.position is not None:
            x = x + self.position
        return self.dropout(x), batch["mask"]


def build_image_embed(cfg, info: dict, width: int) -> ImageEmbed:
    return ImageEmbed(info["patch"], tuple(info["grid"]), width, position=cfg.image_position, shift=cfg.shift,
                      dropout=cfg.dropout, channels=info.get("channels") or 1)


INPUTS = {"text": build_text_embed, "graph": build_vector_embed, "audio": build_vector_embed,
          "image": build_image_embed, "subwords": build_subword_embed, "pieces": build_piece_embed}
