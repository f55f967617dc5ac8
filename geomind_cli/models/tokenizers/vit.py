"""ViT encoder and decoder of the TerraMind tokenizers (terramind-spec 6.3, 7.1).

These are the tokenizers' own ViT-B blocks, not the TerraMind transformer's: qkv with bias, ``nn.LayerNorm`` with
eps 1e-6 and bias, GELU MLP, and a trailing ``norm_mlp`` + Tanh ``post_mlp`` residual. Attribute names equal the
checkpoint keys (``encoder.blocks.N.attn.qkv.weight`` ...). The positional embedding is a frozen parameter stored in
the checkpoint as [1, dim, 16, 16] and resized bicubically to the token grid on every call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_EPS = 1e-6


def sincos_pos_emb(height: int, width: int, dim: int, *, temperature: float = 10000.0) -> torch.Tensor:
    """2-D sine-cosine table [1, dim, height, width] in the tokenizer layout (used only for random init).

    Channel quarters are sin/cos of the first grid axis, then sin/cos of the second. The grid is flattened with the
    first axis slowest and read back as (height, width), which is the checkpoint's layout for square grids.
    """
    first, second = torch.meshgrid(torch.arange(width, dtype=torch.float32),
                                   torch.arange(height, dtype=torch.float32), indexing="ij")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    a = first.flatten()[:, None] * omega[None]
    b = second.flatten()[:, None] * omega[None]
    table = torch.cat([a.sin(), a.cos(), b.sin(), b.cos()], dim=1)  # [h*w, dim]
    return table.reshape(height, width, dim).permute(2, 0, 1)[None].contiguous()


def resized_pos_emb(pos_emb: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[1, dim, gh, gw] -> tokens [1, h*w, dim], resized bicubically (align_corners False) as the tokenizer was trained.

    At the stored 16x16 size bicubic resampling is an exact identity, so it is always applied for one code path.
    """
    resized = F.interpolate(pos_emb, size=grid, mode="bicubic", align_corners=False)
    return resized.flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """fc1 -> activation -> fc2 (GELU in the blocks, Tanh in ``post_mlp``)."""

    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention with a biased fused qkv projection; [B, N, dim] -> [B, N, dim]."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        # The fused weight is laid out (3, heads, head_dim) along its output axis.
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_EPS)
        self.norm2 = nn.LayerNorm(dim, eps=_EPS)
        self.attn = Attention(dim, num_heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _ViT(nn.Module):
    """Shared trunk: frozen pos_emb, ``blocks``, ``norm_mlp`` and the Tanh ``post_mlp``."""

    def __init__(self, *, dim: int, depth: int, num_heads: int, grid: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.dim = dim
        # A parameter (not a buffer) because the checkpoints store it; it is never trained.
        self.pos_emb = nn.Parameter(sincos_pos_emb(grid, grid, dim), requires_grad=False)
        self.blocks = nn.Sequential(*(Block(dim, num_heads, mlp_ratio) for _ in range(depth)))
        self.norm_mlp = nn.LayerNorm(dim, eps=_EPS)
        self.post_mlp = Mlp(dim, int(dim * mlp_ratio), act=nn.Tanh)


class ViTEncoder(_ViT):
    """Image [B, C, H, W] (H, W multiples of ``patch_size``) -> features [B, dim, H/16, W/16] in float32."""

    def __init__(self, in_channels: int, *, patch_size: int = 16, resolution: int = 256, dim: int = 768,
                 depth: int = 12, num_heads: int = 12):
        super().__init__(dim=dim, depth=depth, num_heads=num_heads, grid=resolution // patch_size)
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        x = self.proj(x).flatten(2).transpose(1, 2)  # [B, h*w, dim]
        x = x + resized_pos_emb(self.pos_emb, grid).to(x.dtype)
        x = self.blocks(x)
        # The trained model ran this residual MLP in float32 even under mixed precision; keep it so.
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            x = x + self.post_mlp(self.norm_mlp(x))
        return x.transpose(1, 2).reshape(x.shape[0], self.dim, *grid)


class ViTDecoder(_ViT):
    """Features [B, dim, h, w] -> [B, out_channels, h*16, w*16] (LULC: 10 class logits)."""

    def __init__(self, out_channels: int, *, patch_size: int = 16, resolution: int = 256, dim: int = 768,
                 depth: int = 12, num_heads: int = 12):
        super().__init__(dim=dim, depth=depth, num_heads=num_heads, grid=resolution // patch_size)
        self.out_channels = out_channels
        self.patch_size = patch_size
        self.out_proj = nn.Linear(dim, out_channels * patch_size * patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = x + resized_pos_emb(self.pos_emb, (h, w)).to(x.dtype)
        x = self.blocks(x)
        # Unlike the encoder, the decoder's post_mlp was not forced to float32 in training.
        x = self.out_proj(x + self.post_mlp(self.norm_mlp(x)))  # [B, h*w, (c ph pw)]
        p = self.patch_size
        x = x.reshape(b, h, w, self.out_channels, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(b, self.out_channels, h * p, w * p)
