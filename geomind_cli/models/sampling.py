"""Choosing token ids from logits: greedy, temperature, top-k and nucleus (top-p) filtering, inverse-CDF draws.

Randomness never comes from the global RNG state implicitly being reseeded: every random draw is a uniform number
in [0, 1) per position, either given by the caller (world-consistent tiling) or drawn from explicit generators.
Inverse-CDF sampling with a uniform u picks the first vocabulary entry whose cumulative probability exceeds
``u * total``; it has the same distribution as ``torch.multinomial`` and makes two tiles that share a position and a
uniform pick the same token whenever their distributions agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

Generators = torch.Generator | Sequence[torch.Generator] | None

_GREEDY_EPS = 1e-10


def is_greedy(temperature: float) -> bool:
    """Temperature 0 (within 1e-10, as the reference) means argmax decoding."""
    return abs(float(temperature)) <= _GREEDY_EPS


def filter_logits(logits: torch.Tensor, *, top_k: int | float = 0, top_p: float = 0.0) -> torch.Tensor:
    """Set logits outside the top-k and/or the nucleus to -inf; returns a new tensor [..., V].

    top_k: an int keeps logits >= the k-th largest; a float in (0, 1) is a fraction of the vocabulary; 0 disables.
    top_p: keeps the smallest descending prefix whose softmax mass reaches top_p, including the crossing token
    (computed on these logits, before any temperature, as the reference does); 0 disables.
    """
    vocab = logits.shape[-1]
    if top_k and top_k > 0:
        k = min(int(top_k * vocab) if isinstance(top_k, float) else int(top_k), vocab)
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p and top_p > 0.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token when the mass *before* it already exceeds top_p, so the crossing token stays.
        drop_sorted = torch.zeros_like(cumulative, dtype=torch.bool)
        drop_sorted[..., 1:] = cumulative[..., :-1] > top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def draw_uniforms(shape: tuple[int, int], generator: Generators, device: torch.device) -> torch.Tensor:
    """Uniforms [B,N] in [0,1). A sequence of generators gives one row per sample, so a sample's draws do not
    depend on the rest of its batch. None uses torch's default generator (never reseeded here)."""
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        return torch.rand(shape, generator=generator, device=gen_device).to(device)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
    rows = [torch.rand(shape[1], generator=g, device=g.device).to(device) for g in generator]
    return torch.stack(rows)


def sample_tokens(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_k: int | float = 0,
    top_p: float = 0.0,
    uniforms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pick ids from logits [B,N,V] -> LongTensor [B,N].

    Greedy (argmax) at temperature 0; otherwise filter (top-k, top-p), softmax(logits / temperature) in float32 and
    draw by inverse CDF with ``uniforms`` [B,N] (required when not greedy).
    """
    logits = logits.float()
    if is_greedy(temperature):
        return logits.argmax(dim=-1)
    if uniforms is None:
        raise ValueError("sampling at a non-zero temperature needs uniforms (or a generator upstream)")
    probs = F.softmax(filter_logits(logits, top_k=top_k, top_p=top_p) / float(temperature), dim=-1)
    cdf = probs.cumsum(dim=-1)
    target = uniforms.to(cdf.device, torch.float32).unsqueeze(-1) * cdf[..., -1:]
    ids = torch.searchsorted(cdf.contiguous(), target.contiguous(), right=True).squeeze(-1)
    return ids.clamp_(max=logits.shape[-1] - 1)


def linear_schedule(steps: int, total: int) -> list[int]:
    """Tokens decoded per step, largest first, zero steps dropped: (2, 196) -> [98, 98]; (3, 196) -> [66, 65, 65]."""
    if steps < 1:
        raise ValueError(f"decoding steps must be >= 1, got {steps}")
    counts = np.diff(np.linspace(0, total, steps + 1, dtype=int))
    return [int(c) for c in sorted(counts, reverse=True) if c > 0]
