"""The epsilon-matching training loss, shared by tests and the training package."""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

from contextmri_core.prior.schedule import complex_noise

#: eps_fn(x_t (B,H,W) complex, t (B,) long) -> predicted noise (B,H,W) complex
EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def epsilon_loss(
    eps_fn: EpsFn, alphas_cumprod: torch.Tensor, x0: torch.Tensor,
    generator: Optional[torch.Generator] = None, t_range: Optional[Tuple[int, int]] = None,
) -> torch.Tensor:
    """``E_t,n ||eps(sqrt(a_t) x0 + sqrt(1-a_t) n, t) - n||^2`` averaged over both channels,
    ``t ~ U{0..T-1}``, complex noise ``n`` from ``generator`` (on ``x0``'s device);
    ``x0`` complex ``(B, H, W)``; ``t_range`` ``(lo, hi)`` restricts t to a noise-level window
    (fine-tuning only part of the trajectory)."""
    b = x0.shape[0]
    lo, hi = t_range if t_range is not None else (0, alphas_cumprod.shape[0] - 1)
    t = torch.randint(int(lo), int(hi) + 1, (b,), generator=generator, device=x0.device)
    noise = complex_noise(x0.shape, generator, x0.device)
    return epsilon_loss_at(eps_fn, alphas_cumprod, x0, t, noise)


def epsilon_loss_at(eps_fn: EpsFn, alphas_cumprod: torch.Tensor, x0: torch.Tensor,
                    t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The same loss at given timesteps ``t (B,)`` and complex ``noise`` (shaped like ``x0``):
    for per-sample randomness drawn elsewhere and for fixed validation draws."""
    a = alphas_cumprod.to(x0.device)[t].reshape(-1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    return torch.mean(torch.abs(eps_fn(xt, t) - noise) ** 2) / 2
