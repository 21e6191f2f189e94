"""The epsilon-matching training loss, shared by tests and the training package."""

from __future__ import annotations

from typing import Optional

import torch

from contextmri_core.prior.model import DiffusionPrior
from contextmri_core.prior.schedule import complex_noise


def epsilon_loss(
    prior: DiffusionPrior, x0: torch.Tensor, cond: torch.Tensor,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """``E_t,n ||eps(sqrt(a_t) x0 + sqrt(1-a_t) n, t, cond) - n||^2`` over both channels, with
    ``t ~ U{0..T-1}`` and complex noise ``n`` from ``generator``; ``x0`` complex ``(B, H, W)``."""
    b = x0.shape[0]
    t = torch.randint(0, prior.schedule.num_train_timesteps, (b,), generator=generator,
                      device=x0.device)
    noise = complex_noise(x0.shape, generator, x0.device)
    a = prior.alphas_cumprod[t].reshape(b, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    pred = prior.eps(xt, t, cond)
    return torch.mean(torch.abs(pred - noise) ** 2) / 2
