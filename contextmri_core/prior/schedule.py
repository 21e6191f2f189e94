"""The DDPM noise schedule that travels with the weights (diffusers-compatible formulas)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import List, Optional

import torch

from contextmri_core.errors import ConfigError

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


@dataclass(frozen=True)
class ScheduleConfig:
    """As diffusers' ``DDPMScheduler`` config: ``num_train_timesteps``, ``beta_start``,
    ``beta_end``, ``beta_schedule``; epsilon prediction only."""

    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    prediction_type: str = "epsilon"

    def __post_init__(self) -> None:
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ConfigError(f"beta_schedule {self.beta_schedule!r}: use one of {BETA_SCHEDULES}")
        if self.prediction_type != "epsilon":
            raise ConfigError(f"prediction_type {self.prediction_type!r}: only 'epsilon' is supported")
        if self.num_train_timesteps < 2:
            raise ConfigError("num_train_timesteps must be >= 2")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_diffusers(cls, cfg: dict) -> "ScheduleConfig":
        """From a diffusers ``scheduler_config.json`` dict (unknown keys ignored)."""
        keys = {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type"}
        return cls(**{k: v for k, v in cfg.items() if k in keys})


def _cosine_betas(n: int, max_beta: float = 0.999) -> torch.Tensor:
    def abar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return torch.tensor([min(1 - abar((i + 1) / n) / abar(i / n), max_beta) for i in range(n)],
                        dtype=torch.float64)


def alphas_cumprod(cfg: ScheduleConfig) -> torch.Tensor:
    """``abar_t`` for t = 0..T-1 (float64), exactly as diffusers computes it."""
    n = cfg.num_train_timesteps
    if cfg.beta_schedule == "linear":
        betas = torch.linspace(cfg.beta_start, cfg.beta_end, n, dtype=torch.float64)
    elif cfg.beta_schedule == "scaled_linear":
        betas = torch.linspace(cfg.beta_start ** 0.5, cfg.beta_end ** 0.5, n, dtype=torch.float64) ** 2
    else:
        betas = _cosine_betas(n)
    return torch.cumprod(1.0 - betas, dim=0)


def evenly_spaced(num_steps: int, num_train_timesteps: int = 1000) -> List[int]:
    """Descending timesteps ``T-1 ... 0`` with ``num_steps`` entries, evenly spaced (DDIM
    "leading" spacing shifted so the first step starts at ``T-1``)."""
    if not 1 <= num_steps <= num_train_timesteps:
        raise ConfigError(f"num_steps must be in 1..{num_train_timesteps}, got {num_steps}")
    ts = torch.linspace(num_train_timesteps - 1, 0, num_steps).round().long().tolist()
    return [int(t) for t in ts]


def complex_noise(shape, generator: Optional[torch.Generator], device=None) -> torch.Tensor:
    """``N(0, 1)`` in the real and the imaginary part, complex64, drawn from ``generator``
    (which must live on ``device``): the noise of the prior's 2 real channels."""
    re = torch.randn(shape, generator=generator, device=device)
    im = torch.randn(shape, generator=generator, device=device)
    return torch.complex(re, im)
