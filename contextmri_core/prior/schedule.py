"""The DDPM noise schedule that travels with the weights (diffusers-compatible formulas)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

from contextmri_core.errors import ConfigError

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
SPACINGS = ("leading", "trailing", "linspace")


@dataclass(frozen=True)
class ScheduleConfig:
    """As diffusers' ``DDPMScheduler`` config: ``num_train_timesteps``, ``beta_start``,
    ``beta_end``, ``beta_schedule``; epsilon prediction only. ``timestep_spacing`` and
    ``steps_offset`` say how a DDIM sampler picks its timesteps (:func:`scheduler_timesteps`,
    diffusers' defaults when the saved config has none)."""

    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    prediction_type: str = "epsilon"
    timestep_spacing: str = "leading"
    steps_offset: int = 0

    def __post_init__(self) -> None:
        if self.timestep_spacing not in SPACINGS:
            raise ConfigError(f"timestep_spacing {self.timestep_spacing!r}: use one of {SPACINGS}")
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
        keys = {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type",
                "timestep_spacing", "steps_offset"}
        return cls(**{k: v for k, v in cfg.items() if k in keys and v is not None})


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


def scheduler_timesteps(cfg: ScheduleConfig, num_steps: int) -> List[int]:
    """Descending timesteps exactly as diffusers' ``DDIMScheduler.set_timesteps(num_steps)``
    gives them for this config (``timestep_spacing`` and ``steps_offset``; e.g. 100 steps,
    "leading", offset 1: 991, 981, ..., 1)."""
    n, t_max = int(num_steps), cfg.num_train_timesteps
    if not 1 <= n <= t_max:
        raise ConfigError(f"num_steps must be in 1..{t_max}, got {num_steps}")
    if cfg.timestep_spacing == "linspace":
        ts = np.linspace(0, t_max - 1, n).round()[::-1]
    elif cfg.timestep_spacing == "leading":
        ts = (np.arange(0, n) * (t_max // n)).round()[::-1] + cfg.steps_offset
    else:  # trailing
        ts = np.round(np.arange(t_max, 0, -t_max / n)) - 1
    return [int(t) for t in ts]


def published_pairs(cfg: ScheduleConfig, num_steps: int) -> Tuple[List[int], List[int]]:
    """``(timesteps, previous)`` of the published ContextMRI DDS: the scheduler's timesteps and,
    for each, ``t - T // num_steps`` (negative: the final step, where abar is 1)."""
    ts = scheduler_timesteps(cfg, num_steps)
    skip = cfg.num_train_timesteps // int(num_steps)
    return ts, [t - skip for t in ts]


def complex_noise(shape, generator: Optional[torch.Generator], device=None) -> torch.Tensor:
    """``N(0, 1)`` in the real and the imaginary part, complex64, drawn from ``generator``
    (which must live on ``device``): the noise of the prior's 2 real channels."""
    re = torch.randn(shape, generator=generator, device=device)
    im = torch.randn(shape, generator=generator, device=device)
    return torch.complex(re, im)
