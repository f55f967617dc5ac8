"""Deterministic DDIM sampler of the DiVAE tokenizer decoders (terramind-spec 6.3).

Settings are those the tokenizers were trained and published with: 1000 training steps, linear betas 1e-4..0.02
rescaled to zero terminal SNR, "trailing" inference timesteps, the network predicts the clean sample, the predicted
sample is clamped to [-1, 1] (dynamic thresholding with ``sample_max_value=1`` reduces to that), eta = 0 and the last
step jumps to alpha_bar = 1 so the result is exactly the clamped final prediction.

The per-step coefficients are plain Python floats computed once per number of steps (cached), so the sampling loop
has no host synchronisation and a fixed shape: friendly to CUDA graphs and ``torch.compile``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch

NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02


def alphas_cumprod(num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """alpha_bar[t] for t in 0..T-1 (float32): linear betas rescaled so that alpha_bar[T-1] == 0 exactly.

    The rescaling (Lin et al. 2023, arXiv:2305.08891) shifts sqrt(alpha_bar) so its last value is 0 and scales it
    so its first value is unchanged. Computed in float32 like the trained scheduler, for identical coefficients.
    """
    betas = torch.linspace(BETA_START, BETA_END, num_train_timesteps, dtype=torch.float32)
    sqrt_bar = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = sqrt_bar[0].clone(), sqrt_bar[-1].clone()
    sqrt_bar = (sqrt_bar - last) * (first / (first - last))
    bar = sqrt_bar**2
    alphas = torch.cat([bar[:1], bar[1:] / bar[:-1]])
    return torch.cumprod(1.0 - (1.0 - alphas), dim=0)


@dataclass(frozen=True)
class DDIMStep:
    """Coefficients of one step x_t -> x_prev: x_prev = a * clamp(x0) + b * (x_t - c * x0), all float32 values."""

    timestep: int
    a: float  # sqrt(alpha_bar_prev)
    b: float  # sqrt(1 - alpha_bar_prev) / sqrt(1 - alpha_bar_t)
    c: float  # sqrt(alpha_bar_t)


@dataclass(frozen=True)
class DDIMSchedule:
    steps: tuple[DDIMStep, ...]

    @property
    def timesteps(self) -> tuple[int, ...]:
        return tuple(step.timestep for step in self.steps)


def trailing_timesteps(num_steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> tuple[int, ...]:
    """T-1, T-1-r, ... down to r-1 with r = T // num_steps (50 steps: 999, 979, ..., 19).

    As in the published scheduler, when ``num_steps`` does not divide T the range yields one step more (3 -> 4).
    """
    if not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(f"the number of diffusion steps must be in 1..{num_train_timesteps}, got {num_steps}")
    ratio = num_train_timesteps // num_steps
    return tuple(t - 1 for t in range(num_train_timesteps, 0, -ratio))


@lru_cache(maxsize=64)
def ddim_schedule(num_steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> DDIMSchedule:
    """The steps of a ``num_steps`` DDIM run (eta 0, sample prediction), coefficients rounded to float32."""
    bar = alphas_cumprod(num_train_timesteps)
    ratio = num_train_timesteps // num_steps
    steps = []
    for t in trailing_timesteps(num_steps, num_train_timesteps):
        bar_t = bar[t]
        bar_prev = bar[t - ratio] if t - ratio >= 0 else torch.tensor(1.0)
        # The epsilon estimate divides by sqrt(1 - alpha_bar_t); folding it into b keeps one multiply per term.
        steps.append(DDIMStep(
            timestep=t,
            a=float(bar_prev.sqrt()),
            b=float((1.0 - bar_prev).sqrt() / (1.0 - bar_t).sqrt()),
            c=float(bar_t.sqrt()),
        ))
    return DDIMSchedule(tuple(steps))


def ddim_step(step: DDIMStep, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """One float32 DDIM update from x_t (``sample``) given the network's x0 prediction (``model_output``).

    The noise estimate uses the *unclamped* prediction and only the x0 term is clamped, exactly as the published
    scheduler does (``use_clipped_model_output=False``).
    """
    with torch.autocast(device_type=sample.device.type, enabled=False):
        x0 = model_output.float()
        eps_scaled = sample.float() - step.c * x0
        return step.a * x0.clamp(-1.0, 1.0) + step.b * eps_scaled


def ddim_sample(
    denoise: Callable[[torch.Tensor, int], torch.Tensor],
    noise: torch.Tensor,
    schedule: DDIMSchedule,
) -> torch.Tensor:
    """Run the schedule from x_T = ``noise`` [B, C, H, W]; ``denoise(x_t, step_index)`` returns the x0 estimate.

    Returns float32 [B, C, H, W] within [-1, 1] (the last step returns the clamped x0 estimate).
    """
    x = noise.float()
    for index, step in enumerate(schedule.steps):
        x = ddim_step(step, denoise(x, index), x)
    return x
