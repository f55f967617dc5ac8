"""Input and output embeddings of TerraMind, one class per input kind (terramind-spec 3.1, 3.2, 4.1).

Every embedding owns a fixed sin-cos ``pos_emb`` buffer for its default grid (14x14 at 224 px) and a learned
``mod_emb``. Other grids get a bicubically resampled copy on the fly, as the reference does.
"""

from __future__ import annotations

import torch
from torch import nn

from geomind_cli.errors import ModalityError
from geomind_cli.models.layers import resize_pos_emb, sincos_2d
from geomind_cli.facts.modalities import get_modality

PATCH_SIZE = 16


class _PositionalMixin(nn.Module):
    def _init_positions(self, dim: int, image_size: int) -> None:
        side = image_size // PATCH_SIZE
        self.register_buffer("pos_emb", sincos_2d(side, side, dim))
        self.mod_emb = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.mod_emb, std=0.02)

    def embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """Position + modality embedding for a token grid (rows, cols): [1, rows*cols, D]."""
        return resize_pos_emb(self.pos_emb, grid) + self.mod_emb


class ImageEncoderEmbedding(_PositionalMixin):
    """Raw image -> patch tokens. Patches are flattened (row, column, channel) with the channel fastest."""

    def __init__(self, num_channels: int, dim: int, *, image_size: int = 224):
        super().__init__()
        self.num_channels = num_channels
        self.proj = nn.Linear(num_channels * PATCH_SIZE * PATCH_SIZE, dim, bias=False)
        self._init_positions(dim, image_size)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [B,C,H,W] (H, W multiples of 16) -> (x [B,N,D], emb [1,N,D]), N = (H/16)(W/16) row-major."""
        b, c, h, w = image.shape
        if h % PATCH_SIZE or w % PATCH_SIZE:
            raise ValueError(f"image size {h}x{w} must be a multiple of {PATCH_SIZE}")
        if c != self.num_channels:
            raise ValueError(f"expected {self.num_channels} channels, got {c}")
        rows, cols = h // PATCH_SIZE, w // PATCH_SIZE
        patches = image.reshape(b, c, rows, PATCH_SIZE, cols, PATCH_SIZE)
        patches = patches.permute(0, 2, 4, 3, 5, 1).reshape(b, rows * cols, PATCH_SIZE * PATCH_SIZE * c)
        return self.proj(patches), self.embedding((rows, cols))


def token_grid(ids: torch.Tensor) -> tuple[int, int]:
    """Grid (rows, cols) of token ids [B,h,w]; flat ids [B,N] must be a square grid (as in the reference)."""
    if ids.ndim == 3:
        return ids.shape[1], ids.shape[2]
    side = int(round(ids.shape[1] ** 0.5))
    if side * side != ids.shape[1]:
        raise ValueError(f"{ids.shape[1]} flat tokens are not a square grid; pass ids as [B, rows, cols]")
    return side, side


class ImageTokenEncoderEmbedding(_PositionalMixin):
    """Token ids of a tokenized image -> embeddings."""

    def __init__(self, vocab_size: int, dim: int, *, image_size: int = 224):
        super().__init__()
        self.vocab_size = vocab_size
        self.token_emb = nn.Embedding(vocab_size, dim)
        self._init_positions(dim, image_size)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids [B,h,w] or [B,N] (square) -> (x [B,N,D], emb [1,N,D])."""
        grid = token_grid(ids)
        return self.token_emb(ids.reshape(ids.shape[0], -1).long()), self.embedding(grid)


class ImageTokenDecoderEmbedding(_PositionalMixin):
    """Decoder side of a tokenized image: query embeddings and logits; ``to_logits`` is tied to ``token_emb``."""

    def __init__(self, vocab_size: int, dim: int, *, image_size: int = 224):
        super().__init__()
        self.vocab_size = vocab_size
        self.token_emb = nn.Embedding(vocab_size, dim)
        self.to_logits = nn.Linear(dim, vocab_size, bias=False)
        self.to_logits.weight = self.token_emb.weight
        self._init_positions(dim, image_size)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Decoder output [B,M,D] -> logits [B,M,vocab]."""
        return self.to_logits(y)


def _vocab_size(key: str) -> int:
    modality = get_modality(key)
    if modality.tokenizer is None or key != modality.token_key:
        raise ModalityError(f"{key} is not a tokenized modality")
    return modality.tokenizer.vocab_size


def encoder_embedding(key: str, dim: int, *, image_size: int = 224) -> nn.Module:
    """The encoder embedding for an internal key: raw patches for ``untok_*``, token ids for ``tok_*``."""
    modality = get_modality(key)
    if key == modality.raw_key:
        return ImageEncoderEmbedding(modality.num_channels, dim, image_size=image_size)
    return ImageTokenEncoderEmbedding(_vocab_size(key), dim, image_size=image_size)


def decoder_embedding(key: str, dim: int, *, image_size: int = 224) -> ImageTokenDecoderEmbedding:
    """The decoder embedding (queries and tied logits) for a token key ``tok_*``."""
    return ImageTokenDecoderEmbedding(_vocab_size(key), dim, image_size=image_size)
