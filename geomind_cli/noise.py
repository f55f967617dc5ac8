"""Randomness as a function of place: one noise field on the output grid, keyed by seed, position and channel.

Generated modalities are stochastic (sampled tokens, diffusion starting noise). If each tile drew its own random
numbers, two overlapping tiles would imagine different things in their overlap and the mosaic would show patches.
Here every random number is a counter-based hash of ``(seed, stream, row, col, channel)`` on the scene's target grid,
so overlapping tiles start from identical noise where they overlap, and a run gives the same pixels whatever the
batch size, tile order, device or number of workers.

The hash is SplitMix64's finaliser (Steele et al., 2014), applied to a packed counter: cheap, vectorised in NumPy
and statistically good enough for sampling noise (it passes BigCrush as a counter-based generator).
"""

from __future__ import annotations

import zlib

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_INV_2_53 = 1.0 / float(1 << 53)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def stream_key(seed: int, stream: str) -> np.uint64:
    """A 64-bit key for one named stream (e.g. ``"diffusion/S1GRD"``) of one seed."""
    with np.errstate(over="ignore"):
        return _mix(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _GOLDEN + np.uint64(zlib.crc32(stream.encode())))


def _bits64(key: np.uint64, rows: np.ndarray, cols: np.ndarray, channels: np.ndarray, draw: int) -> np.ndarray:
    # Rows and columns may be negative (reflect-padded tiles); offset them into unsigned range before packing.
    r = (rows.astype(np.int64) + (1 << 23)).astype(np.uint64)
    c = (cols.astype(np.int64) + (1 << 23)).astype(np.uint64)
    ch = channels.astype(np.uint64)
    counter = (r << np.uint64(40)) ^ (c << np.uint64(16)) ^ (ch << np.uint64(2)) ^ np.uint64(draw)
    with np.errstate(over="ignore"):
        return _mix(_mix(counter + key) * _GOLDEN)


def _uniform53(key: np.uint64, rows: np.ndarray, cols: np.ndarray, channels: np.ndarray, draw: int) -> np.ndarray:
    bits = _bits64(key, rows, cols, channels, draw)
    # 53 random bits -> a double in (0, 1): never exactly 0, so log() below is safe.
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * _INV_2_53


def uniform_field(seed: int, stream: str, rows: np.ndarray, cols: np.ndarray, channels: int = 1) -> np.ndarray:
    """Uniform (0, 1) numbers, float64 ``[channels, len(rows), len(cols)]``, for the global pixel ``rows`` x ``cols``."""
    key = stream_key(seed, stream)
    ch, rr, cc = np.meshgrid(np.arange(channels), np.asarray(rows), np.asarray(cols), indexing="ij")
    return _uniform53(key, rr, cc, ch, 0)


def gaussian_field(seed: int, stream: str, rows: np.ndarray, cols: np.ndarray, channels: int = 1) -> np.ndarray:
    """Standard normal numbers, float32 ``[channels, len(rows), len(cols)]``, by Box-Muller on two hashed uniforms."""
    key = stream_key(seed, stream)
    ch, rr, cc = np.meshgrid(np.arange(channels), np.asarray(rows), np.asarray(cols), indexing="ij")
    u1 = _uniform53(key, rr, cc, ch, 1)
    u2 = _uniform53(key, rr, cc, ch, 2)
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32)


def tile_gaussian(seed: int, stream: str, origins, size: int, channels: int) -> np.ndarray:
    """Gaussian noise ``[B, channels, size, size]`` for tiles whose top-left pixels are ``origins`` [(row, col), ...]."""
    return np.stack(
        [gaussian_field(seed, stream, r + np.arange(size), c + np.arange(size), channels) for r, c in origins]
    )


def tile_token_keys(seed: int, stream: str, origins, size: int, patch: int = 16) -> np.ndarray:
    """64-bit keys, int64 ``[B, (size/patch)**2]``, one per token position, keyed by each patch's top-left pixel.

    Row-major over the patch grid, as :func:`tile_token_uniforms`. A key stands for a whole vector of noise:
    ``geomind_cli.models.sampling.key_uniforms`` hashes it with each vocabulary index into the Gumbel noise of a
    Gumbel-max draw, so overlapping tiles see the same noise for every candidate token at a shared position. The
    bits are those of a uint64 hash, reinterpreted as int64 (torch has no uint64 arithmetic).
    """
    key = stream_key(seed, stream)
    steps = np.arange(0, size, patch)
    rows = []
    for r, c in origins:
        rr, cc = np.meshgrid(r + steps, c + steps, indexing="ij")
        rows.append(_bits64(key, rr, cc, np.zeros_like(rr), 3).reshape(-1))  # draw 3: apart from the uniforms' 0-2
    return np.stack(rows).view(np.int64) if rows else np.zeros((0, len(steps) ** 2), np.int64)


def tile_token_uniforms(seed: int, stream: str, origins, size: int, patch: int = 16) -> np.ndarray:
    """Uniforms ``[B, (size/patch)**2]`` for token sampling, keyed by the global pixel of each patch's top-left.

    Row-major over the patch grid, as TerraMind orders its tokens.
    """
    steps = np.arange(0, size, patch)
    return np.stack(
        [uniform_field(seed, stream, r + steps, c + steps, 1).reshape(-1) for r, c in origins]
    ).astype(np.float32)
