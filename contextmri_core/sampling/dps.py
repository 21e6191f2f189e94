"""Diffusion Posterior Sampling (Chung et al. 2023): DDIM steps plus a gradient step on the
data misfit ``||y - A x0(x_t)||`` taken through the network (DPS's form: the gradient of the
norm, i.e. of the squared misfit scaled by ``1 / (2 ||y - A x0||)``, times ``zeta``)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from contextmri_core.physics.linop import LinearOperator
from contextmri_core.sampling.dds import EpsFn, Progress, previous_abar
from contextmri_core.sampling.ddim import complex_noise, ddim_noise_scales, ddim_update, predict_x0


def dps_sample(
    eps_fn: EpsFn,
    op: LinearOperator,
    y: torch.Tensor,
    x_t: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    timesteps: Sequence[int],
    eta: float = 1.0,
    zeta: float = 1.0,
    generator: Optional[torch.Generator] = None,
    support: Optional[torch.Tensor] = None,
    progress: Optional[Progress] = None,
    previous: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """DPS from ``x_t``; returns the last ``x0`` estimate (complex ``(B, H, W)``);
    ``previous`` as in ``dds_sample``."""
    abar = alphas_cumprod.detach().double().cpu().tolist()  # once: no host read per step
    n = len(timesteps)
    x0 = x_t
    for i, t in enumerate(timesteps):
        a_t = abar[t]
        a_prev = previous_abar(abar, timesteps, i, previous)
        x_in = x_t.detach().requires_grad_(True)
        with torch.enable_grad():
            tt = torch.full((x_t.shape[0],), int(t), device=x_t.device, dtype=torch.long)
            eps = eps_fn(x_in, tt)
            x0 = predict_x0(x_in, eps, a_t)
            if support is not None:
                x0 = x0 * support
            r = (y - op.forward(x0)).reshape(x0.shape[0], -1)
            resid = torch.sqrt(torch.sum(r.abs() ** 2, dim=1) + 1e-20)  # smooth at r = 0
            (grad,) = torch.autograd.grad(resid.sum(), x_in)
        c1, c2 = ddim_noise_scales(a_t, a_prev, eta)
        z = complex_noise(x_t.shape, generator, x_t.device) if (c1 > 0 and i + 1 < n) else None
        x_t = ddim_update(x0.detach(), eps.detach(), a_prev, c1, c2, z) - zeta * grad
        x0 = x0.detach()
        if progress is not None:
            progress(i, n, int(t))
    return x0
