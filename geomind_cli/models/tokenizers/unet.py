"""Patched, conditioned diffusion UNet of the DiVAE tokenizers (terramind-spec 6.3, ``unet_patched``).

The image is folded into 4x4 patches (C*16 channels at H/4 x W/4), the FSQ codes are nearest-upsampled to that grid
and appended, and an ADM-style UNet (channels 256/512/512/512, 3 residual blocks per level, single-head attention at
downsampling factors 4 and 8) predicts the clean sample. Module names reproduce the checkpoint keys exactly:
``time_embed.{0,2}``, ``input_blocks.N.M``, ``middle_block.M``, ``output_blocks.N.M``, ``out.{0,2}``.

Mixed precision: GroupNorm statistics and the attention softmax are computed in float32 and cast back, the rest can
run under bf16/fp16 autocast and in channels_last memory format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """The one configuration the TerraMind tokenizers use (spec 6.3); only the image channels vary."""

    channels: int  # image channels C (12 for S2L2A, 2 for S1, 1 for DEM/NDVI)
    cond_channels: int = 5  # FSQ latent dim
    patch_size: int = 4
    model_channels: int = 256
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 3
    attention_resolutions: tuple[int, ...] = (4, 8)


def timestep_embedding(t: torch.Tensor, dim: int, *, max_period: float = 10000.0) -> torch.Tensor:
    """Timesteps [N] -> [N, dim] as [cos(t f_k), sin(t f_k)] with f_k = max_period^(-k / (dim/2)), float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32) evaluated in float32 (the statistics overflow or lose precision in half types)."""

    def __init__(self, channels: int):
        super().__init__(32, channels, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps)
        return y.to(x.dtype)


class ResBlock(nn.Module):
    """out = skip(x) + conv(SiLU(GN(conv(SiLU(GN(x))) + Linear(SiLU(emb))))); [B, cin, h, w] -> [B, cout, h, w]."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        # Index 2 is the (inference no-op) dropout slot; it keeps the checkpoint index of the conv at 3.
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels), nn.SiLU(), nn.Identity(), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Single-head self-attention over all positions, residual; [B, C, h, w] -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        qkv = self.qkv(self.norm(flat))
        # One head: the fused projection is [q; k; v] along channels. Sequences are short (<= 256 positions at
        # 256 px), so the whole product runs in float32 for a stable softmax at negligible cost.
        q, k, v = (t.transpose(1, 2).float() for t in qkv.split(c, dim=1))  # [B, T, C]
        with torch.autocast(device_type=x.device.type, enabled=False):
            a = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        a = a.transpose(1, 2).to(qkv.dtype)
        return (flat + self.proj_out(a)).reshape(b, c, h, w)


class Downsample(nn.Module):
    """Strided 3x3 conv, halves h and w."""

    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class EmbedSequential(nn.Sequential):
    """A Sequential that hands the timestep embedding to the residual blocks in it."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class PatchedUNet(nn.Module):
    """Denoiser of the DiVAE tokenizers: (x_t [B,C,H,W], t [1] or [B], codes [B,5,h,w]) -> x0 estimate [B,C,H,W].

    H and W must be multiples of 32 (4x4 patches, then three stride-2 levels). The timestep embedding of a [1]
    timestep is broadcast over the batch.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        p, mc = config.patch_size, config.model_channels
        in_ch = config.channels * p * p + config.cond_channels
        emb_ch = mc * 4
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))

        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_ch, mc, 3, padding=1))])
        skip_channels = [mc]
        ch, ds = mc, 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_ch, mult * mc)]
                ch = mult * mc
                if ds in config.attention_resolutions:
                    layers.append(AttentionBlock(ch))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(config.channel_mult) - 1:
                self.input_blocks.append(EmbedSequential(Downsample(ch)))
                skip_channels.append(ch)
                ds *= 2

        self.middle_block = EmbedSequential(ResBlock(ch, emb_ch), AttentionBlock(ch), ResBlock(ch, emb_ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), emb_ch, mult * mc)]
                ch = mult * mc
                if ds in config.attention_resolutions:
                    layers.append(AttentionBlock(ch))
                if level and i == config.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(mc, config.channels * p * p, 3, padding=1))
        self.channels_last = False

    def use_channels_last(self) -> "PatchedUNet":
        """Hold the conv weights and run the activations in channels_last (NHWC): faster tensor-core convolutions
        on GPUs. Results equal the default layout's up to float rounding. Returns self."""
        self.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b, c, height, width = sample.shape
        p = self.config.patch_size
        nh, nw = height // p, width // p
        # Fold 4x4 patches into channels, ordered (c, ph, pw).
        x = sample.reshape(b, c, nh, p, nw, p).permute(0, 1, 3, 5, 2, 4).reshape(b, c * p * p, nh, nw)
        cond = F.interpolate(cond.to(x.dtype), size=(nh, nw), mode="nearest")
        h = torch.cat([x, cond], dim=1)
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)

        emb = self.time_embed(timestep_embedding(timestep.reshape(-1), self.config.model_channels))
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        h = self.out(h)

        h = h.reshape(b, c, p, p, nh, nw).permute(0, 1, 4, 2, 5, 3)
        return h.reshape(b, c, height, width)
