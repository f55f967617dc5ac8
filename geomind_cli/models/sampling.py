"""Choosing token ids from logits: greedy, temperature, top-k and nucleus (top-p) filtering, and two exact draws.

Randomness never comes from the global RNG state implicitly being reseeded. A draw at a non-zero temperature is
driven per position either by a uniform number (inverse-CDF) or by a 64-bit key (Gumbel-max); both may come from the
caller (world-consistent tiling, geomind_cli.noise) and uniforms may come from explicit generators.

- Inverse CDF with a uniform u picks the first vocabulary entry whose cumulative probability exceeds ``u * total``:
  the distribution of ``torch.multinomial``. Two tiles sharing u agree only while their CDFs agree up to u, and a
  small change of any earlier probability moves u to another token: in tile overlaps, where the two tiles see
  different context, few tokens agree.
- Gumbel-max with a key: every vocabulary entry v gets its own noise ``g_v = -log(-log(u_v))`` with ``u_v`` a
  counter hash of (key, v), and the id is ``argmax(logits / temperature + g)``. ``argmax(l + g)`` for i.i.d.
  standard Gumbel g is distributed as softmax(l) (Gumbel, 1954; the "Gumbel-max trick"), so the distribution is the
  same; but the winner changes only when some logit moves by about the gap between the two largest perturbed scores,
  so two tiles that share a key and have close logits almost always pick the same token.

The hash of (key, v) runs on the logits' device in int64 torch ops with lowbias32 (C. Wellons, "Prospecting for
hash functions", 2018), see :func:`key_uniforms`. Every value is kept in [0, 2^32) and each 32x32-bit multiply is
split into 16-bit halves of the constant, so no intermediate reaches 2^49 and signed int64 never overflows (which
torch does not define).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

Generators = torch.Generator | Sequence[torch.Generator] | None

_GREEDY_EPS = 1e-10
_MASK32 = 0xFFFFFFFF
_ORDER_INDEX = _MASK32  # hash index of the decoding-order priority; vocabularies are far smaller than 2^32 - 1
_GUMBEL_SPAN = 20.0  # > max - min of the hashed Gumbel noise (19.45), with room for float32 rounding
_CHUNK = 1 << 22  # [rows, vocab] elements hashed at once (int64 temporaries of 32 MB)


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


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2^32 for int64 x in [0, 2^32): x * (c mod 2^16) < 2^48 and the high half only matters mod 2^16.

    Works in place on ``x`` (callers pass temporaries) and returns it.
    """
    high = (x * (c >> 16)).bitwise_and_(0xFFFF).bitwise_left_shift_(16)
    return x.mul_(c & 0xFFFF).add_(high).bitwise_and_(_MASK32)


def _lowbias32(x: torch.Tensor) -> torch.Tensor:
    """A bijection of [0, 2^32) with good avalanche, in place on the int64 temporary ``x`` (returned)."""
    x.bitwise_xor_(x >> 16)
    _mul32(x, 0x7FEB352D)
    x.bitwise_xor_(x >> 15)
    _mul32(x, 0x846CA68B)
    return x.bitwise_xor_(x >> 16)


def _position_hash(keys: torch.Tensor) -> torch.Tensor:
    """The 64-bit keys folded into 32 well-mixed bits (both halves count), int64 in [0, 2^32), same shape."""
    low, high = keys & _MASK32, (keys >> 32) & _MASK32  # arithmetic shift, then mask: the key's upper 32 bits
    return _lowbias32(_lowbias32(high).bitwise_xor_(low))


