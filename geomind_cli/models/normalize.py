"""Physical units <-> TerraMind's pre-training statistics, per band: ``(x - mean) / std`` and back.

The statistics are float32 as published; a float32 tensor therefore gives the same numbers as the reference, and a
lower-precision tensor is promoted rather than rounding the statistics.
"""

from __future__ import annotations

import torch

from geomind_cli.facts.modalities import get_modality


def _stats(key_or_name: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    modality = get_modality(key_or_name)
    mean = torch.tensor(modality.mean, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)
    std = torch.tensor(modality.std, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)
    return mean, std


def standardize(key_or_name: str, x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] in physical units -> standardized with the modality's pre-training mean and std."""
    mean, std = _stats(key_or_name, x)
    return (x - mean) / std


def destandardize(key_or_name: str, x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] standardized -> physical units."""
    mean, std = _stats(key_or_name, x)
    return x * std + mean
