"""Finite scalar quantization (FSQ) of the TerraMind tokenizers (terramind-spec 7.2).

Each of the 5 latent channels is squashed with a sigmoid and rounded to one of ``L_i`` levels. The token id is the
mixed-radix number of the level digits with channel 0 as the least significant digit, so the id is also the
TerraMind vocabulary id. Codes are the digits scaled to [0, 1] (no centring: the decoders were trained on that).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class FSQ(nn.Module):
    """Quantizer with per-channel ``levels`` (e.g. (8, 8, 8, 6, 5) -> 15360 ids). Holds no tensors at all.

    Levels and the mixed-radix basis are Python ints applied channel by channel: the official checkpoints have no
    quantizer entries, and constants need no device placement (works after meta-device construction, and under
    ``torch.compile`` they are folded in).
    """

    def __init__(self, levels: Sequence[int]):
        super().__init__()
        self.levels = tuple(int(level) for level in levels)
        basis = [1]
        for level in self.levels[:-1]:
            basis.append(basis[-1] * level)
        self.basis = tuple(basis)
        self.vocab_size = basis[-1] * self.levels[-1]

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent [B, D, h, w] -> (codes [B, D, h, w] float32 in [0, 1], indices [B, h, w] int64)."""
        codes, indices = [], None
        for i, level in enumerate(self.levels):
            digit = torch.round(torch.sigmoid(latent[:, i].float()) * float(level - 1))
            codes.append(digit / float(level - 1))
            term = digit.to(torch.int64) * self.basis[i]
            indices = term if indices is None else indices + term
        return torch.stack(codes, dim=1), indices

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Token ids [B, h, w] (any integer dtype) -> codes [B, D, h, w] float32 in [0, 1]."""
        indices = indices.to(torch.int64)
        codes = [((indices // base) % level).to(torch.float32) / float(level - 1)
                 for base, level in zip(self.basis, self.levels)]
        return torch.stack(codes, dim=1)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, D, h, w] on the [0, 1] level grid -> token ids [B, h, w] int64 (codes are snapped to the grid)."""
        indices = None
        for i, (base, level) in enumerate(zip(self.basis, self.levels)):
            term = torch.round(codes[:, i].float() * float(level - 1)).to(torch.int64) * base
            indices = term if indices is None else indices + term
        return indices