def key_uniforms(keys: torch.Tensor, index: torch.Tensor | int) -> torch.Tensor:
    """Uniforms in (0, 1), float32, hashed from int64 ``keys`` and integer ``index`` (broadcast against each other).

    ``lowbias32(lowbias32(index) ^ fold(key))``: the key is folded to 32 bits per position first, so the costly
    per-element work is one round. A function of (key, index) only, on any device: 2^23 evenly spaced values
    ``(2k + 1) / 2^24``, never 0 or 1. Two positions share all their noise only if their folded keys collide
    (probability 2^-32 per pair), which at worst correlates two draws.
    """
    keys = torch.as_tensor(keys)
    index = torch.as_tensor(index, dtype=torch.int64, device=keys.device) & _MASK32
    x = _lowbias32(_lowbias32(index) ^ _position_hash(keys))
    return x.bitwise_right_shift_(9).mul_(2).add_(1).to(torch.float32).mul_(2.0**-24)


def _gumbel_pick(logits: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """Gumbel-max ids [R] for filtered logits [R, V] (float32, -inf outside the kept set) and keys [R]."""
    vocab = logits.shape[-1]
    scaled = logits / float(temperature)
    # The noise lies in [-log(-log(2^-24)), -log(-log(1 - 2^-24))] = [-2.81, 16.64], so an entry more than 19.45
    # below its row's best can never win: hash only the top ``kept`` entries of every row (the same ids, far less
    # work when the logits are peaked or top-k / top-p keep a small set, as with real weights).
    best = scaled.max(dim=-1, keepdim=True).values
    kept = max(1, int((scaled >= best - _GUMBEL_SPAN).sum(dim=-1).max()))  # 0 only for NaN rows: no crash
    if kept * 4 <= vocab:
        values, index = torch.topk(scaled, kept, dim=-1)
    else:
        values, index = scaled, torch.arange(vocab, device=logits.device)
    scores = key_uniforms(keys.unsqueeze(-1), index).log_().neg_().log_().neg_()  # standard Gumbel noise
    pick = scores.add_(values).argmax(dim=-1, keepdim=True)
    return pick.squeeze(-1) if index.dim() == 1 else torch.gather(index, -1, pick).squeeze(-1)


def gumbel_sample(logits: torch.Tensor, keys: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Gumbel-max draw: filtered logits [B, N, V] and int64 keys [B, N] -> ids [B, N], in chunks of rows.

    Each id depends only on its own row of logits and its key, never on the batch or the chunking.
    """
    batch, n, vocab = logits.shape
    flat, flat_keys = logits.reshape(batch * n, vocab), keys.to(logits.device, torch.int64).reshape(batch * n)
    rows = max(1, _CHUNK // vocab)
    ids = [_gumbel_pick(flat[i:i + rows], flat_keys[i:i + rows], temperature) for i in range(0, batch * n, rows)]
    return torch.cat(ids).reshape(batch, n) if ids else torch.zeros(batch, n, dtype=torch.long, device=logits.device)


def key_order(keys: torch.Tensor) -> torch.Tensor:
    """Decoding order [B, N] (positions by a priority hashed from each position's key): a function of place."""
    return key_uniforms(keys, _ORDER_INDEX).argsort(dim=1, stable=True)


def sample_tokens(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_k: int | float = 0,
    top_p: float = 0.0,
    uniforms: torch.Tensor | None = None,
    keys: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pick ids from logits [B,N,V] -> LongTensor [B,N].

    Greedy (argmax) at temperature 0; otherwise filter (top-k, top-p) and draw from softmax(logits / temperature)
    in float32: by Gumbel-max with int64 ``keys`` [B,N], or by inverse CDF with ``uniforms`` [B,N] (exactly one of
    the two when not greedy).
    """
    logits = logits.float()
    if is_greedy(temperature):
        return logits.argmax(dim=-1)
    if (uniforms is None) == (keys is None):
        raise ValueError("sampling at a non-zero temperature needs either uniforms or keys (exactly one)")
    filtered = filter_logits(logits, top_k=top_k, top_p=top_p)
    if keys is not None:
        return gumbel_sample(filtered, keys, temperature=temperature)
    probs = F.softmax(filtered / float(temperature), dim=-1)
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
