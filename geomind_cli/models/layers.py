"""Transformer building blocks of TerraMind, named exactly as the checkpoint keys (terramind-spec 3.1, 3.2, 4.3).

Attention runs through ``F.scaled_dot_product_attention``. Layer norms compute in float32 whatever the input dtype,
so that bf16/fp16 autocast can wrap everything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TransformerConfig:
    """Width and depth of one TerraMind size (terramind-spec 1.1)."""

    dim: int
    num_heads: int
    encoder_depth: int
    decoder_depth: int
    mlp_ratio: float = 4.0
    bias: bool = True  # qkv, attention projection and MLP biases (tiny/small: yes, base/large: no)
    gated_mlp: bool = False  # SwiGLU for base/large, GELU MLP for tiny/small
    norm_eps: float = 1e-6

    @property
    def mlp_hidden(self) -> int:
        hidden = int(self.dim * self.mlp_ratio)
        # The gated MLP keeps the parameter count of a plain one: 2/3 of the hidden width, truncated (spec 9.4).
        return int(2 * hidden / 3) if self.gated_mlp else hidden


class LayerNorm(nn.Module):
    """Layer norm with a learned weight and a fixed zero ``bias`` *buffer*.

    TerraMind's checkpoints store that zero bias (``...norm1.bias``), so ``nn.LayerNorm(bias=False)`` would break strict
    loading. Computes in float32 and returns the input dtype.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.register_buffer("bias", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.layer_norm(x.float(), (x.shape[-1],), self.weight.float(), self.bias.float(), self.eps)
        return out.to(x.dtype)


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, N, D] -> [B, heads, N, D/heads]."""
    b, n, d = x.shape
    return x.reshape(b, n, num_heads, d // num_heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, heads, N, Dh] -> [B, N, heads*Dh]."""
    b, h, n, dh = x.shape
    return x.transpose(1, 2).reshape(b, n, h * dh)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (rows: Q, then K, then V)."""

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool, proj_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B,N,D]; attn_mask: SDPA boolean mask (True = may attend), broadcastable to [B,heads,N,N]."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(
            _heads(q, self.num_heads), _heads(k, self.num_heads), _heads(v, self.num_heads), attn_mask=attn_mask
        )
        return self.proj(_merge_heads(y))


class CrossAttention(nn.Module):
    """Multi-head attention from queries ``x`` to a ``context``; ``kv`` holds the K rows first, then V."""

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool, proj_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B,N,D], context [B,M,D] -> [B,N,D]."""
        k, v = self.kv(context).chunk(2, dim=-1)
        y = F.scaled_dot_product_attention(
            _heads(self.q(x), self.num_heads), _heads(k, self.num_heads), _heads(v, self.num_heads),
            attn_mask=attn_mask,
        )
        return self.proj(_merge_heads(y))


class Mlp(nn.Module):
    """Plain GELU MLP of tiny/small: ``fc2(gelu(fc1(x)))``."""

    def __init__(self, dim: int, hidden: int, *, bias: bool):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class GatedMlp(nn.Module):
    """SwiGLU MLP of base/large: ``fc2(silu(fc1(x)) * fc3(x))``."""

    def __init__(self, dim: int, hidden: int, *, bias: bool):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.fc3 = nn.Linear(dim, hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)) * self.fc3(x))


def _mlp(cfg: TransformerConfig) -> nn.Module:
    cls = GatedMlp if cfg.gated_mlp else Mlp
    return cls(cfg.dim, cfg.mlp_hidden, bias=cfg.bias)


class Block(nn.Module):
    """Pre-norm encoder block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm1 = LayerNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg.dim, cfg.num_heads, qkv_bias=cfg.bias, proj_bias=cfg.bias)
        self.norm2 = LayerNorm(cfg.dim, cfg.norm_eps)
        self.mlp = _mlp(cfg)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_mask)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Decoder block: unmasked self-attention, cross-attention to the encoder context, MLP (all pre-norm)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm1 = LayerNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(cfg.dim, cfg.num_heads, qkv_bias=cfg.bias, proj_bias=cfg.bias)
        self.query_norm = LayerNorm(cfg.dim, cfg.norm_eps)
        self.context_norm = LayerNorm(cfg.dim, cfg.norm_eps)
        self.cross_attn = CrossAttention(cfg.dim, cfg.num_heads, qkv_bias=cfg.bias, proj_bias=cfg.bias)
        self.norm2 = LayerNorm(cfg.dim, cfg.norm_eps)
        self.mlp = _mlp(cfg)

    def forward(self, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """y [B,M,D] queries, context [B,N,D] -> [B,M,D]."""
        y = y + self.self_attn(self.norm1(y))
        y = y + self.cross_attn(self.query_norm(y), self.context_norm(context))
        return y + self.mlp(self.norm2(y))


def sincos_2d(rows: int, cols: int, dim: int, *, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding [1, rows*cols, dim], float32.

    Each token at grid (r, c), flattened row-major, gets [sin(r w), cos(r w), sin(c w), cos(c w)] with
    w_k = temperature^(-k/(dim/4)) (terramind-spec 4.1; the reference's first half encodes the row).
    """
    if dim % 4:
        raise ValueError(f"sin-cos embedding width {dim} must be divisible by 4")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    r = torch.arange(rows, dtype=torch.float32).repeat_interleave(cols)[:, None] * omega
    c = torch.arange(cols, dtype=torch.float32).repeat(rows)[:, None] * omega
    return torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], dim=1)[None]


def resize_pos_emb(pos_emb: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Bicubically resample a square [1, s*s, D] position grid to ``grid`` = (rows, cols) -> [1, rows*cols, D].

    Returns ``pos_emb`` itself when the size already matches (no copy, no compute).
    """
    n, d = pos_emb.shape[1], pos_emb.shape[2]
    side = math.isqrt(n)
    if (side, side) == tuple(grid):
        return pos_emb
    square = pos_emb.float().reshape(1, side, side, d).permute(0, 3, 1, 2)
    resized = F.interpolate(square, size=tuple(grid), mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], d).to(pos_emb.dtype)
